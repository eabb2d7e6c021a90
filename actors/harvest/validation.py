"""Checks on incoming reading batches, so malformed input is refused whole with a precise reason."""

from __future__ import annotations

import math
from typing import Any

from actors.harvest.messages import DeviceEvent, Gap, Reading, ReadingBatch
from storage.outbox import GATEWAY_STREAM

MAX_ITEMS_PER_BATCH = 10_000


class BadBatchError(ValueError):
    """Names the first offending field, e.g. `readings[3].wall_time: not a finite number`."""


def _finite(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _device(where: str, device_id: Any) -> None:
    if not isinstance(device_id, str) or not device_id or device_id == GATEWAY_STREAM or len(device_id) > 200:
        raise BadBatchError(f"{where}.device_id: must be a non-empty string of at most 200 characters, not {GATEWAY_STREAM!r}")


def validate_batch(batch: Any) -> ReadingBatch:
    if not isinstance(batch, ReadingBatch):
        raise BadBatchError(f"expected ReadingBatch, got {type(batch).__name__}")
    if not isinstance(batch.producer, str) or not batch.producer:
        raise BadBatchError("producer: must be a non-empty string")
    if not isinstance(batch.batch_id, int) or isinstance(batch.batch_id, bool):
        raise BadBatchError("batch_id: must be an integer")
    if not isinstance(batch.incarnation, str) or len(batch.incarnation) > 200:
        raise BadBatchError("incarnation: must be a string of at most 200 characters")
    if not isinstance(batch.after, tuple) or not all(isinstance(b, int) and not isinstance(b, bool) and b < batch.batch_id for b in batch.after):
        raise BadBatchError("after: must be a tuple of integer batch ids lower than batch_id")
    if not isinstance(batch.intervals, dict) or not all(isinstance(k, str) and _finite(v) and v > 0 for k, v in batch.intervals.items()):
        raise BadBatchError("intervals: must map device ids to positive finite poll intervals in seconds")
    total = len(batch.readings) + len(batch.gaps) + len(batch.events)
    if total > MAX_ITEMS_PER_BATCH:
        raise BadBatchError(f"batch holds {total} items; at most {MAX_ITEMS_PER_BATCH} per batch")
    for i, r in enumerate(batch.readings):
        where = f"readings[{i}]"
        if not isinstance(r, Reading):
            raise BadBatchError(f"{where}: expected Reading, got {type(r).__name__}")
        _device(where, r.device_id)
        for name in ("wall_time", "mono_time"):
            if not _finite(getattr(r, name)):
                raise BadBatchError(f"{where}.{name}: not a finite number")
        if not isinstance(r.boot_id, str) or not r.boot_id:
            raise BadBatchError(f"{where}.boot_id: must be a non-empty string")
        if not isinstance(r.values, dict):
            raise BadBatchError(f"{where}.values: must be a dict")
    for i, g in enumerate(batch.gaps):
        where = f"gaps[{i}]"
        if not isinstance(g, Gap):
            raise BadBatchError(f"{where}: expected Gap, got {type(g).__name__}")
        _device(where, g.device_id)
        if not (_finite(g.start_wall) and _finite(g.end_wall)):
            raise BadBatchError(f"{where}: start_wall and end_wall must be finite numbers")
    for i, e in enumerate(batch.events):
        where = f"events[{i}]"
        if not isinstance(e, DeviceEvent):
            raise BadBatchError(f"{where}: expected DeviceEvent, got {type(e).__name__}")
        _device(where, e.device_id)
        if not _finite(e.wall_time):
            raise BadBatchError(f"{where}.wall_time: not a finite number")
    return batch
