"""The transport actor: one per upload endpoint, draining the outbox through its own cursor.

Each wakeup runs one `Uploader.step()` (at most one HTTP request, bounded by the
transport's timeout, 3 s by default), then re-arms the timer with the delay the step
asked for: 0 while a backlog drains, the backoff after a failure, the idle poll when
nothing is pending. Heartbeat pings are answered between steps, so a slow or dead
uplink never looks like a hung actor.
"""

from __future__ import annotations

import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from thespian.actors import WakeupMessage

from actors.harvest.uplink import TransportConfig, Uploader
from storage.identity import load_or_create_signer
from storage.outbox import Outbox
from supervisor.actor import SupervisedActor

_STEP = "step"
PUBLISH_INTERVAL_S = 2.0


class TransportActor(SupervisedActor):
    """Config: {"db_path", "data_dir", "gateway_id"?, "transport": {name, url, limits, backoff...}}."""

    uploader: Uploader | None = None

    def on_start(self, config: dict[str, Any]) -> None:
        transport = TransportConfig.from_dict(config["transport"])
        signer = load_or_create_signer(Path(config["data_dir"]))
        outbox = Outbox.open(config["db_path"])
        self.uploader = Uploader(outbox, signer, config.get("gateway_id") or signer.key_id, transport)
        self.last_outcome = "starting"
        self.last_publish = 0.0
        self.log.info("transport ready", url=transport.url, key_id=signer.key_id, max_count=transport.max_count)
        self.wakeupAfter(timedelta(0), payload=_STEP)

    def on_stop(self) -> None:
        if self.uploader is not None:
            self.uploader.outbox.close()
            self.uploader = None

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:  # noqa: N802 (thespian API)
        if msg.payload != _STEP or self.uploader is None:
            return
        result = self.uploader.step()
        if result.outcome in ("retry", "throttled"):
            self.log.warning("upload failed; backing off", error=result.error, retry_in_s=round(result.delay_s, 2))
        elif result.outcome == "dead_lettered":
            self.log.error("batch permanently rejected; parked as dead letter", error=result.error, items=result.items)
        changed = result.outcome != self.last_outcome and result.outcome != "waiting"
        if result.outcome != "waiting":
            self.last_outcome = result.outcome
        if changed or time.monotonic() - self.last_publish > PUBLISH_INTERVAL_S:
            self._publish()
        self.wakeupAfter(timedelta(seconds=result.delay_s), payload=_STEP)

    def _publish(self) -> None:
        self.last_publish = time.monotonic()
        status = self.uploader.outbox.status()["transports"][self.uploader.config.name]
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
