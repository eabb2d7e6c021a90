"""The harvest actor: the only writer of new data into the outbox.

Durable before acknowledged: a `ReadingBatch` is committed in one SQLite transaction
(WAL, synchronous=FULL) and only then answered with `BatchAck`. If this actor dies
between commit and ack, the producer re-sends and the outbox recognises the batch
(producer + batch id + content), answering with the original sequence numbers.

After each batch the byte budget and the free-disk watermark are checked; when
exceeded, bounded steps of downsampling, then dropping, run between batches (and on a
timer), so polling never stops and every message is answered promptly.
"""

from __future__ import annotations

from dataclasses import asdict
from datetime import timedelta
from pathlib import Path
from typing import Any

from thespian.actors import WakeupMessage

from actors.harvest.messages import BatchAck, ReadingBatch
from actors.harvest.rejections import BatchRejected
from actors.harvest.validation import BadBatchError, validate_batch
from actors.live.device_events import batch_events
from actors.live.publisher import LivePublisher
from supervisor.actor import SupervisedActor
from storage.outbox import DEFAULT_BUDGET_BYTES, DEFAULT_MIN_FREE_FRACTION, Outbox

_TICK = "tick"


class HarvestActor(SupervisedActor):
    """Config: {"db_path", "budget_bytes"?, "min_free_fraction"?, "status_interval_s"?}."""

    outbox: Outbox | None = None

    def on_start(self, config: dict[str, Any]) -> None:
        self.db_path = Path(config["db_path"])
        self.outbox = Outbox.open(
            self.db_path,
            budget_bytes=int(config.get("budget_bytes", DEFAULT_BUDGET_BYTES)),
            min_free_fraction=float(config.get("min_free_fraction", DEFAULT_MIN_FREE_FRACTION)),
        )
        self.status_interval = timedelta(seconds=float(config.get("status_interval_s", 5.0)))
        self.batches = 0
        self.rejected = 0
        self.last_budget: dict[str, Any] = {}
        self.live = LivePublisher(self)  # device/<id> events after each commit, outbox state changes
        self.last_state: str | None = None
        self.log.info("outbox open", db=str(self.db_path), bytes=self.outbox.total_bytes, budget=self.outbox.budget_bytes)
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
            self.send(sender, BatchRejected(batch.producer, batch.batch_id, str(exc)))
            return
        first_seq = self.outbox.ingest(batch)
        self.send(sender, BatchAck(batch.producer, batch.batch_id, first_seq))
        self.live.emit_many(batch_events(batch, first_seq))
        self.batches += 1
        if self.outbox.over_budget():
            self._enforce_budget(max_steps=2)

    def receiveMsg_LookupResult(self, msg: Any, sender: Any) -> None:  # noqa: N802 (thespian API)
        self.live.lookup_result(msg)

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:  # noqa: N802 (thespian API)
        if msg.payload != _TICK:
            return
        self._enforce_budget()
        self._publish()
        self.wakeupAfter(self.status_interval, payload=_TICK)

    def _enforce_budget(self, max_steps: int = 10) -> None:
        if not self.outbox.over_budget():
            return
        report = self.outbox.enforce_budget(max_steps=max_steps)
        self.last_budget = asdict(report)
        self.log.warning(
            "outbox over budget: older data downsampled/dropped",
            downsampled=report.downsampled_rows,
            dropped=report.dropped_rows,
            gaps=report.gaps_written,
            still_over=report.over_budget,
        )

    def _publish(self) -> None:
        outbox = self.outbox
        budget = outbox.effective_budget()
        state = "degraded" if outbox.total_bytes > budget else "running"
        if state != self.last_state:
            self.live.emit("gateway", "outbox_state", {"state": state, "outbox_bytes": outbox.total_bytes, "budget_bytes": budget})
            self.last_state = state
        self.publish(
            state,
            outbox_bytes=outbox.total_bytes,
            budget_bytes=budget,
            batches=self.batches,
            rejected=self.rejected,
        )
