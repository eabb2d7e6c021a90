"""The durable outbox: every harvested item, in order, until each transport has it acknowledged.

One table holds the upload stream. Each item belongs to a stream (a device id, or
`GATEWAY_STREAM` for gateway-wide records such as clock events) and carries a
per-stream sequence number persisted here, so its identity (gateway, stream, seq)
never changes across restarts and the receiver can de-duplicate on it. Items are:

    reading    one poll of one device (wall time, monotonic time, boot id, values, raw)
    aggregate  raw readings of one minute folded into one item (covers seq..seq_last)
    gap        a window without readings: reported by the device, or dropped by the budget
    event      a device event (counter reset or wrap, ...)
    clock      a jump of the wall clock against the monotonic clock

Row ids grow monotonically (AUTOINCREMENT), so "oldest first" is "by id". Each
transport has a cursor (the highest row id it has had acknowledged); a row is
deleted once every registered transport's cursor has passed it.

Bounded storage degrades in a fixed order (`Outbox.enforce_budget`): first the
oldest raw readings are folded into one-minute aggregates (cumulative counters keep
their exact first and last values), then the oldest readings are replaced by gap
records that say what was dropped and keep the counters' first and last values, so
energy totals stay exact. Rows a transport may have in flight (its next window of
rows) are never rewritten, and no rewrite spans a transport's cursor.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from actors.harvest.messages import ReadingBatch
from storage.db import connect, migrate, transaction

COMPONENT = "outbox"
GATEWAY_STREAM = "_gateway"  # stream of gateway-wide records (clock events)
DEFAULT_BUDGET_BYTES = 512 * 1024 * 1024
DEFAULT_MIN_FREE_FRACTION = 0.05
CLOCK_JUMP_THRESHOLD_S = 2.0
AGGREGATE_PERIOD_S = 60.0
MAX_DEAD_LETTERS_PER_TRANSPORT = 200
PRODUCER_BATCH_MEMORY = 256  # batch ids remembered per producer for idempotent re-sends
ROW_OVERHEAD_BYTES = 64  # rough per-row cost of ids, index entries and page slack

MIGRATIONS = [
    """
    CREATE TABLE outbox_items (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        stream TEXT NOT NULL,
        seq INTEGER NOT NULL,
        seq_last INTEGER NOT NULL,
        kind TEXT NOT NULL,
        wall_time REAL NOT NULL,
        body TEXT NOT NULL,
        nbytes INTEGER NOT NULL,
        UNIQUE (stream, seq)
    );
    CREATE INDEX outbox_items_kind ON outbox_items (kind, id);
    CREATE TABLE outbox_sequences (
        stream TEXT PRIMARY KEY,
        last_seq INTEGER NOT NULL
    );
    CREATE TABLE outbox_producer_batches (
        producer TEXT NOT NULL,
        batch_id INTEGER NOT NULL,
        digest TEXT NOT NULL,
        first_seq TEXT NOT NULL,
        PRIMARY KEY (producer, batch_id)
    );
    CREATE TABLE outbox_clock (
        boot_id TEXT PRIMARY KEY,
        wall_minus_mono REAL NOT NULL
    );
    CREATE TABLE outbox_cursors (
        transport TEXT PRIMARY KEY,
        acked_id INTEGER NOT NULL DEFAULT 0,
        last_hash TEXT,
        window INTEGER NOT NULL DEFAULT 1000,
        acked_items INTEGER NOT NULL DEFAULT 0,
        acked_seq TEXT NOT NULL DEFAULT '{}',
        last_success REAL,
        last_attempt REAL,
        last_error TEXT,
        failures INTEGER NOT NULL DEFAULT 0,
        backoff_s REAL NOT NULL DEFAULT 0,
        retry_at REAL
    );
    CREATE TABLE outbox_dead_letters (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        transport TEXT NOT NULL,
        created REAL NOT NULL,
        http_status INTEGER,
        error TEXT NOT NULL,
        first_id INTEGER NOT NULL,
        last_id INTEGER NOT NULL,
        items INTEGER NOT NULL,
        batch_hash TEXT NOT NULL,
        jws TEXT NOT NULL
    );
    CREATE TABLE outbox_counters (
        name TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    """,
]

CUMULATIVE_SUFFIXES = ("_wh", "_kwh", "_varh", "_vah")


def is_cumulative(quantity: str) -> bool:
    """Cumulative counters (energy totals) are never averaged: their exact values matter."""
    return quantity.endswith(CUMULATIVE_SUFFIXES)


_dumps = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False).encode


@dataclass(frozen=True)
class OutboxItem:
    """One row of the upload stream as a transport reads it."""

    id: int
    stream: str
    seq: int
    seq_last: int
    kind: str
    wall_time: float
    body: str  # JSON object text
    nbytes: int


@dataclass(frozen=True)
class BudgetReport:
    downsampled_rows: int = 0
    aggregates_written: int = 0
    dropped_rows: int = 0
    gaps_written: int = 0
    over_budget: bool = False


class Outbox:
    """The outbox repository over one SQLite connection (one per actor process).

    `disk_usage` is injectable so tests can simulate a filling disk.
    """

    def __init__(
        self,
        conn: sqlite3.Connection,
        *,
        budget_bytes: int = DEFAULT_BUDGET_BYTES,
        min_free_fraction: float = DEFAULT_MIN_FREE_FRACTION,
        disk_usage: Callable[[], tuple[int, int, int]] | None = None,
        clock_jump_threshold_s: float = CLOCK_JUMP_THRESHOLD_S,
    ) -> None:
        self.conn = conn
        try:
            migrate(conn, COMPONENT, MIGRATIONS)
        except sqlite3.OperationalError:
            # harvest and transports open the database together on first start: whoever lost
            # the race to create the tables finds them there on a second look
            migrate(conn, COMPONENT, MIGRATIONS)
        self.budget_bytes = int(budget_bytes)
        self.min_free_fraction = float(min_free_fraction)
        self.clock_jump_threshold_s = clock_jump_threshold_s
        db_file = conn.execute("PRAGMA database_list").fetchone()["file"]
        self._disk_usage = disk_usage or (lambda: shutil.disk_usage(Path(db_file).parent if db_file else "."))

    @classmethod
    def open(cls, path: str | Path, **kwargs: Any) -> Outbox:
        return cls(connect(path), **kwargs)

    def close(self) -> None:
        self.conn.close()

    # ------------------------------------------------------------ counters
    def _counter(self, name: str) -> int:
        row = self.conn.execute("SELECT value FROM outbox_counters WHERE name = ?", (name,)).fetchone()
        return int(row[0]) if row else 0

    def _bump(self, name: str, delta: int) -> None:
        if delta:
            self.conn.execute(
                "INSERT INTO outbox_counters (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (name, delta),
            )

    @property
    def total_bytes(self) -> int:
        return self._counter("bytes")

    # --------------------------------------------------------------- ingest
    def ingest(self, batch: ReadingBatch) -> dict[str, int]:
        """Commit one producer batch in one transaction; return device -> first reading seq.

        A batch the producer already sent (same producer, batch id and content) is not
        stored again: the original sequence numbers are returned, so a re-send after a
        lost ack is harmless. A reused batch id with different content (a producer that
        restarted its numbering) is stored as new data.
        """
        digest = _batch_digest(batch)
        with transaction(self.conn):
            row = self.conn.execute(
                "SELECT digest, first_seq FROM outbox_producer_batches WHERE producer = ? AND batch_id = ?",
                (batch.producer, batch.batch_id),
            ).fetchone()
            if row is not None and row["digest"] == digest:
                return json.loads(row["first_seq"])
            first_seq = self._append(batch)
            self.conn.execute(
                "INSERT INTO outbox_producer_batches (producer, batch_id, digest, first_seq) VALUES (?, ?, ?, ?)"
                " ON CONFLICT(producer, batch_id) DO UPDATE SET digest = excluded.digest, first_seq = excluded.first_seq",
                (batch.producer, batch.batch_id, digest, _dumps(first_seq)),
            )
            self.conn.execute(
                "DELETE FROM outbox_producer_batches WHERE producer = ? AND batch_id <= ?",
                (batch.producer, batch.batch_id - PRODUCER_BATCH_MEMORY),
            )
        return first_seq

    def _append(self, batch: ReadingBatch) -> dict[str, int]:
        next_seq: dict[str, int] = {}

        def allocate(stream: str) -> int:
            if stream not in next_seq:
                row = self.conn.execute("SELECT last_seq FROM outbox_sequences WHERE stream = ?", (stream,)).fetchone()
                next_seq[stream] = (row[0] if row else 0) + 1
            seq = next_seq[stream]
            next_seq[stream] = seq + 1
            return seq

        rows: list[tuple] = []
        first_seq: dict[str, int] = {}
        offsets: dict[str, float | None] = {}  # boot id -> wall - mono, read once per batch
        for reading in batch.readings:
            for clock_body in self._clock_check(offsets, reading.boot_id, reading.wall_time, reading.mono_time):
                body = _dumps(clock_body)
                rows.append((GATEWAY_STREAM, (s := allocate(GATEWAY_STREAM)), s, "clock", reading.wall_time, body, len(body) + ROW_OVERHEAD_BYTES))
            content = {"t": reading.wall_time, "m": reading.mono_time, "b": reading.boot_id, "v": reading.values}
            if reading.flags:
                content["f"] = list(reading.flags)
            if reading.raw:
                content["r"] = reading.raw
            body = _dumps(content)
            seq = allocate(reading.device_id)
            first_seq.setdefault(reading.device_id, seq)
            rows.append((reading.device_id, seq, seq, "reading", reading.wall_time, body, len(body) + ROW_OVERHEAD_BYTES))
        for gap in batch.gaps:
            body = _dumps({"start": gap.start_wall, "end": gap.end_wall, "reason": gap.reason, "missed": gap.missed_polls})
            rows.append((gap.device_id, (s := allocate(gap.device_id)), s, "gap", gap.start_wall, body, len(body) + ROW_OVERHEAD_BYTES))
        for event in batch.events:
            body = _dumps({"t": event.wall_time, "kind": event.kind, "detail": event.detail})
            rows.append((event.device_id, (s := allocate(event.device_id)), s, "event", event.wall_time, body, len(body) + ROW_OVERHEAD_BYTES))
        self.conn.executemany(
            "INSERT INTO outbox_items (stream, seq, seq_last, kind, wall_time, body, nbytes) VALUES (?, ?, ?, ?, ?, ?, ?)", rows
        )
        self.conn.executemany(
            "INSERT INTO outbox_sequences (stream, last_seq) VALUES (?, ?)"
            " ON CONFLICT(stream) DO UPDATE SET last_seq = excluded.last_seq",
            [(stream, seq - 1) for stream, seq in next_seq.items()],
        )
        self._bump("bytes", sum(r[6] for r in rows))
        self._bump("items_in", len(rows))
        return first_seq

    def _clock_check(self, offsets: dict[str, float | None], boot_id: str, wall: float, mono: float) -> list[dict]:
        """Detect a wall-clock jump: wall - monotonic is constant within one boot unless the clock is set."""
        offset = wall - mono
        if boot_id not in offsets:
            row = self.conn.execute("SELECT wall_minus_mono FROM outbox_clock WHERE boot_id = ?", (boot_id,)).fetchone()
            offsets[boot_id] = row[0] if row else None
        known = offsets[boot_id]
        if known is None:
            self.conn.execute("INSERT INTO outbox_clock (boot_id, wall_minus_mono) VALUES (?, ?)", (boot_id, offset))
            offsets[boot_id] = offset
            return []
        jump = offset - known
        if abs(jump) < self.clock_jump_threshold_s:
            return []
        self.conn.execute("UPDATE outbox_clock SET wall_minus_mono = ? WHERE boot_id = ?", (offset, boot_id))
        offsets[boot_id] = offset
        self._bump("clock_events", 1)
        return [{"t": wall, "m": mono, "b": boot_id, "jump_s": jump, "old_offset": known, "new_offset": offset}]

    # ------------------------------------------------------------ transports
    def register_transport(self, name: str, window: int) -> None:
        """Create the transport's cursor (at the oldest retained row) or update its in-flight window."""
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO outbox_cursors (transport, window) VALUES (?, ?)"
                " ON CONFLICT(transport) DO UPDATE SET window = excluded.window",
                (name, int(window)),
            )

    def cursor(self, name: str) -> sqlite3.Row:
        row = self.conn.execute("SELECT * FROM outbox_cursors WHERE transport = ?", (name,)).fetchone()
        if row is None:
            raise KeyError(f"transport {name!r} is not registered")
        return row

    def pending(self, name: str, max_count: int, max_bytes: int) -> list[OutboxItem]:
        """The oldest items the transport has not had acknowledged, bounded by count and bytes.

        At least one item is returned when any is pending, even if it alone exceeds max_bytes.
        """
        acked_id = self.cursor(name)["acked_id"]
        rows = self.conn.execute(
            "SELECT id, stream, seq, seq_last, kind, wall_time, body, nbytes FROM outbox_items WHERE id > ? ORDER BY id LIMIT ?",
            (acked_id, max_count),
        ).fetchall()
        items, size = [], 0
        for row in rows:
            size += row["nbytes"]
            if items and size > max_bytes:
                break
            items.append(OutboxItem(*row))
        return items

    def release(self, name: str, last_id: int, batch_hash: str, acked_seq: dict[str, int], items: int, now: float) -> None:
        """The receiver acknowledged everything up to `last_id`: advance the cursor, free rows all transports have."""
        with transaction(self.conn):
            row = self.cursor(name)
            merged = json.loads(row["acked_seq"])
            merged.update(acked_seq)
            self.conn.execute(
                "UPDATE outbox_cursors SET acked_id = max(acked_id, ?), last_hash = ?, acked_items = acked_items + ?,"
                " acked_seq = ?, last_success = ?, last_attempt = ?, last_error = NULL, failures = 0, backoff_s = 0, retry_at = NULL"
                " WHERE transport = ?",
                (last_id, batch_hash, items, _dumps(merged), now, now, name),
            )
            self._bump("items_acked", items)
            self._delete_released()

    def record_failure(self, name: str, error: str, backoff_s: float, retry_at: float, now: float) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE outbox_cursors SET last_attempt = ?, last_error = ?, failures = failures + 1, backoff_s = ?, retry_at = ?"
                " WHERE transport = ?",
                (now, error[:500], backoff_s, retry_at, name),
            )

    def dead_letter(self, name: str, items: list[OutboxItem], http_status: int | None, error: str, batch_hash: str, jws: str, now: float) -> None:
        """Park a batch the receiver permanently rejected, with its signed body, and move past it.

        The chain's previous hash stays at the last acknowledged batch, so the receiver
        sees an unbroken chain of what it accepted. Parked batches are bounded per
        transport (`MAX_DEAD_LETTERS_PER_TRANSPORT`): the uploader checks
        `dead_letter_count()` and stops parking (it backs off instead) at the bound.
        """
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO outbox_dead_letters (transport, created, http_status, error, first_id, last_id, items, batch_hash, jws)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, now, http_status, error[:2000], items[0].id, items[-1].id, len(items), batch_hash, jws),
            )
            self.conn.execute(
                "UPDATE outbox_cursors SET acked_id = max(acked_id, ?), last_attempt = ?, last_error = ?, failures = 0, backoff_s = 0, retry_at = NULL"
                " WHERE transport = ?",
                (items[-1].id, now, f"dead-lettered: {error}"[:500], name),
            )
            self._bump("items_dead_lettered", len(items))
            self._delete_released()

    def dead_letter_count(self, name: str) -> int:
        return self.conn.execute("SELECT count(*) FROM outbox_dead_letters WHERE transport = ?", (name,)).fetchone()[0]

    def _delete_released(self) -> None:
        row = self.conn.execute("SELECT min(acked_id) FROM outbox_cursors").fetchone()
        floor = row[0]
        if floor is None:
            return
        freed = self.conn.execute("SELECT coalesce(sum(nbytes), 0) FROM outbox_items WHERE id <= ?", (floor,)).fetchone()[0]
        if freed:
            self.conn.execute("DELETE FROM outbox_items WHERE id <= ?", (floor,))
            self._bump("bytes", -freed)

    # --------------------------------------------------------------- budget
    def effective_budget(self) -> int:
        """The byte budget, lowered when the disk is fuller than the free-space watermark allows."""
        total, _used, free = self._disk_usage()
        # pages SQLite freed are reused before the file grows: they count as free space
        reusable = self.conn.execute("PRAGMA freelist_count").fetchone()[0] * self.conn.execute("PRAGMA page_size").fetchone()[0]
        headroom = free + reusable - self.min_free_fraction * total
        return int(max(0, min(self.budget_bytes, self.total_bytes + headroom)))

    def over_budget(self) -> bool:
        return self.total_bytes > self.effective_budget()

    def enforce_budget(self, *, low_water: float = 0.9, chunk: int = 5000, max_steps: int = 50) -> BudgetReport:
        """Bring the outbox under `low_water` x budget: downsample oldest raw readings, then drop oldest.

        Works in bounded steps (`max_steps` transactions of up to `chunk` rows each) so
        the caller stays responsive; call again while `over_budget()` stays true.
        """
        if not self.over_budget():
            return BudgetReport()
        report = {"downsampled_rows": 0, "aggregates_written": 0, "dropped_rows": 0, "gaps_written": 0}
        target = self.effective_budget() * low_water  # fixed per call: never chase a moving target
        for _ in range(max_steps):
            if self.total_bytes <= target:
                break
            with transaction(self.conn):
                folded, written = self._downsample_step(chunk)
            if folded:
                report["downsampled_rows"] += folded
                report["aggregates_written"] += written
                continue
            with transaction(self.conn):
                dropped, gaps = self._drop_step(chunk)
            if not dropped:
                break
            report["dropped_rows"] += dropped
            report["gaps_written"] += gaps
        return BudgetReport(**report, over_budget=self.over_budget())

    def _protected(self) -> tuple[list[int], list[tuple[int, int]]]:
        """Cursor positions (rewrites never span one) and in-flight windows (never rewritten)."""
        cursors, windows = [], []
        for row in self.conn.execute("SELECT acked_id, window FROM outbox_cursors").fetchall():
            cursors.append(row["acked_id"])
            end = self.conn.execute(
                "SELECT id FROM outbox_items WHERE id > ? ORDER BY id LIMIT 1 OFFSET ?", (row["acked_id"], max(0, row["window"] - 1))
            ).fetchone()
            windows.append((row["acked_id"] + 1, end[0] if end else math.inf))
        return sorted(cursors), windows

    def _candidates(self, kinds: tuple[str, ...], chunk: int) -> list[list[sqlite3.Row]]:
        """Oldest rewritable rows of `kinds`, split into runs of consecutive seqs of one stream.

        A run never spans a transport cursor or touches an in-flight window, so every
        transport sees either all of a run's original rows or only its replacement.
        """
        cursors, windows = self._protected()
        floor = min(cursors) if cursors else 0
        marks = ",".join("?" * len(kinds))
        rows = self.conn.execute(
            f"SELECT id, stream, seq, seq_last, kind, wall_time, body, nbytes FROM outbox_items"
            f" WHERE id > ? AND kind IN ({marks}) ORDER BY id LIMIT ?",
            (floor, *kinds, chunk * 4),
        ).fetchall()
        runs: list[list[sqlite3.Row]] = []
        current: dict[tuple, list[sqlite3.Row]] = {}
        taken = 0
        for row in rows:
            if any(lo <= row["id"] <= hi for lo, hi in windows):
                continue
            key = (sum(1 for c in cursors if c < row["id"]), row["stream"])
            run = current.get(key)
            if run is None or run[-1]["seq_last"] + 1 != row["seq"]:
                current[key] = run = []
                runs.append(run)
            run.append(row)
            taken += 1
            if taken >= chunk:
                break
        return runs

    def _downsample_step(self, chunk: int) -> tuple[int, int]:
        folded = written = 0
        for run in self._candidates(("reading",), chunk):
            for group in _minute_groups(run):
                if len(group) < 2:
                    continue
                body = _aggregate([json.loads(r["body"]) for r in group])
                self._replace(group, "aggregate", group[0]["wall_time"], body)
                folded += len(group)
                written += 1
        if folded:
            self._bump("downsampled_rows", folded)
        return folded, written

    def _drop_step(self, chunk: int) -> tuple[int, int]:
        dropped = gaps = 0
        for run in self._candidates(("reading", "aggregate"), chunk):
            bodies = [json.loads(r["body"]) for r in run]
            first, last = _counter_bounds(bodies)
            readings = sum(b.get("n", 1) for b in bodies)
            body = {
                "start": bodies[0]["t"],
                "end": bodies[-1].get("t_end", bodies[-1]["t"]),
                "reason": "storage_budget",
                "dropped": readings,
                "first": first,
                "last": last,
            }
            self._replace(run, "gap", run[0]["wall_time"], body)
            dropped += readings
            gaps += 1
        if dropped:
            self._bump("dropped_readings", dropped)
            self._bump("budget_gaps", gaps)
        return dropped, gaps

    def _replace(self, rows: list[sqlite3.Row], kind: str, wall_time: float, body: dict) -> None:
        """Replace consecutive rows of one stream with one item covering their seqs, at the oldest row's place."""
        text = _dumps(body)
        nbytes = len(text) + ROW_OVERHEAD_BYTES
        ids = [(r["id"],) for r in rows]
        self.conn.executemany("DELETE FROM outbox_items WHERE id = ?", ids)
        self.conn.execute(
            "INSERT INTO outbox_items (id, stream, seq, seq_last, kind, wall_time, body, nbytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rows[0]["id"], rows[0]["stream"], rows[0]["seq"], rows[-1]["seq_last"], kind, wall_time, text, nbytes),
        )
        self._bump("bytes", nbytes - sum(r["nbytes"] for r in rows))

    # --------------------------------------------------------------- status
    def status(self, now: float | None = None) -> dict[str, Any]:
        """Everything the REST API shows about store-and-forward, from SQLite alone."""
        conn = self.conn
        stats = conn.execute(
            "SELECT count(*) AS n, min(wall_time) AS oldest, min(id) AS min_id FROM outbox_items"
        ).fetchone()
        kinds = dict(conn.execute("SELECT kind, count(*) FROM outbox_items GROUP BY kind").fetchall())
        effective = self.effective_budget()
        transports = {}
        for row in conn.execute("SELECT * FROM outbox_cursors ORDER BY transport").fetchall():
            pending = conn.execute("SELECT count(*), min(wall_time) FROM outbox_items WHERE id > ?", (row["acked_id"],)).fetchone()
            dead = conn.execute("SELECT count(*), max(error) FROM outbox_dead_letters WHERE transport = ?", (row["transport"],)).fetchone()
            transports[row["transport"]] = {
                "pending": pending[0],
                "oldest_pending_wall": pending[1],
                "acked_items": row["acked_items"],
                "acked_seq": json.loads(row["acked_seq"]),
                "last_success": row["last_success"],
                "last_attempt": row["last_attempt"],
                "last_error": row["last_error"],
                "failures": row["failures"],
                "backoff_s": row["backoff_s"],
                "retry_at": row["retry_at"],
                "dead_letters": dead[0],
                "last_dead_letter_error": dead[1],
            }
        return {
            "items": stats["n"],
            "items_by_kind": kinds,
            "oldest_wall": stats["oldest"],
            "bytes": self.total_bytes,
            "budget_bytes": self.budget_bytes,
            "effective_budget_bytes": effective,
            "budget_use": (self.total_bytes / effective) if effective else None,
            "items_in": self._counter("items_in"),
            "items_acked": self._counter("items_acked"),
            "downsampled_rows": self._counter("downsampled_rows"),
            "dropped_readings": self._counter("dropped_readings"),
            "budget_gaps": self._counter("budget_gaps"),
            "clock_events": self._counter("clock_events"),
            "transports": transports,
        }


