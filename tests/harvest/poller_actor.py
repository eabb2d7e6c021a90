"""A stand-in device poller for multiprocess tests: produces readings, keeps unacked batches, re-sends.

It behaves like the producer side of the harvest contract: one batch per tick with one
reading per device, naming the earlier batches still unacknowledged (`after`) (values carry a per-device counter `n`), batches kept until
`BatchAck`, re-sent to harvest's *current* address (looked up through the supervisor
on every re-send round, since a restarted harvest has a new address). Between a
re-send round's lookup and its answer, new batches are only kept, not sent.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from actors.harvest.messages import BatchAck, Reading, ReadingBatch
from supervisor.actor import SupervisedActor
from supervisor.messages import Lookup, LookupResult

MAX_UNACKED = 5000
RESEND_PER_ROUND = 100


@dataclass(frozen=True)
class StopProducing:
    pass


@dataclass(frozen=True)
class GetPollerStats:
    pass


@dataclass(frozen=True)
class PollerStats:
    produced: dict
    unacked: int
    producing: bool


class SimulatedPoller(SupervisedActor):
    def on_start(self, config: dict[str, Any]) -> None:
        self.devices = list(config["devices"])
        self.period = timedelta(seconds=config.get("period_s", 0.05))
        self.resend = config.get("resend_s", 0.5)
        self.counter = {d: 0 for d in self.devices}
        self.unacked: dict[int, ReadingBatch] = {}
        self.batch_id = int(time.time() * 1000)  # unique across restarts of this producer
        self.harvest = None
        self.producing = True
        self.last_resend = time.monotonic()
        self.send(self.parent, Lookup("harvest"))
        self.wakeupAfter(self.period, payload="tick")

    def receiveMsg_LookupResult(self, msg: LookupResult, sender: Any) -> None:  # noqa: N802
        """Re-send the oldest unacked batches to harvest's current address (bounded per round)."""
        if msg.path != "harvest":
            return
        self.harvest = msg.address
        if self.harvest is not None:
            for batch in list(self.unacked.values())[:RESEND_PER_ROUND]:
                self.send(self.harvest, batch)

    def receiveMsg_BatchAck(self, msg: BatchAck, sender: Any) -> None:  # noqa: N802
        self.unacked.pop(msg.batch_id, None)

    def receiveMsg_StopProducing(self, msg: StopProducing, sender: Any) -> None:  # noqa: N802
        self.producing = False

    def receiveMsg_GetPollerStats(self, msg: GetPollerStats, sender: Any) -> None:  # noqa: N802
        self.send(sender, PollerStats(dict(self.counter), len(self.unacked), self.producing))

    def receiveMsg_WakeupMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802
        if self.producing and len(self.unacked) < MAX_UNACKED:
            now, mono = time.time(), time.monotonic()
            readings = []
            for device in self.devices:
                readings.append(Reading(device, now, mono, "boot-test", {"n": self.counter[device], "energy_total_wh": float(self.counter[device])}))
                self.counter[device] += 1
            self.batch_id += 1
            # `after`: the batches still unacknowledged, which this one must never overtake
            batch = ReadingBatch("poller", self.batch_id, tuple(readings), after=tuple(sorted(self.unacked)))
            self.unacked[self.batch_id] = batch
            if self.harvest is not None:
                self.send(self.harvest, batch)
        if self.unacked and time.monotonic() - self.last_resend > self.resend:
            # harvest may have restarted at a new address: stop sending to the old one until we know
            self.last_resend = time.monotonic()
            self.harvest = None
            self.send(self.parent, Lookup("harvest"))
        self.wakeupAfter(self.period, payload="tick")
