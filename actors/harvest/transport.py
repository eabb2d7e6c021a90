"""The transport actor: one per upload endpoint, draining the outbox through its own cursor.

Each step is one `Uploader.step()` (at most one HTTP request, bounded in total by the
transport's `timeout_s`), and it runs on the actor's own worker thread, never in the
actor's thread: however slow or silent the uplink, heartbeats, status requests and
resend requests are answered at once, so a slow uplink never looks like a hung actor.
While a step runs the actor checks for its end every CHECK_S; then it publishes the
outcome and arms the next step with the delay the step asked for: next to nothing while
a backlog drains, the linger after a partial batch, the backoff after a failure, the
idle poll when nothing is pending. Timers are never armed at 0: thespian does no socket
I/O while a wakeup is already due, so the mailbox would starve.

Every use of the outbox (its SQLite connection belongs to the thread that opened it)
happens on that one worker thread: steps, resend requests and status reads are queued
to it in order.

The transport's own commits (cursor advances, dead letters) use synchronous=NORMAL:
they cost no fsync of their own and become durable with the harvest's next commit. A
power cut can at worst roll back a cursor, and the receiver de-duplicates the batch
sent again; nothing acknowledged is ever lost that way, since rows are deleted only
in the same transaction that advances the cursor.
"""

from __future__ import annotations

import time
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from datetime import timedelta
from pathlib import Path
from typing import Any

from thespian.actors import WakeupMessage

from actors.harvest.messages import DeadLettersQueued, ResendDeadLetters
from actors.harvest.uplink import StepResult, TransportConfig, Uploader
from storage.identity import load_or_create_signer
from storage.outbox import Outbox
from supervisor.actor import SupervisedActor
from supervisor.redaction import redact_url, redact_urls_in

_STEP = "step"
_CHECK = "check"
PUBLISH_INTERVAL_S = 5.0
MIN_IDLE_S = 0.001  # see the module docstring: a timer due now starves the mailbox
CHECK_S = 0.05  # how often a running step is looked at for its end
STOP_WAIT_S = 2.0  # on stop, how long the step under way may take to finish before the process goes anyway


