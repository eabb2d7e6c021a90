"""The transport actor: one per upload endpoint, draining the outbox through its own cursor.

Each wakeup runs one `Uploader.step()` (at most one HTTP request, bounded by the
transport's timeout, 3 s by default), then re-arms the timer with the delay the step
asked for: next to nothing while a backlog drains, the linger after a partial batch,
the backoff after a failure, the idle poll when nothing is pending. The timer is never
armed at 0: thespian does no socket I/O while a wakeup is already due, so a draining
transport would never read its mailbox and would be killed as hung by its supervisor.
Heartbeat pings are answered between steps, so a slow or dead uplink never looks like
a hung actor.

The transport's own commits (cursor advances, dead letters) use synchronous=NORMAL:
they cost no fsync of their own and become durable with the harvest's next commit. A
power cut can at worst roll back a cursor, and the receiver de-duplicates the batch
sent again; nothing acknowledged is ever lost that way, since rows are deleted only
in the same transaction that advances the cursor.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from thespian.actors import WakeupMessage

from actors.harvest.messages import DeadLettersQueued, ResendDeadLetters
from actors.harvest.uplink import TransportConfig, Uploader
from storage.identity import load_or_create_signer
from storage.outbox import Outbox
from supervisor.actor import SupervisedActor
from supervisor.redaction import redact_url, redact_urls_in

_STEP = "step"
PUBLISH_INTERVAL_S = 5.0
MIN_IDLE_S = 0.001  # see the module docstring: a timer due now starves the mailbox


class TransportActor(SupervisedActor):
    """Config: {"db_path", "data_dir", "gateway_id"?, "transport": {name, url, limits, backoff...}}."""

    uploader: Uploader | None = None

    def on_start(self, config: dict[str, Any]) -> None:
        transport = TransportConfig.from_dict(config["transport"])
        signer = load_or_create_signer(Path(config["data_dir"]))
        outbox = Outbox.open(config["db_path"])
        outbox.conn.execute("PRAGMA synchronous=NORMAL")
        self.uploader = Uploader(outbox, signer, config.get("gateway_id") or signer.key_id, transport)
        self.last_outcome = "starting"
        self.last_publish = 0.0
        self.log.info("transport ready", url=redact_url(transport.url), key_id=signer.key_id, max_count=transport.max_count)
        self.wakeupAfter(timedelta(seconds=MIN_IDLE_S), payload=_STEP)

    def on_stop(self) -> None:
        if self.uploader is not None:
            self.uploader.outbox.close()
            self.uploader = None

    def receiveMsg_ResendDeadLetters(self, msg: ResendDeadLetters, sender: Any) -> None:  # noqa: N802 (thespian API)
        """Queue parked batches to be sent again; they go first at the next step (after any backoff)."""
        ids = None if msg.ids is None else tuple(int(i) for i in msg.ids)
        queued = self.uploader.outbox.requeue_dead_letters(ids, transport=self.uploader.config.name) if self.uploader else 0
        self.log.info("dead letters queued to be sent again", queued=queued, ids=list(ids) if ids else "all")
        self.send(sender, DeadLettersQueued(self.name, queued))
        self._publish()

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:  # noqa: N802 (thespian API)
        if msg.payload != _STEP or self.uploader is None:
            return
        result = self.uploader.step()
        if result.outcome in ("retry", "throttled"):
            self.log.warning("upload failed; backing off", error=redact_urls_in(result.error or ""), retry_in_s=round(result.delay_s, 2))
        elif result.outcome == "dead_lettered":
            self.log.error("batch permanently rejected; parked as dead letter", error=redact_urls_in(result.error or ""), items=result.items)
        changed = result.outcome != self.last_outcome and result.outcome != "waiting"
        if result.outcome != "waiting":
            self.last_outcome = result.outcome
        if changed or time.monotonic() - self.last_publish > PUBLISH_INTERVAL_S:
            self._publish()
        self.wakeupAfter(timedelta(seconds=max(MIN_IDLE_S, result.delay_s)), payload=_STEP)

    def _publish(self) -> None:
        self.last_publish = time.monotonic()
        status = self.uploader.outbox.transport_status(self.uploader.config.name)
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
