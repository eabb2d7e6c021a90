"""The durable outbox: every harvested item, in order, until each transport has it acknowledged.

One table holds the upload stream. Each item belongs to a stream (a device id, or
`GATEWAY_STREAM` for gateway-wide records such as clock events) and carries a
per-stream sequence number persisted here, so its identity (gateway, stream, seq)
never changes across restarts and the receiver can de-duplicate on it. Items are:

    reading    one poll of one device (wall time, monotonic time, boot id, values, raw)
    aggregate  raw readings of one minute folded into one item (covers seq..seq_last)
    gap        a window without readings: reported by the device, left by a restart,
               or dropped by the budget
    event      a device event (counter reset or wrap, ...)
    clock      a jump of the wall clock against the monotonic clock

The modules, one job each:

    schema.py   tables, migrations, the row type, strict JSON for every body
    ingest.py   identity and ingest: many batches in one transaction (group commit)
    cursors.py  transport cursors and dead letters
    budget.py   the byte budget, aggregation and drops that keep energy exact
    status.py   what the API and the transports show

Row ids grow monotonically (AUTOINCREMENT), so "oldest first" is "by id". This
package imports nothing from the actors: producers hand in any objects shaped like
`ingest.BatchLike`.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

from storage.db import connect, migrate
from storage.outbox.budget import BudgetMixin, BudgetReport
from storage.outbox.cursors import CursorMixin
from storage.outbox.ingest import BatchLike, IngestMixin, IngestResult
from storage.outbox.schema import (
    AGGREGATE_PERIOD_S,
    CLOCK_JUMP_THRESHOLD_S,
    COMPONENT,
    DEFAULT_BUDGET_BYTES,
    DEFAULT_MIN_FREE_FRACTION,
    GATEWAY_STREAM,
    MAX_DEAD_LETTERS_PER_TRANSPORT,
    MIGRATIONS,
    OutboxItem,
    finite_json,
    is_cumulative,
)
from storage.outbox.status import StatusMixin

__all__ = [
    "AGGREGATE_PERIOD_S", "BatchLike", "BudgetReport", "CLOCK_JUMP_THRESHOLD_S", "DEFAULT_BUDGET_BYTES", "DEFAULT_MIN_FREE_FRACTION",
    "GATEWAY_STREAM", "IngestResult", "dead_letter_list", "MAX_DEAD_LETTERS_PER_TRANSPORT", "Outbox", "OutboxItem", "finite_json", "is_cumulative", "outbox_status",
]


class Outbox(IngestMixin, CursorMixin, BudgetMixin, StatusMixin):
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


def dead_letter_list(db_path: str | Path) -> list[dict[str, Any]]:
    """Parked batches of every transport, oldest first, for the REST API (no signed bodies)."""
    outbox = Outbox.open(db_path)
    try:
        return outbox.dead_letters()
    finally:
        outbox.close()
