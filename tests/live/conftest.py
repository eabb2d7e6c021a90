"""Fixtures for the live feed: a real aiohttp server (port 0) with the feed's routes.

`LiveServer` serves only the live routes over a `Hub`, with the same authorizer the API
actor uses, so websocket and SSE clients talk to the real handlers over loopback TCP.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from actors.live.hub import Hub
from actors.live.routes import add_live_routes
from actors.live.tokens import LiveAuthorizer, OwnerLookup, TransactionOwner

from tests.conftest import wait_until_async

API_TOKEN = "k" * 43
AUTH = {"Authorization": f"Bearer {API_TOKEN}"}


async def wait_for(predicate: Callable[[], Any], timeout: float = 5.0, what: str = "condition") -> Any:
    """Poll `predicate` on the running loop until truthy; fail at the deadline."""
    return await wait_until_async(predicate, timeout, what=what)


@dataclass
class LiveServer:
    hub: Hub
    url: str
    owners: dict[int, TransactionOwner]

    def ws_url(self, query: str = "") -> str:
        return self.url.replace("http://", "ws://") + "/api/live" + (f"?{query}" if query else "")


async def start_server(hub: Hub, owners: dict[int, TransactionOwner] | None = None, **route_options: Any) -> tuple[LiveServer, web.AppRunner]:
    owners = {} if owners is None else owners

    async def lookup(transaction_id: int) -> TransactionOwner | None:
        return owners.get(transaction_id)

    lookup_fn: OwnerLookup = lookup
    app = web.Application()
    add_live_routes(app, hub, LiveAuthorizer(API_TOKEN, lookup_fn), **route_options)
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    return LiveServer(hub, f"http://127.0.0.1:{port}", owners), runner


@pytest.fixture
async def live() -> AsyncIterator[LiveServer]:
    server, runner = await start_server(Hub(history=64, queue_size=32))
    try:
        yield server
    finally:
        await runner.cleanup()


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    async with aiohttp.ClientSession() as session:
        yield session


async def receive_json(ws: aiohttp.ClientWebSocketResponse, timeout: float = 5.0) -> dict[str, Any]:
    message = await ws.receive(timeout)
    assert message.type == aiohttp.WSMsgType.TEXT, f"expected a text message, got {message.type} {message.extra!r}"
    return json.loads(message.data)


async def receive_until(ws: aiohttp.ClientWebSocketResponse, predicate: Callable[[dict], bool], timeout: float = 5.0) -> list[dict[str, Any]]:
    """Messages up to and including the first one `predicate` accepts."""
    got: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    while True:
        message = await receive_json(ws, max(0.01, deadline - time.monotonic()))
        got.append(message)
        if predicate(message):
            return got


async def read_sse(response: aiohttp.ClientResponse, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
    """`count` SSE messages as {"id", "event", "data"} (comments and retry lines skipped)."""
    events: list[dict[str, Any]] = []
    current: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    while len(events) < count:
        line = await asyncio.wait_for(response.content.readline(), max(0.01, deadline - time.monotonic()))
        if not line:
            break
        text = line.decode().rstrip("\n")
        if not text:
            if "data" in current:
                events.append(current)
            current = {}
        elif not text.startswith(":"):
            field, _, value = text.partition(": ")
            current[field] = json.loads(value) if field == "data" else value
    return events
