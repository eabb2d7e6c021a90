"""The harvest actor: the only writer of new data into the outbox, committing in groups.

Group commit: every `ReadingBatch` that arrives within the commit window (default
1 s, `harvest_commit_window_s`) is committed together in one SQLite transaction (WAL,
synchronous=FULL): one fsync for the readings of every device, instead of one per
batch. Only after that commit is each batch answered with `BatchAck`, so "durable
before acknowledged" holds; a batch that arrived but was not yet committed when this
actor died is simply re-sent by its producer. A window also closes early once it holds
`MAX_WAITING_ITEMS` items, which bounds memory and the size of one transaction.

Bad input: a malformed batch is refused whole with the reason (`BatchRejected`); a
non-finite number (NaN, Infinity) in a valid batch is stored as null and flagged, with
a warning naming the device and value.

Disk full (SQLITE_FULL, or an I/O error writing): nothing is acknowledged, the actor
stays up and publishes `degraded` with the reason, and producers keep their batches
(bounded; the oldest become gap records), so polling and charging go on and the loss
is recorded once space returns.

After each commit the byte budget and the free-disk watermark are checked; when
exceeded, bounded steps of downsampling, then dropping, run between commits (and on a
timer), so polling never stops and every message is answered promptly. At start the
cursors of transports no longer configured are retired, so their claim on rows ends.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from thespian.actors import WakeupMessage

from actors.harvest.messages import BatchAck, CounterOffsets, CounterOffsetsRequest, ReadingBatch
from actors.harvest.rejections import BatchRejected
from actors.harvest.validation import BadBatchError, validate_batch
from actors.harvest.live_events import batch_events
from actors.live.publisher import LivePublisher
from supervisor.actor import SupervisedActor
from storage.outbox import DEFAULT_BUDGET_BYTES, DEFAULT_MIN_FREE_FRACTION, Outbox

_TICK = "tick"
_COMMIT = "commit"
DEFAULT_COMMIT_WINDOW_S = 1.0
MAX_WAITING_ITEMS = 5000
MAX_HOLD_WINDOWS = 10  # a batch waiting for an earlier one is kept this many windows (then its producer re-sends it)


def storage_unavailable(exc: BaseException) -> bool:
    """SQLite could not write: the disk is full, or writing failed (ENOSPC surfaces as either)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None and (code & 0xFF) in (sqlite3.SQLITE_FULL, sqlite3.SQLITE_IOERR):  # extended codes keep the primary in the low byte
        return True
    text = str(exc).lower()
    return "disk is full" in text or "disk i/o error" in text


