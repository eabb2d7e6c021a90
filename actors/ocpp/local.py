"""An in-process central system: the websocket front-end driving `ChargerProtocol`s directly.

The gateway itself runs one charger actor per charger (`actors.ocpp.charger`); this
backend runs the same protocol objects on the server's own event loop. It exists for
the tests that exercise the protocol through real websockets, for the benchmark, and
for `python -m simulators.charger --serve`, a one-process central system to try a
charger against. It shares no code path with the actors other than the protocol, the
store and the server, which are exactly the parts it is used to test.
"""

from __future__ import annotations

import asyncio
import itertools
import sqlite3
from collections.abc import Callable
from typing import Any

from actors.ocpp.messages import CentralRequest, CommandOutcome
from actors.ocpp.policy import OcppPolicy
from actors.ocpp.protocol import ChargerProtocol, Effects
from actors.ocpp.server import OcppServer


class LocalBackend:
    def __init__(self, conn: sqlite3.Connection, policy: OcppPolicy | None = None, *, tick_interval: float = 0.05) -> None:
        self.conn = conn
        self.policy = policy or OcppPolicy()
        self.server: OcppServer | None = None
        self.protocols: dict[str, ChargerProtocol] = {}
        self.live_listeners: list[Callable[[Any], None]] = []
        self.export_listeners: list[Callable[[str], None]] = []
        self._waiting: dict[Any, asyncio.Future] = {}
        self._ids = itertools.count(1)
        self._tick_interval = tick_interval
        self._ticker: asyncio.Task | None = None

    def attach(self, server: OcppServer) -> None:
        self.server = server
        self._ticker = asyncio.get_running_loop().create_task(self._tick_forever())

    def protocol(self, charge_point_id: str) -> ChargerProtocol:
        if charge_point_id not in self.protocols:
            self.protocols[charge_point_id] = ChargerProtocol(charge_point_id, self.conn, self.policy)
        return self.protocols[charge_point_id]

    # ---------------------------------------------------------- Backend
    def opened(self, charge_point_id: str, connection_id: int) -> None:
        self._apply(charge_point_id, connection_id, self.protocol(charge_point_id).connected(connection_id))

    def frame(self, charge_point_id: str, connection_id: int, seq: int, text: str) -> None:
        self._apply(charge_point_id, connection_id, self.protocol(charge_point_id).receive(connection_id, text))

    def closed(self, charge_point_id: str, connection_id: int) -> None:
        self._apply(charge_point_id, connection_id, self.protocol(charge_point_id).disconnected(connection_id))

    # ---------------------------------------------------- central requests
    async def request(self, charge_point_id: str, request: CentralRequest) -> CommandOutcome:
        """Send a central-initiated request and wait for how it ended (result/error/timeout/...)."""
        request_id = next(self._ids)
        future = asyncio.get_running_loop().create_future()
        self._waiting[request_id] = future
        protocol = self.protocol(charge_point_id)
        self._apply(charge_point_id, protocol.connection_id, protocol.request(request, request_id))
        try:
            return await future
        finally:
            self._waiting.pop(request_id, None)

    # -------------------------------------------------------------- plumbing
    def _apply(self, charge_point_id: str, connection_id: int | None, effects: Effects) -> None:
        if self.server is not None and connection_id is not None:
            for text in effects.frames:
                self.server.send(charge_point_id, connection_id, text)
        for outcome in effects.outcomes:
            future = self._waiting.get(outcome.request_id)
            if future is not None and not future.done():
                future.set_result(outcome)
        for update in effects.live:
            for listener in self.live_listeners:
                listener(update)
        if effects.exports:
            for listener in self.export_listeners:
                listener(charge_point_id)

    async def _tick_forever(self) -> None:
        while True:
            await asyncio.sleep(self._tick_interval)
            for charge_point_id, protocol in list(self.protocols.items()):
                self._apply(charge_point_id, protocol.connection_id, protocol.tick())

    async def stop(self) -> None:
        if self._ticker is not None:
            self._ticker.cancel()
