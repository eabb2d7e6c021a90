"""Identity and ingest: many producer batches in one transaction, each item numbered once.

Identity. A batch is known by (producer, incarnation, batch_id): a producer numbers its
batches upwards within one incarnation (one life of the actor; a restarted actor is a
new incarnation and may count from 1 again). Incarnations sort by the time they began
(their text starts with a zero-padded start time), so a late batch of an earlier life
is recognised as such. The outbox keeps one row per producer
with its incarnation and the last batch id it committed, so a re-send after a lost ack
(same incarnation, id not above the last) is recognised as the same items and never
stored twice: no content, and no clock read at send time, takes part in the identity.

Order. Sequence order is time order within a stream. A batch names the earlier batches
its producer still holds unacknowledged (`after`); one that would overtake them (say,
re-sent batches on their way to a restarted harvest) is held back, unacknowledged, and
the producer sends it again after the earlier ones.

Gaps. When a producer comes back as a new incarnation (its actor restarted, or the
whole gateway did after a power cut), every device stream it feeds gets a gap record
from its last committed item to its first new reading, so that window is never silent.

Items of one batch are numbered in time order, and a device event (a counter reset)
before the reading it describes, so aggregation and budget drops can split at it.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

from storage.db import transaction
from storage.outbox.schema import GATEWAY_STREAM, KIND_COUNTER, ROW_OVERHEAD_BYTES, Counters, dumps, finite_json

RESTART_GAP_REASON = "not_polled"  # the producer's actor (or the gateway) was down
DEFAULT_RESTART_GAP_MIN_S = 2.0  # with no poll interval given, a shorter silence is not a gap
COUNTER_EVENTS = ("counter_wrap", "counter_reset")  # events that change a counter's offset (see outbox_counter_offsets)


class ReadingLike(Protocol):
    device_id: str
    wall_time: float
    mono_time: float
    boot_id: str
    values: dict[str, Any]
    raw: dict[str, Any]
    flags: tuple[str, ...]


class GapLike(Protocol):
    device_id: str
    start_wall: float
    end_wall: float
    reason: str
    missed_polls: int


class EventLike(Protocol):
    device_id: str
    wall_time: float
    kind: str
    detail: dict[str, Any]


class BatchLike(Protocol):
    """What a producer hands the outbox (`actors.harvest.messages.ReadingBatch` is one)."""

    producer: str
    batch_id: int
    readings: Sequence[ReadingLike]
    gaps: Sequence[GapLike]
    events: Sequence[EventLike]


@dataclass
class IngestResult:
    """What happened to one batch: `stored`, `duplicate` (already committed), `held` (would overtake)
    or `stale` (from a producer's earlier life, after its next life began: covered by the restart gap)."""

    status: str
    first_seq: dict[str, int] = field(default_factory=dict)
    nulled: list[str] = field(default_factory=list)  # "device.value" paths of non-finite numbers stored as null
    restart_gaps: int = 0

    @property
    def acknowledge(self) -> bool:
        return self.status in ("stored", "duplicate", "stale")


@dataclass
class _Producer:
    incarnation: str
    last_batch_id: int
    first_seq: dict[str, int]
    known: bool  # a row exists (or was written in this transaction)


class IngestMixin(Counters):
    conn: sqlite3.Connection
    clock_jump_threshold_s: float

    def ingest(self, batch: BatchLike) -> dict[str, int]:
        """Commit one batch in one transaction; return device -> seq of its first reading."""
        return self.ingest_many([batch])[0].first_seq

    def counter_offsets(self, streams: Sequence[str]) -> dict[str, dict[str, tuple[float, float]]]:
        """Per stream, per counter quantity: (offset, last reported value) at its last wrap or reset."""
        found: dict[str, dict[str, tuple[float, float]]] = {}
        for stream in streams:
            rows = self.conn.execute("SELECT quantity, offset, last FROM outbox_counter_offsets WHERE stream = ?", (stream,)).fetchall()
            if rows:
                found[stream] = {str(q): (float(o), float(v)) for q, o, v in rows}
        return found

    def ingest_many(self, batches: Sequence[BatchLike]) -> list[IngestResult]:
        """Commit every batch in one transaction (one fsync for all); one result per batch, in order.

        Batches of one producer are applied in batch-id order whatever order they are
        given in. Nothing is committed if anything fails (the caller then acknowledges
        nothing and the producers re-send).
        """
        results: list[IngestResult | None] = [None] * len(batches)
        order = sorted(range(len(batches)), key=lambda i: (batches[i].producer, _incarnation(batches[i]), batches[i].batch_id))
        with transaction(self.conn):
            state = _IngestState(self)
            for i in order:
                results[i] = self._ingest_one(state, batches[i])
            state.flush()
        return [r for r in results if r is not None]

    def _ingest_one(self, state: _IngestState, batch: BatchLike) -> IngestResult:
        incarnation = _incarnation(batch)
        producer = state.producer(batch.producer)
        same_life = producer.known and producer.incarnation == incarnation
        if same_life and batch.batch_id <= producer.last_batch_id:
            return IngestResult("duplicate", dict(producer.first_seq) if batch.batch_id == producer.last_batch_id else {})
        if producer.known and incarnation and producer.incarnation and incarnation < producer.incarnation:
            # a batch of an earlier life that arrives after the next life's first: the restart
            # gap already covers its window, and storing it now would put old readings after new
            return IngestResult("stale")
        waiting_for = [b for b in getattr(batch, "after", ()) if not (same_life and b <= producer.last_batch_id)]
        if waiting_for:
            return IngestResult("held")
        result = IngestResult("stored")
        if producer.known and not same_life:
            result.restart_gaps = state.restart_gaps(batch)
        result.first_seq, result.nulled = state.append(batch)
        producer.incarnation, producer.last_batch_id, producer.first_seq, producer.known = incarnation, batch.batch_id, result.first_seq, True
        state.touched_producers.add(batch.producer)
        return result


def _incarnation(batch: BatchLike) -> str:
    return str(getattr(batch, "incarnation", "") or "")


class _IngestState:
    """Sequence counters, producer rows and new item rows of one ingest transaction."""

    def __init__(self, outbox: IngestMixin) -> None:
        self.outbox = outbox
        self.conn = outbox.conn
        self.producers: dict[str, _Producer] = {}
        self.touched_producers: set[str] = set()
        self.next_seq: dict[str, int] = {}
        self.last_wall: dict[str, float | None] = {}
        self.offsets: dict[str, float | None] = {}  # boot id -> wall - mono, read once per transaction
        self.rows: list[tuple] = []
        self.kinds: dict[str, int] = {}
        self.clock_events = 0
        self.nulled = 0
        self.counter_offsets: dict[tuple[str, str], tuple[float, float]] = {}

    def producer(self, name: str) -> _Producer:
        if name not in self.producers:
            row = self.conn.execute("SELECT incarnation, last_batch_id, first_seq FROM outbox_producers WHERE producer = ?", (name,)).fetchone()
            self.producers[name] = (
                _Producer(row[0], int(row[1]), _loads_seq(row[2]), True) if row else _Producer("", 0, {}, False)
            )
        return self.producers[name]

    def _stream(self, stream: str) -> None:
        if stream not in self.next_seq:
            row = self.conn.execute("SELECT last_seq, last_wall FROM outbox_sequences WHERE stream = ?", (stream,)).fetchone()
            self.next_seq[stream] = (row[0] if row else 0) + 1
            self.last_wall[stream] = row[1] if row else None

    def _add(self, stream: str, kind: str, wall: float, body: str, end_wall: float | None = None) -> int:
        self._stream(stream)
        seq = self.next_seq[stream]
        self.next_seq[stream] = seq + 1
        latest = end_wall if end_wall is not None else wall
        known = self.last_wall[stream]
        self.last_wall[stream] = latest if known is None else max(known, latest)
        self.rows.append((stream, seq, seq, kind, wall, body, len(body) + ROW_OVERHEAD_BYTES))
        self.kinds[kind] = self.kinds.get(kind, 0) + 1
        return seq

    def restart_gaps(self, batch: BatchLike) -> int:
        """A gap per device stream from its last committed item to the new incarnation's first reading."""
        firsts: dict[str, float] = {}
        for reading in batch.readings:
            firsts[reading.device_id] = min(reading.wall_time, firsts.get(reading.device_id, reading.wall_time))
        intervals = getattr(batch, "intervals", None) or {}
        written = 0
        for device, first in firsts.items():
            self._stream(device)
            last = self.last_wall[device]
            interval = float(intervals.get(device) or 0.0)
            threshold = 1.5 * interval if interval > 0 else DEFAULT_RESTART_GAP_MIN_S
            if last is None or first - last <= threshold:
                continue
            missed = max(0, round((first - last) / interval) - 1) if interval > 0 else 0
            body = dumps({"start": last, "end": first, "reason": RESTART_GAP_REASON, "missed": missed})
            self._add(device, "gap", last, body, end_wall=first)
            written += 1
        return written

    def append(self, batch: BatchLike) -> tuple[dict[str, int], list[str]]:
        # readings keep the producer's order (poll order, right even when the wall clock jumps);
        # a gap or event goes before the first reading at or after its time
        notes = sorted([(g.start_wall, n, "gap", g) for n, g in enumerate(batch.gaps)] + [(e.wall_time, n, "event", e) for n, e in enumerate(batch.events)],
                       key=lambda e: (e[0], e[2], e[1]))
        entries: list[tuple[str, Any]] = []
        waiting = 0
        for reading in batch.readings:
            while waiting < len(notes) and notes[waiting][0] <= reading.wall_time:
                entries.append((notes[waiting][2], notes[waiting][3]))
                waiting += 1
            entries.append(("reading", reading))
        entries += [(kind, item) for _, _, kind, item in notes[waiting:]]
        first_seq: dict[str, int] = {}
        nulled: list[str] = []
        for kind, item in entries:
            if kind == "reading":
                self._clock_check(item)
                content: dict[str, Any] = {"t": item.wall_time, "m": item.mono_time, "b": item.boot_id, "v": item.values}
                flags = list(item.flags)
                if item.raw:
                    content["r"] = item.raw
                if flags:
                    content["f"] = flags
                body, bad = finite_json(content)
                if bad:
                    names = sorted({p[2:] for p in bad if p.startswith("v.")})
                    content = {**content, "v": {k: (None if k in names else v) for k, v in item.values.items()}, "f": sorted(set(flags) | set(names))}
                    if "r" in content:
                        content["r"] = _finite_only(item.raw)
                    body = dumps(content)
                    nulled += [f"{item.device_id}.{p}" for p in bad]
                seq = self._add(item.device_id, "reading", item.wall_time, body)
                first_seq.setdefault(item.device_id, seq)
            elif kind == "gap":
                body, bad = finite_json({"start": item.start_wall, "end": item.end_wall, "reason": item.reason, "missed": item.missed_polls})
                self._add(item.device_id, "gap", item.start_wall, body, end_wall=item.end_wall)
                nulled += [f"{item.device_id}.{p}" for p in bad]
            else:
                body, bad = finite_json({"t": item.wall_time, "kind": item.kind, "detail": item.detail})
                self._add(item.device_id, "event", item.wall_time, body)
                nulled += [f"{item.device_id}.{p}" for p in bad]
                self._counter_offset(item)
        self.nulled += len(nulled)
        return first_seq, nulled

    def _counter_offset(self, event: Any) -> None:
        """A wrap or reset changes what the device adds to its counter register: keep it for its next life."""
        detail = event.detail if isinstance(event.detail, dict) else {}
        if event.kind not in COUNTER_EVENTS or not isinstance(detail.get("quantity"), str):
            return
        try:
            offset, last = float(detail["offset"]), float(detail["value"])
        except (KeyError, TypeError, ValueError):
            return
        if math.isfinite(offset) and math.isfinite(last):
            self.counter_offsets[(event.device_id, detail["quantity"])] = (offset, last)

    def _clock_check(self, reading: ReadingLike) -> None:
        """A wall-clock jump: wall - monotonic is constant within one boot unless the clock is set."""
        boot_id, wall, mono = reading.boot_id, reading.wall_time, reading.mono_time
        offset = wall - mono
        if boot_id not in self.offsets:
            row = self.conn.execute("SELECT wall_minus_mono FROM outbox_clock WHERE boot_id = ?", (boot_id,)).fetchone()
            self.offsets[boot_id] = row[0] if row else None
        known = self.offsets[boot_id]
        if known is None:
            self.conn.execute("INSERT INTO outbox_clock (boot_id, wall_minus_mono) VALUES (?, ?)", (boot_id, offset))
            self.offsets[boot_id] = offset
            return
        jump = offset - known
        if abs(jump) < self.outbox.clock_jump_threshold_s:
            return
        self.conn.execute("UPDATE outbox_clock SET wall_minus_mono = ? WHERE boot_id = ?", (offset, boot_id))
        self.offsets[boot_id] = offset
        self.clock_events += 1
        body = dumps({"t": wall, "m": mono, "b": boot_id, "jump_s": jump, "old_offset": known, "new_offset": offset})
        self._add(GATEWAY_STREAM, "clock", wall, body)

    def flush(self) -> None:
        conn = self.conn
        if self.rows:
            conn.executemany(
                "INSERT INTO outbox_items (stream, seq, seq_last, kind, wall_time, body, nbytes) VALUES (?, ?, ?, ?, ?, ?, ?)", self.rows
            )
            conn.executemany(
                "INSERT INTO outbox_sequences (stream, last_seq, last_wall) VALUES (?, ?, ?)"
                " ON CONFLICT(stream) DO UPDATE SET last_seq = excluded.last_seq, last_wall = excluded.last_wall",
                [(stream, seq - 1, self.last_wall[stream]) for stream, seq in self.next_seq.items()],
            )
        if self.touched_producers:
            conn.executemany(
                "INSERT INTO outbox_producers (producer, incarnation, last_batch_id, first_seq) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(producer) DO UPDATE SET incarnation = excluded.incarnation, last_batch_id = excluded.last_batch_id,"
                " first_seq = excluded.first_seq",
                [(name, p.incarnation, p.last_batch_id, dumps(p.first_seq)) for name, p in ((n, self.producers[n]) for n in sorted(self.touched_producers))],
            )
        if self.counter_offsets:
            conn.executemany(
                "INSERT INTO outbox_counter_offsets (stream, quantity, offset, last) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(stream, quantity) DO UPDATE SET offset = excluded.offset, last = excluded.last",
                [(stream, quantity, offset, last) for (stream, quantity), (offset, last) in sorted(self.counter_offsets.items())],
            )
        deltas = {KIND_COUNTER + kind: n for kind, n in self.kinds.items()}
        deltas.update({"bytes": sum(r[6] for r in self.rows), "items_in": len(self.rows), "clock_events": self.clock_events, "nonfinite_values": self.nulled})
        self.outbox._bump_many(deltas)


def _loads_seq(text: str) -> dict[str, int]:
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    return {str(k): int(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _finite_only(raw: dict[str, Any]) -> Any:
    text, _ = finite_json(raw)
    return json.loads(text)
