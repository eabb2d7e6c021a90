"""Status: everything the REST API and the transports show about store-and-forward, from SQLite alone.

Counts come from `outbox_counters` (kept in the same transactions that change the
rows), so a status read costs a few index look-ups, not a scan of the outbox.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable
from typing import Any

from storage.outbox.schema import BATCHES_COUNTER, KIND_COUNTER, Counters


class StatusMixin(Counters):
    """Needs `effective_budget()` from the budget mixin."""

    conn: sqlite3.Connection
    budget_bytes: int
    effective_budget: Callable[[], int]

    def kind_counts(self) -> dict[str, int]:
        rows = self.conn.execute("SELECT name, value FROM outbox_counters WHERE name LIKE 'kind:%'").fetchall()
        return {name[len(KIND_COUNTER):]: int(value) for name, value in rows if value}

    def transport_status(self, name: str) -> dict[str, Any]:
        """One transport's cursor, backlog and dead letters (what its actor publishes)."""
        row = self.conn.execute("SELECT * FROM outbox_cursors WHERE transport = ?", (name,)).fetchone()
        if row is None:
            raise KeyError(f"transport {name!r} is not registered")
        return self._transport_record(row)

    def _transport_record(self, row: sqlite3.Row) -> dict[str, Any]:
        conn = self.conn
        pending = conn.execute("SELECT count(*), min(wall_time) FROM outbox_items WHERE id > ?", (row["acked_id"],)).fetchone()
        dead = conn.execute(
            "SELECT count(*), max(error), coalesce(sum(requeued), 0) FROM outbox_dead_letters WHERE transport = ?", (row["transport"],)
        ).fetchone()
        return {
            "pending": pending[0],
            "oldest_pending_wall": pending[1],
            "acked_items": row["acked_items"],
            "acked_batches": self._counter(BATCHES_COUNTER + row["transport"]),
            "acked_seq": json.loads(row["acked_seq"]),
            "last_success": row["last_success"],
            "last_attempt": row["last_attempt"],
            "last_error": row["last_error"],
            "failures": row["failures"],
            "backoff_s": row["backoff_s"],
            "retry_at": row["retry_at"],
            "dead_letters": dead[0],
            "dead_letters_requeued": dead[2],
            "last_dead_letter_error": dead[1],
        }

    def status(self, now: float | None = None) -> dict[str, Any]:
        """Everything the REST API shows about store-and-forward."""
        conn = self.conn
        kinds = self.kind_counts()
        # rows are in arrival order; the oldest of the first thousand is the oldest for all practical purposes
        oldest = conn.execute("SELECT min(wall_time) FROM (SELECT wall_time FROM outbox_items ORDER BY id LIMIT 1000)").fetchone()[0]
        effective = self.effective_budget()
        total = self.total_bytes
        transports = {row["transport"]: self._transport_record(row) for row in conn.execute("SELECT * FROM outbox_cursors ORDER BY transport").fetchall()}
        dead = conn.execute("SELECT count(*), coalesce(sum(nbytes), 0) FROM outbox_dead_letters").fetchone()
        return {
            "items": sum(kinds.values()),
            "items_by_kind": kinds,
            "oldest_wall": oldest,
            "bytes": total,
            "budget_bytes": self.budget_bytes,
            "effective_budget_bytes": effective,
            # a full disk leaves no room at all: that is "over budget", not "unknown"
            "budget_use": (total / effective) if effective else 1.0,
            "disk_full": effective == 0,
            "items_in": self._counter("items_in"),
            "items_acked": self._counter("items_acked"),
            "downsampled_rows": self._counter("downsampled_rows"),
            "dropped_readings": self._counter("dropped_readings"),
            "budget_gaps": self._counter("budget_gaps"),
            "clock_events": self._counter("clock_events"),
            "nonfinite_values": self._counter("nonfinite_values"),
            "dead_letters": dead[0],
            "dead_letter_bytes": dead[1],
            "transports": transports,
        }
