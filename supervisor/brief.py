"""A short `repr` for messages that actors send each other.

thespian formats every message it receives or sends for its debug log
(`'ACTOR got %s' % envelope.identify()`), and it does so before checking the log
level, so the text is built for every message even when nothing is logged. A
dataclass's generated repr walks every field: for a batch of readings with their raw
registers, or a subtree report with every actor's status, that cost more CPU than the
work the message carries. Messages inherit `BriefRepr` and are declared with
`@dataclass(repr=False)`: scalar fields are shown, containers only by their length.
"""

from __future__ import annotations

import dataclasses
from typing import Any

_MAX_TEXT = 40


def _brief(value: Any) -> str:
    if value is None or isinstance(value, bool | int | float):
        return repr(value)
    if isinstance(value, str):
        return repr(value if len(value) <= _MAX_TEXT else value[:_MAX_TEXT] + "...")
    try:
        return f"<{type(value).__name__} of {len(value)}>"
    except TypeError:
        return f"<{type(value).__name__}>"


class BriefRepr:
    """Mixin: `Name(field=..., items=<tuple of 20>)` without walking nested data."""

    __slots__ = ()

    def __repr__(self) -> str:
        if not dataclasses.is_dataclass(self):
            return f"<{type(self).__name__}>"
        shown = ", ".join(f"{f.name}={_brief(getattr(self, f.name, None))}" for f in dataclasses.fields(self))
        return f"{type(self).__name__}({shown})"
