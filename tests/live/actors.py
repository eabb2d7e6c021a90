"""Actors for the live-feed tests in a real actor system.

`LiveApiActor` is the API actor's live-feed wiring on its own (the same mixin and
`attach_live_feed` call the gateway's API actor gets), serving only the live routes.
`Producer` is a device stand-in: one `ReadingBatch` of device "sim" every 50 ms to the
real harvest actor, re-sent until acknowledged.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from aiohttp import web

from actors.harvest.messages import BatchAck, Reading, ReadingBatch
from actors.live.feed import ServesLiveFeed
from supervisor.actor import SupervisedActor
from supervisor.asyncbridge import AsyncioActor
from supervisor.messages import Lookup, LookupResult


class LiveApiActor(ServesLiveFeed, AsyncioActor):
    """Config: {"port", "token", "db_path"}."""

    def on_start(self, config: dict[str, Any]) -> None:
        self.app = web.Application()
        self.attach_live_feed(self.app, config["token"], config["db_path"])
        self.runner: web.AppRunner | None = None
        self.start_loop()
        port = self.run_in_loop(self._serve(config["port"])).result(timeout=10)
        self.publish("running", port=port, epoch=self.live_hub.epoch if self.live_hub else None)

    async def _serve(self, port: int) -> int:
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True).start()
        return self.runner.addresses[0][1]

    async def on_loop_stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()


class Producer(SupervisedActor):
    INTERVAL = timedelta(seconds=0.05)

    def on_start(self, config: Any) -> None:
        self.harvest: Any = None
        self.batch_id = 0
        self.unacked: ReadingBatch | None = None
        self.send(self.parent, Lookup("harvest"))
        self.wakeupAfter(self.INTERVAL, payload="poll")

    def receiveMsg_LookupResult(self, msg: LookupResult, sender: Any) -> None:  # noqa: N802
        if msg.path == "harvest":
            self.harvest = msg.address

    def receiveMsg_BatchAck(self, msg: BatchAck, sender: Any) -> None:  # noqa: N802
        if self.unacked is not None and msg.batch_id == self.unacked.batch_id:
            self.unacked = None

    def receiveMsg_WakeupMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802
        if self.harvest is None:
            self.send(self.parent, Lookup("harvest"))
        elif self.unacked is None:
            self.batch_id += 1
            now = time.time()
            reading = Reading("sim", now, time.monotonic(), "boot", {"ac_power_w": 1000.0 + self.batch_id})
            self.unacked = ReadingBatch(self.name, self.batch_id, (reading,))
            self.send(self.harvest, self.unacked)
        else:
            self.send(self.harvest, self.unacked)
        self.wakeupAfter(self.INTERVAL, payload="poll")
