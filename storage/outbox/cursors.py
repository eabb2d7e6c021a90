"""Cursors and dead letters: what each transport has had acknowledged, and what it could not deliver.

Each transport has a cursor (the highest row id its receiver acknowledged); a row is
deleted once every registered transport's cursor has passed it. The cursors follow
the configuration: `retire_transports()` removes the claim of a transport that is no
longer configured, so deletion goes on for the others.

A batch the receiver permanently refuses (a 4xx that is not about credentials or
throttling) is parked as a dead letter with its signed body, and the cursor moves past
it so one refused batch never stalls the streams behind it. Dead letters count in the
byte budget, are listed (`dead_letters()`), and can be queued to be sent again
(`requeue_dead_letters()`): the transport then re-signs their items at the head of its
chain, so the receiver de-duplicates them like any replay.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable
from typing import Any

from storage.db import transaction
from storage.outbox.schema import BATCHES_COUNTER, KIND_COUNTER, ROW_OVERHEAD_BYTES, Counters, OutboxItem, dumps


class CursorMixin(Counters):
    conn: sqlite3.Connection

    def register_transport(self, name: str, window: int) -> None:
        """Create the transport's cursor (at the oldest retained row) or update its in-flight window."""
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO outbox_cursors (transport, window) VALUES (?, ?)"
                " ON CONFLICT(transport) DO UPDATE SET window = excluded.window",
                (name, int(window)),
            )

    def transports(self) -> list[str]:
        return [r[0] for r in self.conn.execute("SELECT transport FROM outbox_cursors ORDER BY transport")]

    def retire_transports(self, keep: Iterable[str]) -> list[str]:
        """Forget the cursors (and dead letters) of transports not in `keep`; rows only they held are freed."""
        keep = set(keep)
        gone = [name for name in self.transports() if name not in keep]
        if not gone:
            return []
        with transaction(self.conn):
            for name in gone:
                freed = self.conn.execute("SELECT coalesce(sum(nbytes), 0) FROM outbox_dead_letters WHERE transport = ?", (name,)).fetchone()[0]
                self.conn.execute("DELETE FROM outbox_dead_letters WHERE transport = ?", (name,))
                self.conn.execute("DELETE FROM outbox_cursors WHERE transport = ?", (name,))
                self._bump("bytes", -freed)
            self._delete_released()
        return gone

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
                (last_id, batch_hash, items, dumps(merged), now, now, name),
            )
            self._bump("items_acked", items)
            self._bump(BATCHES_COUNTER + name, 1)  # for /metrics: batches acknowledged, per transport
            self._delete_released()

    def record_failure(self, name: str, error: str, backoff_s: float, retry_at: float, now: float) -> None:
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE outbox_cursors SET last_attempt = ?, last_error = ?, failures = failures + 1, backoff_s = ?, retry_at = ?"
                " WHERE transport = ?",
                (now, error[:500], backoff_s, retry_at, name),
            )

    # ------------------------------------------------------------ dead letters
    def dead_letter(self, name: str, items: list[OutboxItem], http_status: int | None, error: str, batch_hash: str, jws: str, now: float) -> None:
        """Park a batch the receiver permanently rejected, with its signed body, and move past it.

        The chain's previous hash stays at the last acknowledged batch, so the receiver
        sees an unbroken chain of what it accepted. Parked batches are bounded per
        transport (`MAX_DEAD_LETTERS_PER_TRANSPORT`): the uploader checks
        `dead_letter_count()` and stops parking (it backs off instead) at the bound.
        """
        nbytes = len(jws) + ROW_OVERHEAD_BYTES
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO outbox_dead_letters (transport, created, http_status, error, first_id, last_id, items, batch_hash, jws, nbytes)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (name, now, http_status, error[:2000], items[0].id, items[-1].id, len(items), batch_hash, jws, nbytes),
            )
            self.conn.execute(
                "UPDATE outbox_cursors SET acked_id = max(acked_id, ?), last_attempt = ?, last_error = ?, failures = 0, backoff_s = 0, retry_at = NULL"
                " WHERE transport = ?",
                (items[-1].id, now, f"dead-lettered: {error}"[:500], name),
            )
            self._bump("bytes", nbytes)
            self._bump("items_dead_lettered", len(items))
            self._delete_released()

    def dead_letter_count(self, name: str) -> int:
        return self.conn.execute("SELECT count(*) FROM outbox_dead_letters WHERE transport = ? AND requeued = 0", (name,)).fetchone()[0]

    def dead_letters(self, name: str | None = None) -> list[dict[str, Any]]:
        """Parked batches, oldest first, without their signed bodies."""
        sql = (
            "SELECT id, transport, created, http_status, error, first_id, last_id, items, batch_hash, nbytes, requeued"
            " FROM outbox_dead_letters" + (" WHERE transport = ?" if name else "") + " ORDER BY id"
        )
        return [dict(r) | {"requeued": bool(r["requeued"])} for r in self.conn.execute(sql, (name,) if name else ())]

    def requeue_dead_letters(self, ids: Iterable[int] | None = None, transport: str | None = None) -> int:
        """Queue parked batches to be sent again (all of them, or those `ids`); returns how many."""
        with transaction(self.conn):
            if ids is None:
                sql, args = "UPDATE outbox_dead_letters SET requeued = 1 WHERE requeued = 0", []
                if transport:
                    sql, args = sql + " AND transport = ?", [transport]
                self.conn.execute(sql, args)
                return self.conn.execute("SELECT changes()").fetchone()[0]
            count = 0
            for dead_id in ids:
                self.conn.execute("UPDATE outbox_dead_letters SET requeued = 1 WHERE id = ? AND requeued = 0", (int(dead_id),))
                count += self.conn.execute("SELECT changes()").fetchone()[0]
            return count

    def next_requeued(self, name: str) -> sqlite3.Row | None:
        return self.conn.execute(
            "SELECT id, jws, items FROM outbox_dead_letters WHERE transport = ? AND requeued = 1 ORDER BY id LIMIT 1", (name,)
        ).fetchone()

    def dead_letter_delivered(self, name: str, dead_id: int, batch_hash: str, items: int, now: float) -> None:
        """A re-sent dead letter was acknowledged: forget it and continue the chain from its new batch."""
        with transaction(self.conn):
            freed = self.conn.execute("SELECT coalesce(sum(nbytes), 0) FROM outbox_dead_letters WHERE id = ?", (dead_id,)).fetchone()[0]
            self.conn.execute("DELETE FROM outbox_dead_letters WHERE id = ?", (dead_id,))
            self.conn.execute(
                "UPDATE outbox_cursors SET last_hash = ?, last_success = ?, last_attempt = ?, last_error = NULL, failures = 0, backoff_s = 0,"
                " retry_at = NULL WHERE transport = ?",
                (batch_hash, now, now, name),
            )
            self._bump("bytes", -freed)
            self._bump("items_acked", items)

    def dead_letter_refused(self, dead_id: int, http_status: int | None, error: str, now: float) -> None:
        """A re-sent dead letter was refused again: park it again with the new reason."""
        with transaction(self.conn):
            self.conn.execute(
                "UPDATE outbox_dead_letters SET requeued = 0, http_status = ?, error = ?, created = ? WHERE id = ?",
                (http_status, error[:2000], now, dead_id),
            )

    def _delete_released(self) -> None:
        floor = self.conn.execute("SELECT min(acked_id) FROM outbox_cursors").fetchone()[0]
        if floor is None:
            return
        freed = self.conn.execute(
            "SELECT kind, count(*), coalesce(sum(nbytes), 0) FROM outbox_items WHERE id <= ? GROUP BY kind", (floor,)
        ).fetchall()
        if freed:
            self.conn.execute("DELETE FROM outbox_items WHERE id <= ?", (floor,))
            deltas = {KIND_COUNTER + kind: -count for kind, count, _ in freed}
            deltas["bytes"] = -sum(nbytes for _, _, nbytes in freed)
            self._bump_many(deltas)
