"""Messages of the live feed family.

Actors that produce events send `LiveEvent` to the API actor, which owns the hub. It is
fire-and-forget: no reply, no ack; an event lost while the API restarts is covered by
the feed's contract (subscribers are dropped, reconnect, and are told to resync).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from supervisor.brief import BriefRepr


@dataclass(frozen=True, repr=False)
class LiveEvent(BriefRepr):
    """One thing that happened, for the subscribers of `topic`.

    `kind` says what (e.g. "meter_values", "connector_status", "reading", "restart");
    `data` is a small JSON-able dict; `time` is the wall-clock time of the event itself
    (a charger's timestamp, a reading's wall_time), `emitted` when the source sent it.
    """

    topic: str
    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float | None = None
    emitted: float | None = None


@dataclass(frozen=True, repr=False)
class LiveBatch(BriefRepr):
    """Several events in one message (a harvest batch's readings): one send, same order."""

    events: tuple[LiveEvent, ...] = ()
