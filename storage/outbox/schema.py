"""The outbox's tables, constants, row type and the one JSON encoder every stored body goes through.

Bodies are strict JSON: a non-finite number (NaN, Infinity) is not JSON, and one such
value in a batch would make the receiver refuse that batch forever, stalling every
stream behind it. `finite_json()` therefore stores such a value as null and names it,
so the caller can flag it; nothing non-finite ever reaches a row.
"""

from __future__ import annotations

import json
import math
import sqlite3
from dataclasses import dataclass
from typing import Any

COMPONENT = "outbox"
GATEWAY_STREAM = "_gateway"  # stream of gateway-wide records (clock events)
DEFAULT_BUDGET_BYTES = 512 * 1024 * 1024
DEFAULT_MIN_FREE_FRACTION = 0.05
CLOCK_JUMP_THRESHOLD_S = 2.0
AGGREGATE_PERIOD_S = 60.0
MAX_DEAD_LETTERS_PER_TRANSPORT = 200
ROW_OVERHEAD_BYTES = 64  # rough per-row cost of ids, index entries and page slack
BATCHES_COUNTER = "batches:"  # outbox_counters rows "batches:<transport>": batches its receiver acknowledged
KIND_COUNTER = "kind:"  # outbox_counters rows "kind:reading", "kind:gap", ...: counts without a table scan


def _rebuild_items_without_indexes(conn: sqlite3.Connection) -> None:
    """Version 2: one b-tree for the items, per-producer identity in one small row each.

    The UNIQUE (stream, seq) and (kind, id) indexes cost a page write per stream and
    per commit (most of the ~40 KB written per tiny commit); sequences are allocated
    by the outbox alone, in one writer, so uniqueness needs no index. The AUTOINCREMENT
    high-water mark is carried over: row ids must never be reused below a cursor.
    """
    high = conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'outbox_items'").fetchone()
    conn.execute(
        "CREATE TABLE outbox_items_v2 (id INTEGER PRIMARY KEY AUTOINCREMENT, stream TEXT NOT NULL, seq INTEGER NOT NULL,"
        " seq_last INTEGER NOT NULL, kind TEXT NOT NULL, wall_time REAL NOT NULL, body TEXT NOT NULL, nbytes INTEGER NOT NULL)"
    )
    conn.execute("INSERT INTO outbox_items_v2 SELECT id, stream, seq, seq_last, kind, wall_time, body, nbytes FROM outbox_items")
    conn.execute("DROP TABLE outbox_items")
    conn.execute("ALTER TABLE outbox_items_v2 RENAME TO outbox_items")
    if high is not None:
        conn.execute("UPDATE sqlite_sequence SET seq = max(seq, ?) WHERE name = 'outbox_items'", (high[0],))
        if conn.execute("SELECT changes()").fetchone()[0] == 0:
            conn.execute("INSERT INTO sqlite_sequence (name, seq) VALUES ('outbox_items', ?)", (high[0],))
    conn.execute("ALTER TABLE outbox_sequences ADD COLUMN last_wall REAL")
    conn.execute(
        "UPDATE outbox_sequences SET last_wall = (SELECT max(wall_time) FROM outbox_items i WHERE i.stream = outbox_sequences.stream)"
    )
    conn.execute(
        "CREATE TABLE outbox_producers (producer TEXT PRIMARY KEY, incarnation TEXT NOT NULL DEFAULT '',"
        " last_batch_id INTEGER NOT NULL, first_seq TEXT NOT NULL DEFAULT '{}')"
    )
    conn.execute(
        "INSERT INTO outbox_producers (producer, incarnation, last_batch_id, first_seq)"
        " SELECT producer, '', max(batch_id), '{}' FROM outbox_producer_batches GROUP BY producer"
    )
    conn.execute("DROP TABLE outbox_producer_batches")
    for kind, count in conn.execute("SELECT kind, count(*) FROM outbox_items GROUP BY kind").fetchall():
        conn.execute("INSERT INTO outbox_counters (name, value) VALUES (?, ?)", (KIND_COUNTER + kind, count))
    conn.execute("ALTER TABLE outbox_dead_letters ADD COLUMN nbytes INTEGER NOT NULL DEFAULT 0")
    conn.execute("ALTER TABLE outbox_dead_letters ADD COLUMN requeued INTEGER NOT NULL DEFAULT 0")
    conn.execute("UPDATE outbox_dead_letters SET nbytes = length(jws) + ?", (ROW_OVERHEAD_BYTES,))
    dead = conn.execute("SELECT coalesce(sum(nbytes), 0) FROM outbox_dead_letters").fetchone()[0]
    if dead:
        conn.execute(
            "INSERT INTO outbox_counters (name, value) VALUES ('bytes', ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (dead,),
        )


MIGRATIONS: list[Any] = [
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
    _rebuild_items_without_indexes,
    """
    -- what a device actor adds to a wrapped counter register (k * span), and the last value it
    -- reported then: written only with a wrap or reset event (rare), read by the next incarnation
    CREATE TABLE outbox_counter_offsets (
        stream TEXT NOT NULL,
        quantity TEXT NOT NULL,
        offset REAL NOT NULL,
        last REAL NOT NULL,
        PRIMARY KEY (stream, quantity)
    ) WITHOUT ROWID;
    """,
]

CUMULATIVE_SUFFIXES = ("_wh", "_kwh", "_varh", "_vah")


def is_cumulative(quantity: str) -> bool:
    """Cumulative counters (energy totals) are never averaged: their exact values matter."""
    return quantity.endswith(CUMULATIVE_SUFFIXES)


_strict = json.JSONEncoder(separators=(",", ":"), default=str, check_circular=False, allow_nan=False).encode


def dumps(obj: Any) -> str:
    """Compact strict JSON; raises ValueError on a non-finite number (use `finite_json` for input)."""
    return _strict(obj)


def finite_json(obj: Any) -> tuple[str, list[str]]:
    """Strict JSON text of `obj`, with every non-finite number stored as null.

    Returns the text and the dotted paths of the values that were replaced, e.g.
    `["v.ac_power_w"]`, so the stored item can say which values were not numbers.
    """
    try:
        return _strict(obj), []
    except ValueError:
        pass
    replaced: list[str] = []
    return _strict(_nulled(obj, "", replaced)), replaced


def _nulled(value: Any, path: str, replaced: list[str]) -> Any:
    if isinstance(value, float) and not math.isfinite(value):
        replaced.append(path)
        return None
    if isinstance(value, dict):
        return {k: _nulled(v, f"{path}.{k}" if path else str(k), replaced) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_nulled(v, f"{path}[{i}]", replaced) for i, v in enumerate(value)]
    return value


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


class Counters:
    """Named integer counters in `outbox_counters` (bytes, items in/acked, kind counts, ...)."""

    conn: sqlite3.Connection

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

    def _bump_many(self, deltas: dict[str, int]) -> None:
        rows = [(name, delta) for name, delta in deltas.items() if delta]
        if rows:
            self.conn.executemany(
                "INSERT INTO outbox_counters (name, value) VALUES (?, ?)"
                " ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                rows,
            )

    @property
    def total_bytes(self) -> int:
        return self._counter("bytes")
