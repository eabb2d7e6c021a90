"""Budget and aggregation: bounded storage that degrades in a fixed order and keeps energy exact.

Bounded storage degrades in a fixed order (`enforce_budget`): first the oldest raw
readings are folded into one-minute aggregates (cumulative counters keep their exact
first and last values), then the oldest readings are replaced by gap records that say
what was dropped and keep the counters' first and last values, so energy totals stay
exact. Rows a transport may have in flight (its next window of rows) are never
rewritten, and no rewrite spans a transport's cursor.

A run that is folded or dropped is a run of consecutive sequence numbers of one
stream, so it never straddles a device event (a counter reset or wrap, numbered
before the reading it describes) or a gap. Values a reading flags (out of range,
not a number) are never averaged and never taken as a counter's first or last value.
"""

from __future__ import annotations

import json
import math
import sqlite3
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from storage.db import transaction
from storage.outbox.schema import AGGREGATE_PERIOD_S, KIND_COUNTER, ROW_OVERHEAD_BYTES, Counters, dumps, is_cumulative


@dataclass(frozen=True)
class BudgetReport:
    downsampled_rows: int = 0
    aggregates_written: int = 0
    dropped_rows: int = 0
    gaps_written: int = 0
    over_budget: bool = False


class BudgetMixin(Counters):
    conn: sqlite3.Connection
    budget_bytes: int
    min_free_fraction: float
    _disk_usage: Callable[[], tuple[int, int, int]]

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
        text = dumps(body)
        nbytes = len(text) + ROW_OVERHEAD_BYTES
        ids = [(r["id"],) for r in rows]
        self.conn.executemany("DELETE FROM outbox_items WHERE id = ?", ids)
        self.conn.execute(
            "INSERT INTO outbox_items (id, stream, seq, seq_last, kind, wall_time, body, nbytes) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (rows[0]["id"], rows[0]["stream"], rows[0]["seq"], rows[-1]["seq_last"], kind, wall_time, text, nbytes),
        )
        deltas = {"bytes": nbytes - sum(r["nbytes"] for r in rows), KIND_COUNTER + kind: 1}
        for row in rows:
            deltas[KIND_COUNTER + row["kind"]] = deltas.get(KIND_COUNTER + row["kind"], 0) - 1
        self._bump_many(deltas)



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
        series = [b["v"].get(name) for b in bodies if b.get("v", {}).get(name) is not None and name not in _flagged(b)]
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


def _flagged(body: dict) -> frozenset[str]:
    """Values of a raw reading that failed a check; an aggregate's values are already clean."""
    return frozenset() if "n" in body else frozenset(body.get("f", ()))


def _counter_bounds(bodies: list[dict]) -> tuple[dict[str, Any], dict[str, Any]]:
    """First and last value of every cumulative counter across readings/aggregates, in order."""
    first: dict[str, Any] = {}
    last: dict[str, Any] = {}
    for body in bodies:
        for name, value in body.get("first", {}).items():
            if value is not None:
                first.setdefault(name, value)
        flagged = _flagged(body)
        for name, value in body.get("v", {}).items():
            if is_cumulative(name) and value is not None and name not in flagged:
                first.setdefault(name, value)
                last[name] = value
    return first, last
