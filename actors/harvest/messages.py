"""Messages between device actors (producers) and the harvest actor (durable outbox writer).

The contract: a producer sends `ReadingBatch`; the harvest actor assigns each reading
its per-device sequence number, commits the batch together with every other batch that
arrived within its commit window in one SQLite transaction (group commit), and only
then replies `BatchAck` with the same `batch_id`. Until the ack arrives the producer
keeps the batch (a small bounded number of them) and re-sends it after a timeout or a
harvest restart. `batch_id` is unique per producer and makes re-sends idempotent.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from supervisor.brief import BriefRepr


@dataclass(frozen=True)
class Reading:
    """One poll of one device: normalized quantities plus the raw registers they came from.

    `values` maps normalized quantity names (ac_power_w, energy_total_wh, ...) to numbers
    or None (not implemented / not available). `flags` names values that failed sanity
    checks (they are kept for diagnosis but not uploaded as truth).
    """

    device_id: str
    wall_time: float  # seconds since the epoch, from the injected clock
    mono_time: float  # time.monotonic() of the same instant
    boot_id: str  # /proc/sys/kernel/random/boot_id: monotonic times compare only within one boot
    values: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Gap:
    """A window in which a device produced no readings, and why (offline, poll error, dropped)."""

    device_id: str
    start_wall: float
    end_wall: float
    reason: str
    missed_polls: int = 0


@dataclass(frozen=True)
class DeviceEvent:
    """Something noteworthy that is not a reading: a counter reset or wrap, a clock jump, ..."""

    device_id: str
    wall_time: float
    kind: str  # e.g. "counter_reset", "counter_wrap", "clock_jump"
    detail: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True, repr=False)
class ReadingBatch(BriefRepr):
    """One producer's items. Identity is (producer, incarnation, batch_id), never the content.

    `incarnation` names one life of the producing actor (a restarted actor is a new one and
    may number its batches from 1 again; a producer whose batch ids survive restarts, like a
    charger's export queue, leaves it empty). `after` lists the earlier batches the producer
    still holds unacknowledged: the harvest never lets this batch overtake them, so sequence
    order stays time order. `intervals` gives each device's poll interval, so the gap left
    by a restart can say how many polls it missed.
    """

    producer: str  # the sending actor's name; acks and dedupe are per producer
    batch_id: int  # increasing per producer incarnation
    readings: tuple[Reading, ...] = ()
    gaps: tuple[Gap, ...] = ()
    events: tuple[DeviceEvent, ...] = ()
    incarnation: str = ""
    after: tuple[int, ...] = ()
    intervals: dict[str, float] = field(default_factory=dict)


@dataclass(frozen=True, repr=False)
class BatchAck(BriefRepr):
    producer: str
    batch_id: int
    first_seq: dict[str, int] = field(default_factory=dict)  # device_id -> seq of its first reading in the batch


@dataclass(frozen=True)
class ResendDeadLetters:
    """To a transport actor: queue its parked batches (all, or these ids) to be sent again."""

    ids: tuple[int, ...] | None = None


@dataclass(frozen=True)
class DeadLettersQueued:
    transport: str
    queued: int


@dataclass(frozen=True)
class CounterOffsetsRequest:
    """A device actor starting: what its predecessor added to each wrapped counter, by device."""

    device_ids: tuple[str, ...]


@dataclass(frozen=True)
class CounterOffsets:
    """The answer: {device id: {quantity: (offset, last reported value)}}, from the outbox."""

    offsets: dict[str, dict[str, tuple[float, float]]]