class TransportActor(SupervisedActor):
    """Config: {"db_path", "data_dir", "gateway_id"?, "transport": {name, url, limits, backoff...}}."""

    uploader: Uploader | None = None
    worker: ThreadPoolExecutor | None = None

    def on_start(self, config: dict[str, Any]) -> None:
        self.transport = TransportConfig.from_dict(config["transport"])
        signer = load_or_create_signer(Path(config["data_dir"]))
        self.worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"transport-{self.transport.name}")
        self.uploader = self.worker.submit(self._open, config["db_path"], signer, config.get("gateway_id") or signer.key_id).result()
        self.running: Future | None = None
        self.resend_requests: list[tuple[tuple[int, ...] | None, Any]] = []
        self.last_outcome = "starting"
        self.last_publish = 0.0
        self.log.info("transport ready", url=redact_url(self.transport.url), key_id=signer.key_id, max_count=self.transport.max_count)
        self.wakeupAfter(timedelta(seconds=MIN_IDLE_S), payload=_STEP)

    def _open(self, db_path: str, signer: Any, gateway_id: str) -> Uploader:
        outbox = Outbox.open(db_path)
        outbox.conn.execute("PRAGMA synchronous=NORMAL")
        if self.transport.kind == "mqtt":
            from actors.harvest.mqtt import MqttUploader

            return MqttUploader.connect(outbox, signer, gateway_id, self.transport, log=self.log)
        return Uploader(outbox, signer, gateway_id, self.transport)

    def on_stop(self) -> None:
        if self.worker is None:
            return
        uploader, worker = self.uploader, self.worker
        self.uploader = self.worker = None
        if uploader is not None:
            closing = worker.submit(uploader.close)
            try:
                closing.result(timeout=STOP_WAIT_S)  # after the step under way, if any
            except FutureTimeout:
                self.log.warning("upload still under way at stop; its batch is sent again by the next start", waited_s=STOP_WAIT_S)
        worker.shutdown(wait=False, cancel_futures=True)

    def receiveMsg_ResendDeadLetters(self, msg: ResendDeadLetters, sender: Any) -> None:  # noqa: N802 (thespian API)
        """Queue parked batches to be sent again; they go first at the next step (after any backoff)."""
        self.resend_requests.append((None if msg.ids is None else tuple(int(i) for i in msg.ids), sender))
        if self.running is None:
            self._start_step()  # answered within one step of the worker, not after the backoff

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:  # noqa: N802 (thespian API)
        if self.uploader is None:
            return
        if msg.payload == _STEP and self.running is None:
            self._start_step()
        elif msg.payload == _CHECK and self.running is not None:
            if self.running.done():
                self._step_done(self.running)
            else:
                self.wakeupAfter(timedelta(seconds=CHECK_S), payload=_CHECK)

    # ------------------------------------------------------------ the worker's side
    def _start_step(self) -> None:
        requests, self.resend_requests = self.resend_requests, []
        self.running = self.worker.submit(self._work, self.uploader, requests)
        self.wakeupAfter(timedelta(seconds=MIN_IDLE_S), payload=_CHECK)

    @staticmethod
    def _work(uploader: Uploader, requests: list[tuple[tuple[int, ...] | None, Any]]) -> tuple[StepResult | None, list[tuple[Any, int, tuple[int, ...] | None]], dict[str, Any], float]:
        """On the worker thread: resend requests first, then one step, then the status to show and when the step ended."""
        queued = [(sender, uploader.outbox.requeue_dead_letters(ids, transport=uploader.config.name), ids) for ids, sender in requests]
        result = uploader.step() if not queued else None  # a resend request is answered now; its batches go at the next step
        return result, queued, uploader.outbox.transport_status(uploader.config.name), time.monotonic()

    # ------------------------------------------------------------ back on the actor's thread
    def _step_done(self, future: Future) -> None:
        self.running = None
        try:
            result, queued, status, ended = future.result()
        except Exception as exc:  # noqa: BLE001 - a failing step is the actor failing: restart it
            raise RuntimeError(f"upload step failed: {type(exc).__name__}: {exc}") from exc
        for sender, count, ids in queued:
            self.log.info("dead letters queued to be sent again", queued=count, ids=list(ids) if ids else "all")
            self.send(sender, DeadLettersQueued(self.name, count))
        if result is None:
            self._publish(status)
            self.wakeupAfter(timedelta(seconds=MIN_IDLE_S), payload=_STEP)
            return
        if result.outcome in ("retry", "throttled"):
            self.log.warning("upload failed; backing off", error=redact_urls_in(result.error or ""), retry_in_s=round(result.delay_s, 2))
        elif result.outcome == "dead_lettered":
            self.log.error("batch permanently rejected; parked as dead letter", error=redact_urls_in(result.error or ""), items=result.items)
        changed = result.outcome != self.last_outcome and result.outcome != "waiting"
        if result.outcome != "waiting":
            self.last_outcome = result.outcome
        if changed or time.monotonic() - self.last_publish > PUBLISH_INTERVAL_S:
            self._publish(status)
        if self.resend_requests:  # asked while this step ran: answer it now, not after the delay
            self._start_step()
            return
        waited = time.monotonic() - ended  # the step's delay counts from its end, not from when its end was noticed
        self.wakeupAfter(timedelta(seconds=max(MIN_IDLE_S, result.delay_s - waited)), payload=_STEP)

    def _publish(self, status: dict[str, Any]) -> None:
        self.last_publish = time.monotonic()
        state = {"sent": "running", "idle": "running", "retry": "backing_off", "throttled": "backing_off"}.get(self.last_outcome, "running")
        if status["dead_letters"]:
            state = "degraded" if state == "running" else state
        self.publish(
            state,
            backlog=status["pending"],
            last_success=status["last_success"],
            backoff_s=status["backoff_s"],
            last_error=status["last_error"],
            dead_letters=status["dead_letters"],
        )
