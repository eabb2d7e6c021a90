"""Fixtures: a real OCPP websocket server on a free loopback port, a real SQLite file,
and charge points built on the `ocpp` package's client side talking to it."""

from __future__ import annotations

import asyncio

import pytest

from actors.ocpp.auth import Authenticator
from actors.ocpp.local import LocalBackend
from actors.ocpp.policy import OcppPolicy
from actors.ocpp.server import ListenerSettings, OcppServer
from simulators.charger.chargepoint import SimulatedChargePoint
from simulators.charger.connection import connect
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store
from storage.db import connect as db_connect


class Central:
    """A running in-process central system plus helpers to attach simulated chargers."""

    def __init__(self, db_path, policy: OcppPolicy, settings: ListenerSettings) -> None:
        self.db_path = db_path
        self.conn = db_connect(db_path)
        charger_store.init(self.conn)
        tx_store.init(self.conn)
        self.backend = LocalBackend(self.conn, policy, tick_interval=0.02)
        self.server = OcppServer(settings, Authenticator(self.conn, settings.unknown_chargers, settings.register_as), self.backend)
        self.port = 0
        self.clients: list[tuple[SimulatedChargePoint, asyncio.Task]] = []

    async def start(self) -> Central:
        self.port = await self.server.start()
        self.backend.attach(self.server)
        return self

    def url(self, charge_point_id: str) -> str:
        return f"ws://127.0.0.1:{self.port}/ocpp/{charge_point_id}"

    async def charger(self, charge_point_id: str, *, auth_key: str | None = None, boot: bool = True, **kwargs) -> SimulatedChargePoint:
        connection = await connect(self.url(charge_point_id), auth_key=auth_key)
        cp = SimulatedChargePoint(charge_point_id, connection, response_timeout=5, **kwargs)
        task = asyncio.create_task(cp.start())
        self.clients.append((cp, task))
        if boot:
            reply = await cp.boot()
            assert reply.status == "Accepted"
        return cp

    async def close(self) -> None:
        for cp, task in self.clients:
            task.cancel()
            await cp._connection.close()
        await self.backend.stop()
        await self.server.stop()
        self.conn.close()


@pytest.fixture
async def central(tmp_path):
    settings = ListenerSettings(host="127.0.0.1", port=0, unknown_chargers="accept", ping_interval=5)
    c = await Central(tmp_path / "gw.db", OcppPolicy(live_metrics_db_interval=0.0, call_timeout=2.0, refresh_grace=0.2), settings).start()
    yield c
    await c.close()


async def reconnect(central: Central, cp: SimulatedChargePoint, auth_key: str | None = None) -> None:
    """Give a simulated charger a fresh websocket (its offline queue and state stay)."""
    await cp._connection.close()
    cp._connection = await connect(central.url(cp.id), auth_key=auth_key)
    central.clients.append((cp, asyncio.create_task(cp.start())))


@pytest.fixture
async def strict_central(tmp_path):
    """Unknown chargers refused at the handshake; known ones must present their key."""
    settings = ListenerSettings(host="127.0.0.1", port=0, unknown_chargers="reject", ping_interval=5, max_frame_bytes=4096)
    c = await Central(tmp_path / "gw.db", OcppPolicy(call_timeout=2.0), settings).start()
    yield c
    await c.close()


@pytest.fixture
def db(tmp_path):
    """A real SQLite file with the charger and transaction stores."""
    conn = db_connect(tmp_path / "gw.db")
    charger_store.init(conn)
    tx_store.init(conn)
    yield conn
    conn.close()
