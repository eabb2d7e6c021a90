"""Shared helpers for the BLE tests: response parsing, a small real API.

Waiting on a condition: `tests.conftest.wait_until` (sync) and `wait_until_async`.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import threading
from dataclasses import dataclass, field

import pytest
from aiohttp import web


@dataclass
class Page:
    raw: bytes
    status: int
    reason: str
    headers: dict[str, str]
    body: bytes


def parse_page(raw: bytes) -> Page:
    """Parse one response value as a phone app would."""
    head, sep, body = raw.partition(b"\r\n\r\n")
    assert sep, f"no end of head in {raw!r}"
    lines = head.decode().split("\r\n")
    version, status, reason = lines[0].split(" ", 2)
    assert version == "EGWTTP/1.1"
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return Page(raw, int(status), reason, headers, body)


class BackgroundLoop:
    """An asyncio loop in a thread, so that sync thespian calls never block it."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro, timeout: float = 15.0):
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


@dataclass
class SmallApi:
    """A stand-in for the REST API: GETs, and a protected POST counting its executions (also as POST /api/wifi)."""

    token: str = field(default_factory=lambda: secrets.token_hex(8))
    count: int = 0
    port: int = 0
    big: bytes = field(default_factory=lambda: json.dumps({"values": [{"i": i, "name": f"reading-{i}"} for i in range(60)]}).encode())

    def app(self) -> web.Application:
        app = web.Application()
        app.router.add_get("/api/echo", self.echo)
        app.router.add_get("/api/big", self.big_get)
        app.router.add_post("/api/count", self.post_count)
        app.router.add_get("/api/health", self.echo)
        app.router.add_post("/api/wifi", self.post_count)
        return app

    async def echo(self, request: web.Request) -> web.Response:
        return web.json_response({"echo": "hello"})

    async def big_get(self, request: web.Request) -> web.Response:
        return web.Response(body=self.big, content_type="application/json")

    async def post_count(self, request: web.Request) -> web.Response:
        if request.headers.get("Authorization") != f"Bearer {self.token}":
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        self.count += 1
        return web.json_response({"count": self.count, "padding": "p" * 400}, status=201)


@pytest.fixture
async def aiohttp_api():
    api = SmallApi()
    runner = web.AppRunner(api.app())
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    api.port = runner.addresses[0][1]
    yield api
    await runner.cleanup()


@pytest.fixture
def dbus_daemon():
    from tests.ble.dbus_daemon import PrivateDbusDaemon

    daemon = PrivateDbusDaemon()
    yield daemon
    daemon.stop()


@pytest.fixture
async def fake_bluez(dbus_daemon):
    from tests.ble.fake_bluez import FakeBlueZ

    bluez = FakeBlueZ(dbus_daemon.address)
    await bluez.start()
    yield bluez
    await bluez.stop()
