"""Putting numbered frames back in order: thespian does not promise ordering between actors.

The listener numbers each connection's frames 0, 1, 2, ...; the charger actor feeds them
through a `Resequencer`, which releases them in order and holds early ones (a bounded
number). If a gap never fills (a frame was lost, e.g. sent to an actor that died), the
buffer overflows and the caller resynchronises by closing the connection, which makes
the charger reconnect and resend what it has not had answered.
"""

from __future__ import annotations

MAX_HELD = 64


class Resequencer:
    def __init__(self, next_seq: int = 0, limit: int = MAX_HELD) -> None:
        self.limit = limit
        self.reset(next_seq)

    def reset(self, next_seq: int) -> None:
        self.expected = next_seq
        self.held: dict[int, str] = {}
        self.overflowed = False

    def push(self, seq: int, text: str) -> list[str]:
        """Frames now deliverable, in order (possibly none, possibly several)."""
        if seq < self.expected:
            return []  # a duplicate, or from before a reset
        self.held[seq] = text
        ready = []
        while self.expected in self.held:
            ready.append(self.held.pop(self.expected))
            self.expected += 1
        self.overflowed = len(self.held) > self.limit
        return ready
