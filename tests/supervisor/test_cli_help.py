"""`egw … --help` as a user reads it: every subcommand shows its defaults and an example."""

from __future__ import annotations

import argparse
import os
import subprocess
from pathlib import Path

import pytest

from supervisor.cli import build_parser
from tests.conftest import EGW

ENV = dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2]), COLUMNS="200")


def subcommands(parser: argparse.ArgumentParser, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], argparse.ArgumentParser]]:
    found = []
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for name, sub in action.choices.items():
                found.append(((*prefix, name), sub))
                found += subcommands(sub, (*prefix, name))
    return found


TOP_LEVEL = [path[0] for path, _ in subcommands(build_parser()) if len(path) == 1]


def egw_help(*command: str) -> str:
    result = subprocess.run([*EGW, *command, "--help"], env=ENV, capture_output=True, text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    return result.stdout


@pytest.mark.parametrize("command", TOP_LEVEL)
def test_every_subcommand_shows_an_example_of_itself(command):
    shown = egw_help(command)
    assert shown.startswith(f"usage: egw {command} ")
    examples = shown.split("\nexamples:\n", 1)[1].splitlines()
    assert examples and all(line.startswith("  ") for line in examples)
    assert any(line.strip().startswith(f"egw {command}") for line in examples)


@pytest.mark.parametrize(("path", "parser"), subcommands(build_parser()), ids=lambda value: " ".join(value) if isinstance(value, tuple) else "")
def test_every_option_with_a_default_shows_it(path, parser):
    formatter = parser._get_formatter()
    for action in parser._actions:
        if action.help and action.help is not argparse.SUPPRESS and action.default not in (None, False, argparse.SUPPRESS) and not isinstance(action, argparse._HelpAction):
            assert "default" in formatter._get_help_string(action).lower(), f"egw {' '.join(path)} {action.option_strings or action.dest}"


def test_the_gateway_flags_show_the_built_in_defaults():
    shown = " ".join(egw_help("run").split())  # column widths aside
    for line in ("--data-dir DIR data directory (env EGW_DATA_DIR; default: data)", "--api-port PORT REST API port (env EGW_API_PORT; default: 8080)", "--ocpp-port PORT OCPP websocket port (env EGW_OCPP_PORT; default: 9000)"):
        assert line in shown


@pytest.mark.parametrize("simulator", ["inverter", "charger", "ingest"])
def test_egw_sim_help_names_itself_egw_sim(simulator):
    shown = egw_help("sim", simulator)
    assert shown.startswith(f"usage: egw sim {simulator} ")
    assert "python -m" not in shown
    assert f"\nexamples:\n  egw sim {simulator} " in shown
    assert "(default: " in shown
