"""Committed reading batches as live events: what the harvest actor emits after each ack.

The harvest family builds its own events (`LiveEvent` on `actors.live.topics`) and sends
them with `actors.live.publisher.LivePublisher`, the one interface every source uses
(the charger actor does the same); the live feed knows nothing of harvest messages.

The harvest actor is the right source for `device/<id>`: it sees every reading of every
device once, right after it is durable, with its outbox sequence number (`outbox_seq`,
which also lets a client drop the duplicate of a batch a producer re-sent). Charger
exports (`charger:<id>` readings) are skipped: the charger actor emits those sessions
on the transaction and charger topics the moment they happen.
"""

from __future__ import annotations

import time
from typing import Any

from actors.harvest.messages import ReadingBatch
from actors.live.messages import LiveEvent
from actors.live.topics import device_topic

CHARGER_PREFIX = "charger:"


def batch_events(batch: ReadingBatch, first_seq: dict[str, Any]) -> list[LiveEvent]:
    """One `reading` event per reading, one `gap` per gap, one `device_event` per event, in batch order."""
    now = time.time()
    events: list[LiveEvent] = []
    next_seq = {device: int(seq) for device, seq in (first_seq or {}).items() if isinstance(seq, int)}
    for reading in batch.readings:
        if reading.device_id.startswith(CHARGER_PREFIX):
            continue
        seq = next_seq.get(reading.device_id)
        if seq is not None:
            next_seq[reading.device_id] = seq + 1
        events.append(LiveEvent(device_topic(reading.device_id), "reading",
                                {"values": dict(reading.values), "flags": list(reading.flags), "outbox_seq": seq}, reading.wall_time, now))
    for gap in batch.gaps:
        if not gap.device_id.startswith(CHARGER_PREFIX):
            events.append(LiveEvent(device_topic(gap.device_id), "gap", {"start": gap.start_wall, "end": gap.end_wall, "reason": gap.reason,
                                                                         "missed_polls": gap.missed_polls}, gap.end_wall, now))
    for event in batch.events:
        if not event.device_id.startswith(CHARGER_PREFIX):
            events.append(LiveEvent(device_topic(event.device_id), "device_event", {"kind": event.kind, "detail": dict(event.detail)}, event.wall_time, now))
    return events
