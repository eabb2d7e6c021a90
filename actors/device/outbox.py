"""Batches sent to the harvest actor but not yet acknowledged: bounded, re-sent, never silent.

The harvest actor acknowledges a batch only after its SQLite commit. Until then the device
actor keeps it here and re-sends it after `resend_after` seconds (the harvest may have
restarted and lost it). At most `limit` batches wait; when one more arrives the oldest is
given up and a gap per device says which readings were lost, so the loss is visible.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

from actors.harvest.messages import DeviceEvent, Gap, Reading, ReadingBatch


@dataclass
class _Pending:
    batch: ReadingBatch
    sent_at: float | None  # None: never sent (no harvest address yet)


class BatchOutbox:
    def __init__(self, producer: str, limit: int = 8, resend_after: float = 5.0) -> None:
        if limit < 1:
            raise ValueError("limit must be at least 1")
        self.producer = producer
        self.limit = limit
        self.resend_after = resend_after
        self.next_id = 1
        self.pending: OrderedDict[int, _Pending] = OrderedDict()
        self.carry_gaps: list[Gap] = []  # gaps for batches given up, shipped with the next batch
        self.dropped = 0

    def add(self, readings: list[Reading], gaps: list[Gap], events: list[DeviceEvent]) -> ReadingBatch:
        """Create the next batch (with any gaps carried over) and keep it until acknowledged."""
        batch = ReadingBatch(self.producer, self.next_id, tuple(readings), tuple(self.carry_gaps + gaps), tuple(events))
        self.carry_gaps = []
        self.next_id += 1
        self.pending[batch.batch_id] = _Pending(batch, None)
        while len(self.pending) > self.limit:
            _, oldest = self.pending.popitem(last=False)
            self.dropped += 1
            self.carry_gaps.extend(_loss_gaps(oldest.batch))
        return batch

    def sent(self, batch_id: int, now: float) -> None:
        if batch_id in self.pending:
            self.pending[batch_id].sent_at = now

    def ack(self, batch_id: int) -> bool:
        return self.pending.pop(batch_id, None) is not None

    def reject(self, batch_id: int) -> bool:
        """The harvest refused the batch as malformed: re-sending cannot help, so give it up
        now and let the next batch carry a gap per device saying which readings were lost."""
        pending = self.pending.pop(batch_id, None)
        if pending is None:
            return False
        self.dropped += 1
        self.carry_gaps.extend(_loss_gaps(pending.batch, reason="rejected_by_harvest"))
        return True

    def due(self, now: float) -> list[ReadingBatch]:
        """Batches never sent, or sent longer than `resend_after` ago, oldest first."""
        return [p.batch for p in self.pending.values() if p.sent_at is None or now - p.sent_at >= self.resend_after]

    def __len__(self) -> int:
        return len(self.pending)


def _loss_gaps(batch: ReadingBatch, reason: str = "dropped_unacknowledged") -> list[Gap]:
    """One gap per device covering the readings of a batch that had to be given up."""
    by_device: dict[str, list[Reading]] = {}
    for reading in batch.readings:
        by_device.setdefault(reading.device_id, []).append(reading)
    gaps = [Gap(d, min(r.wall_time for r in rs), max(r.wall_time for r in rs), reason, len(rs)) for d, rs in by_device.items()]
    # The batch's own gaps must not vanish either: they travel on with the next batch.
    return gaps + list(batch.gaps)
