"""Shared helpers for the device tests: a pinned simulator clock and a link that replays answers."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from actors.device.link import DeviceError, LinkDownError, NoResponseError

# 2023-11-14 11:00 UTC: the simulated PV curve is near its peak, every value non-zero.
MIDDAY = 1_699_959_600.0


@pytest.fixture
def midday() -> Callable[[], float]:
    return lambda: MIDDAY


class ScriptedLink:
    """A Link whose answers come from a script: registers, or an error to raise.

    `answers` maps (unit, function, start) to a list of registers, or to a callable
    returning one (or raising); `down` makes connect/read fail like an unplugged cable.
    Every request is recorded, so tests can check what was read and when.
    """

    def __init__(self, answers: dict[tuple[int, int, int], Any]) -> None:
        self.answers = answers
        self.down = False
        self.connected = False
        self.requests: list[tuple[int, int, int, int]] = []
        self.connects = 0

    def connect(self) -> None:
        self.connects += 1
        if self.down:
            raise LinkDownError("connection refused")
        self.connected = True

    def read(self, unit: int, function: int, start: int, count: int) -> list[int]:
        self.requests.append((unit, function, start, count))
        if self.down or not self.connected:
            self.connected = False
            raise LinkDownError("connection reset")
        answer = self.answers.get((unit, function, start))
        if answer is None:
            raise DeviceError(2, f"unit {unit} fc{function} {start}+{count}")
        if callable(answer):
            answer = answer()
        if isinstance(answer, Exception):
            raise answer
        return list(answer)[:count]

    def close(self) -> None:
        self.connected = False


__all__ = ["MIDDAY", "NoResponseError", "ScriptedLink"]