class HarvestActor(SupervisedActor):
    """Config: {"db_path", "budget_bytes"?, "min_free_fraction"?, "status_interval_s"?, "commit_window_s"?, "transports"?}."""

    outbox: Outbox | None = None

    def on_start(self, config: dict[str, Any]) -> None:
        self.db_path = Path(config["db_path"])
        self.outbox = Outbox.open(
            self.db_path,
            budget_bytes=int(config.get("budget_bytes", DEFAULT_BUDGET_BYTES)),
            min_free_fraction=float(config.get("min_free_fraction", DEFAULT_MIN_FREE_FRACTION)),
        )
        self.status_interval = timedelta(seconds=float(config.get("status_interval_s", 5.0)))
        self.commit_window = timedelta(seconds=float(config.get("commit_window_s", DEFAULT_COMMIT_WINDOW_S)))
        self.waiting: list[tuple[ReadingBatch, Any, int]] = []  # (batch, sender, windows it has been held)
        self.waiting_items = 0
        self.commit_armed = False
        self.batches = 0
        self.commits = 0
        self.rejected = 0
        self.held = 0
        self.budget_failures = 0
        self.storage_error: str | None = None
        self.last_budget: dict[str, Any] = {}
        self.live = LivePublisher(self)  # device/<id> events after each commit, outbox state changes
        self.last_state: str | None = None
        if "transports" in config:
            retired = self.outbox.retire_transports(config["transports"])
            if retired:
                self.log.warning("transports no longer configured: their cursors are removed", transports=retired)
        self.log.info("outbox open", db=str(self.db_path), bytes=self.outbox.total_bytes, budget=self.outbox.budget_bytes,
                      commit_window_s=self.commit_window.total_seconds())
        self._enforce_budget()
        self._publish()
        self.wakeupAfter(self.status_interval, payload=_TICK)

    def on_stop(self) -> None:
        if self.outbox is not None:
            self.outbox.close()
            self.outbox = None

    def receiveMsg_ReadingBatch(self, batch: ReadingBatch, sender: Any) -> None:  # noqa: N802 (thespian API)
        try:
            validate_batch(batch)
        except BadBatchError as exc:
            self.rejected += 1
            self.log.error("reading batch rejected; nothing stored", producer=getattr(batch, "producer", None), batch_id=getattr(batch, "batch_id", None), reason=str(exc))
            self.send(sender, BatchRejected(getattr(batch, "producer", ""), getattr(batch, "batch_id", 0), str(exc)))
            return
        self._wait(batch, sender, 0)
        if self.waiting_items >= MAX_WAITING_ITEMS:
            self._commit()
        else:
            self._arm_commit()

    def _wait(self, batch: ReadingBatch, sender: Any, holds: int) -> None:
        """Queue a batch for the next commit; a newer copy of the same batch replaces the older one."""
        key = (batch.producer, batch.incarnation, batch.batch_id)
        for i, (queued, _, _) in enumerate(self.waiting):
            if (queued.producer, queued.incarnation, queued.batch_id) == key:
                self.waiting[i] = (batch, sender, holds)
                return
        self.waiting.append((batch, sender, holds))
        self.waiting_items += len(batch.readings) + len(batch.gaps) + len(batch.events)

    def _arm_commit(self) -> None:
        if self.waiting and not self.commit_armed:
            self.commit_armed = True
            self.wakeupAfter(self.commit_window, payload=_COMMIT)

    def _commit(self) -> None:
        """One transaction for everything waiting, then the acks (never before the commit)."""
        waiting, self.waiting, self.waiting_items = self.waiting, [], 0
        if not waiting:
            return
        try:
            results = self.outbox.ingest_many([batch for batch, _, _ in waiting])
        except sqlite3.Error as exc:
            if not storage_unavailable(exc):
                raise
            self._storage_failed(exc, len(waiting))
            # keep them for the next window (bounded): space may come back before their producers re-send
            for batch, sender, holds in waiting[-MAX_WAITING_ITEMS:]:
                if holds < MAX_HOLD_WINDOWS:
                    self._wait(batch, sender, holds + 1)
            self._arm_commit()
            return
        if self.storage_error is not None:
            self.log.warning("outbox writable again", error_was=self.storage_error)
            self.storage_error = None
            self._publish()
        self.commits += 1
        events = []
        for (batch, sender, holds), result in zip(waiting, results, strict=True):
            if not result.acknowledge:
                self.held += 1  # it would overtake an earlier batch of its producer: wait for that one
                if holds < MAX_HOLD_WINDOWS:
                    self._wait(batch, sender, holds + 1)
                continue
            self.send(sender, BatchAck(batch.producer, batch.batch_id, result.first_seq))
            if result.status == "stored":
                self.batches += 1
                events += batch_events(batch, result.first_seq)
            if result.nulled:
                self.log.warning("non-finite numbers stored as null and flagged", producer=batch.producer, values=result.nulled[:20])
            if result.restart_gaps:
                self.log.info("producer restarted: the window it missed is recorded as a gap", producer=batch.producer, gaps=result.restart_gaps)
        self.live.emit_many(events)
        self._arm_commit()
        if self._over_budget():
            self._enforce_budget(max_steps=2)

    def _storage_failed(self, exc: BaseException, batches: int) -> None:
        first = self.storage_error is None
        self.storage_error = f"{type(exc).__name__}: {exc}"
        if first:
            self.log.error("outbox cannot be written; nothing acknowledged, producers keep their data", error=self.storage_error, batches=batches)
            self._publish()

    def receiveMsg_CounterOffsetsRequest(self, msg: CounterOffsetsRequest, sender: Any) -> None:  # noqa: N802 (thespian API)
        """A restarted device actor goes on adding what its predecessor added to a wrapped counter."""
        try:
            offsets = self.outbox.counter_offsets(list(msg.device_ids))
        except sqlite3.Error as exc:
            self.log.warning("counter offsets not readable; the device starts without them", error=f"{type(exc).__name__}: {exc}")
            offsets = {}
        self.send(sender, CounterOffsets(offsets))

    def receiveMsg_LookupResult(self, msg: Any, sender: Any) -> None:  # noqa: N802 (thespian API)
        self.live.lookup_result(msg)

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:  # noqa: N802 (thespian API)
        if msg.payload == _COMMIT:
            self.commit_armed = False
            self._commit()
            return
        if msg.payload != _TICK:
            return
        self._enforce_budget()
        self._publish()
        self.wakeupAfter(self.status_interval, payload=_TICK)

    def _over_budget(self) -> bool:
        try:
            return self.outbox.over_budget()
        except sqlite3.Error as exc:
            if not storage_unavailable(exc):
                raise
            return False

    def _enforce_budget(self, max_steps: int = 10) -> None:
        if not self._over_budget():
            return
        started = time.monotonic()
        try:
            report = self.outbox.enforce_budget(max_steps=max_steps)
        except sqlite3.Error as exc:
            if not storage_unavailable(exc):
                raise
            self.budget_failures += 1
            if self.budget_failures in (1, 10, 100) or self.budget_failures % 1000 == 0:
                self.log.warning("outbox over budget and the disk too full to rewrite old data", error=str(exc), times=self.budget_failures)
            return
        self.last_budget = asdict(report)
        self.log.warning(
            "outbox over budget: older data downsampled/dropped",
            downsampled=report.downsampled_rows,
            dropped=report.dropped_rows,
            gaps=report.gaps_written,
            still_over=report.over_budget,
            took_s=round(time.monotonic() - started, 3),
        )

    def _publish(self) -> None:
        outbox = self.outbox
        budget = outbox.effective_budget()
        total = outbox.total_bytes
        reason = None
        if self.storage_error is not None:
            reason = f"outbox not writable: {self.storage_error}"
        elif budget == 0:
            reason = "no free disk space left for the outbox"
        elif total > budget:
            reason = "outbox over its byte budget: oldest data is being downsampled or dropped"
        state = "degraded" if reason else "running"
        if state != self.last_state:
            self.live.emit("gateway", "outbox_state", {"state": state, "outbox_bytes": total, "budget_bytes": budget, "reason": reason})
            self.last_state = state
        self.publish(
            state,
            reason=reason,
            outbox_bytes=total,
            budget_bytes=budget,
            batches=self.batches,
            commits=self.commits,
            rejected=self.rejected,
        )
