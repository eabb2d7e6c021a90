"""Batches sent to the harvest actor but not yet acknowledged: bounded, re-sent, never silent.

The harvest actor acknowledges a batch only after its SQLite commit. Until then the device
actor keeps it here and re-sends it after `resend_after` seconds (the harvest may have
restarted and lost it). At most `limit` batches wait; when one more arrives the oldest is
given up and a gap per device says which readings were lost, and its counter events travel
on with the next batch, so the loss is visible and no reset or wrap is forgotten.

Each batch names this actor's incarnation (one life of the process: batch ids start at 1
again after a restart) and the earlier batches still waiting (`after`), so the harvest
never stores a batch before the ones it would overtake. Carried gaps of one device and
reason that touch are merged, so a long harvest outage (a full disk) costs one gap record
per device, not one per lost batch.
"""

from __future__ import annotations

import os
import time
from collections import OrderedDict
from dataclasses import dataclass, replace

from actors.harvest.messages import DeviceEvent, Gap, Reading, ReadingBatch

MAX_CARRIED_EVENTS = 256  # counter events of given-up batches kept for the next batch (oldest dropped)


@dataclass
class _Pending:
    batch: ReadingBatch
    sent_at: float | None  # None: never sent (no harvest address yet)
    sent_to: object = None  # the harvest address it went to: a new address means send again


def new_incarnation() -> str:
    """Unique per actor process life, and sorting by when it began: zero-padded start time (ns), then the pid."""
    return f"{time.time_ns():020d}-{os.getpid()}"


class UnackedBatches:
    def __init__(self, producer: str, limit: int = 8, resend_after: float = 5.0, *, intervals: dict[str, float] | None = None,
                 incarnation: str | None = None) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.producer = producer
        self.limit = limit
        self.resend_after = resend_after
        self.intervals = dict(intervals or {})
        self.incarnation = incarnation if incarnation is not None else new_incarnation()
        self.next_id = 1
        self.pending: OrderedDict[int, _Pending] = OrderedDict()
        self.carry_gaps: list[Gap] = []  # gaps for batches given up, shipped with the next batch
        self.carry_events: list[DeviceEvent] = []  # their counter events, likewise
        self.dropped = 0

    def add(self, readings: list[Reading], gaps: list[Gap], events: list[DeviceEvent]) -> ReadingBatch:
        """Create the next batch (with anything carried over) and keep it until acknowledged.

        Room is made first, so the new batch carries the loss of the batch given up for it.
        """
        while len(self.pending) >= self.limit:
            _, oldest = self.pending.popitem(last=False)
            self._give_up(oldest.batch, "dropped_unacknowledged")
        batch = ReadingBatch(
            self.producer, self.next_id, tuple(readings), tuple(self.carry_gaps + gaps), tuple(self.carry_events + events),
            incarnation=self.incarnation, after=tuple(self.pending), intervals=self.intervals,
        )
        self.carry_gaps, self.carry_events = [], []
        self.next_id += 1
        self.pending[batch.batch_id] = _Pending(batch, None)
        return batch

    def _give_up(self, batch: ReadingBatch, reason: str) -> None:
        self.dropped += 1
        slack = {device: 1.5 * interval for device, interval in self.intervals.items()}
        self.carry_gaps = merge_gaps(self.carry_gaps + _loss_gaps(batch, reason), slack)
        self.carry_events = (self.carry_events + list(batch.events))[-MAX_CARRIED_EVENTS:]

    def sent(self, batch_id: int, now: float, to: object = None) -> None:
        if batch_id in self.pending:
            self.pending[batch_id].sent_at = now
            self.pending[batch_id].sent_to = to

    def ack(self, batch_id: int) -> bool:
        return self.pending.pop(batch_id, None) is not None

    def reject(self, batch_id: int) -> bool:
        """The harvest refused the batch as malformed: re-sending cannot help, so give it up
        now and let the next batch carry a gap per device saying which readings were lost."""
        pending = self.pending.pop(batch_id, None)
        if pending is None:
            return False
        self._give_up(pending.batch, "rejected_by_harvest")
        return True

    def due(self, now: float, to: object = None) -> list[ReadingBatch]:
        """Batches never sent, sent longer than `resend_after` ago, or sent to another address; oldest first.

        Each names the earlier batches still waiting *now* (`after`): one given up since it
        was made is no longer something to wait for, so a loss never holds back the rest.
        """
        due = []
        for batch_id, p in self.pending.items():
            if p.sent_at is None or now - p.sent_at >= self.resend_after or (to is not None and p.sent_to != to):
                after = tuple(i for i in self.pending if i < batch_id)
                if after != p.batch.after:
                    p.batch = replace(p.batch, after=after)
                due.append(p.batch)
        return due

    def __len__(self) -> int:
        return len(self.pending)


def _loss_gaps(batch: ReadingBatch, reason: str) -> list[Gap]:
    """One gap per device covering the readings of a batch that had to be given up."""
    by_device: dict[str, list[Reading]] = {}
    for reading in batch.readings:
        by_device.setdefault(reading.device_id, []).append(reading)
    gaps = [Gap(d, min(r.wall_time for r in rs), max(r.wall_time for r in rs), reason, len(rs)) for d, rs in by_device.items()]
    # The batch's own gaps must not vanish either: they travel on with the next batch.
    return list(batch.gaps) + gaps


def merge_gaps(gaps: list[Gap], slack_s: dict[str, float] | None = None) -> list[Gap]:
    """Merge gaps of one device and reason that overlap or follow within one poll (`slack_s[device]`).

    Only back-to-back losses merge: a batch stored between two given-up ones leaves a
    longer pause than one poll interval, so its readings are never covered by a gap.
    """
    slack_s = slack_s or {}
    merged: list[Gap] = []
    for gap in sorted(gaps, key=lambda g: (g.device_id, g.reason, g.start_wall)):
        last = merged[-1] if merged else None
        if last is not None and (last.device_id, last.reason) == (gap.device_id, gap.reason) and gap.start_wall <= last.end_wall + slack_s.get(gap.device_id, 0.0):
            merged[-1] = Gap(last.device_id, last.start_wall, max(last.end_wall, gap.end_wall), last.reason, last.missed_polls + gap.missed_polls)
        else:
            merged.append(gap)
    return sorted(merged, key=lambda g: g.start_wall)