def outbox_status(
    db_path: str | Path, *, budget_bytes: int = DEFAULT_BUDGET_BYTES, min_free_fraction: float = DEFAULT_MIN_FREE_FRACTION
) -> dict[str, Any]:
    """Status for the REST API, from SQLite alone (no actor is asked, so it never blocks on one).

    Opens its own short-lived connection; pass the configured budget so `budget_use` is right.
    """
    outbox = Outbox.open(db_path, budget_bytes=budget_bytes, min_free_fraction=min_free_fraction)
    try:
        return outbox.status()
    finally:
        outbox.close()


# ------------------------------------------------------------------ helpers
def _batch_digest(batch: ReadingBatch) -> str:
    """What makes a batch the same batch: its items' identities and times (not the full values)."""
    parts = [f"r|{r.device_id}|{r.wall_time!r}|{r.mono_time!r}|{r.boot_id}" for r in batch.readings]
    parts += [f"g|{g.device_id}|{g.start_wall!r}|{g.end_wall!r}|{g.reason}" for g in batch.gaps]
    parts += [f"e|{e.device_id}|{e.wall_time!r}|{e.kind}" for e in batch.events]
    return hashlib.sha256("\n".join(parts).encode()).hexdigest()


def _minute_groups(run: list[sqlite3.Row]) -> Iterable[list[sqlite3.Row]]:
    group: list[sqlite3.Row] = []
    key = None
    for row in run:
        bucket = math.floor(row["wall_time"] / AGGREGATE_PERIOD_S)
        boot = json.loads(row["body"]).get("b")
        if group and (bucket, boot) != key:
            yield group
            group = []
        key = (bucket, boot)
        group.append(row)
    if group:
        yield group


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _aggregate(bodies: list[dict]) -> dict:
    """Fold raw readings into one: means of instantaneous values, exact first/last of counters."""
    values: dict[str, Any] = {}
    names: list[str] = []
    for body in bodies:
        for name in body.get("v", {}):
            if name not in values:
                values[name] = None
                names.append(name)
    first, last = _counter_bounds(bodies)
    for name in names:
        series = [b["v"].get(name) for b in bodies if b.get("v", {}).get(name) is not None]
        if is_cumulative(name):
            values[name] = last.get(name)
        elif series and all(_is_number(x) for x in series):
            values[name] = sum(series) / len(series)
        else:
            values[name] = series[-1] if series else None
    flags = sorted({f for b in bodies for f in b.get("f", [])})
    return {
        "t": bodies[0]["t"],
        "t_end": bodies[-1]["t"],
        "m": bodies[0]["m"],
        "b": bodies[0]["b"],
        "n": len(bodies),
        "v": values,
        "first": first,
        "f": flags,
    }


def _counter_bounds(bodies: list[dict]) -> tuple[dict[str, Any], dict[str, Any]]:
    """First and last value of every cumulative counter across readings/aggregates, in order."""
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    for body in bodies:
        for name, value in body.get("first", {}).items():
            if value is not None:
                first.setdefault(name, value)
        for name, value in body.get("v", {}).items():
            if is_cumulative(name) and value is not None:
                first.setdefault(name, value)
                last[name] = value
    return first, last
