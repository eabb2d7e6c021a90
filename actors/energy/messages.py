"""Messages of the energy family (between the REST API and the energy actor)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class SetLoadpointMode:
    """The API stored a new mode for this loadpoint (`storage.loadpoints`): apply it now.

    The store is the truth: an actor that never gets this message (restarting) reads the
    mode from there when it starts.
    """

    loadpoint_id: str


@dataclass(frozen=True)
class LoadpointModeSet:
    """The answer: the loadpoint as REST shows it after the new decision; None for an unknown id."""

    loadpoint_id: str
    view: dict[str, Any] | None
