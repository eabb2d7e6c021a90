"""Fixtures of the fleet tests: one PostgreSQL cluster per session (a fresh database per test),
a mosquitto per test, receiver workers and gateways made on demand and always cleaned up."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fleet.servers import Gateway, Mosquitto, PostgresServer, WorkerProcess, make_gateway


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()


@pytest.fixture
def fleet_db(pg_server: PostgresServer) -> tuple[PostgresServer, str]:
    """(server, database name) of an empty database for this test alone."""
    return pg_server, pg_server.create_database()


@pytest.fixture
def dsn(fleet_db: tuple[PostgresServer, str]) -> str:
    server, name = fleet_db
    return server.dsn(name)


@pytest.fixture
def broker() -> Iterator[Mosquitto]:
    server = Mosquitto()
    try:
        yield server.start()
    finally:
        server.close()


@pytest.fixture
def workers() -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(dsn: str, mqtt_url: str = "", **kwargs: Any) -> WorkerProcess:
        worker = WorkerProcess(dsn, mqtt_url, **kwargs)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


@pytest.fixture
def gateways(tmp_path: Path) -> Iterator[Callable[..., Gateway]]:
    made: list[Gateway] = []

    def make(name: str, url: str, **kwargs: Any) -> Gateway:
        gateway = make_gateway(tmp_path / "gateways", name, url, **kwargs)
        made.append(gateway)
        return gateway

    yield make
    for gateway in made:
        gateway.close()


def register(dsn: str, gateway: Gateway | Any, name: str | None = None) -> str:
    """Register a gateway's key (what `egw ingest register` does), in-process; returns the kid."""
    from fleet.store import FleetStore

    async def run() -> str:
        store = await FleetStore.open(dsn, max_size=1)
        try:
            kid, _gateway, _created = await store.register(gateway.signer.public_key_pem(), name or gateway.name)
            return kid
        finally:
            await store.close()

    return asyncio.run(run())
