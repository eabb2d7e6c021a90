"""What every `egw` command's --help shows: the default of each option and examples.

One formatter for the whole command line (supervisor.cli applies it to every
subcommand, the simulators use it for `egw sim NAME --help`), so a user can read what an
option does when it is left out without looking at the source.
"""

from __future__ import annotations

import argparse


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Keeps descriptions and examples as written; appends "(default: X)" to options that have one."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        if action.help is argparse.SUPPRESS or "default" in text.lower():
            return text
        if action.default in (None, False, argparse.SUPPRESS) or isinstance(action, (argparse._HelpAction, argparse._VersionAction)):
            return text
        if action.option_strings or action.nargs in (argparse.OPTIONAL, argparse.ZERO_OR_MORE):
            text += " (default: %(default)s)"
        return text


def examples(*lines: str) -> str:
    """An epilog listing example command lines, one per line."""
    return "examples:\n" + "\n".join(f"  {line}" for line in lines)


def use_help_formatter(parser: argparse.ArgumentParser) -> None:
    """Give `parser` and every nested subcommand parser the HelpFormatter."""
    parser.formatter_class = HelpFormatter
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                use_help_formatter(sub)
