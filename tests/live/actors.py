"""Actors for the live-feed tests in a real actor system.

`LiveApiActor` is the API actor's live-feed wiring on its own (the same mixin and
`attach_live_feed` call the gateway's API actor gets), serving only the live routes.
`LiveChargerActor` is the charger actor with the emission lines the feed asks for
(see the report of issue 9), so the real OCPP path can be tested before they land.
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
from actors.live.messages import LiveEvent
from actors.ocpp.live_events import live_events
from actors.live.publisher import LivePublisher
from actors.ocpp.charger import ChargerActor
from actors.ocpp.protocol import Effects
from storage import ocpp_transactions as tx_store
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


class LiveChargerActor(ChargerActor):
    """ChargerActor + the live-feed lines proposed for actors/ocpp/charger.py."""

    def on_start(self, config: dict[str, Any]) -> None:
        super().on_start(config)
        self.wired = hasattr(self, "live")  # once the lines are in ChargerActor itself, this class adds nothing
        if not self.wired:
            self.live = LivePublisher(self)

    def receiveMsg_LookupResult(self, msg: LookupResult, sender: Any) -> None:  # noqa: N802
        if self.live.lookup_result(msg):
            return
        super().receiveMsg_LookupResult(msg, sender)

    def _apply(self, effects: Effects) -> None:
        if getattr(self, "wired", True):
            super()._apply(effects)
            return
        live = effects.live
        effects.live = [u for u in live if not isinstance(u, LiveEvent)]  # subscribers keep getting what they got
        super()._apply(effects)
        self.live.emit_many(event for update in live for event in live_events(update, self._transaction_on))

    def _transaction_on(self, connector_id: int) -> int | None:
        for tx in tx_store.active_transactions(self.conn, self.charge_point_id):
            if tx["connector_id"] == connector_id:
                return tx["transaction_id"]
        return None
