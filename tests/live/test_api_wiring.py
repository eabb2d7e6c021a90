"""The feed mounted on the real REST app (`actors.api.app.build_app`, its middleware and
token) the way the API actor is to mount it: `attach_live_feed(app, token, db_path)`."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from aiohttp import web

from actors.api.app import build_app
from actors.live.feed import attach_live_feed
from actors.live.hub import Hub
from actors.live.messages import LiveEvent
from actors.live.tokens import issue_transaction_token
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store
from storage.db import connect
from tests.api.conftest import MemoryBackend
from tests.live.conftest import API_TOKEN, AUTH, read_sse, receive_until


@pytest.fixture
async def api(tmp_path) -> AsyncIterator[tuple[str, Hub]]:
    app = build_app(MemoryBackend(), token=API_TOKEN)
    hub = attach_live_feed(app, API_TOKEN, tmp_path / "egw.db")
    runner = web.AppRunner(app, shutdown_timeout=0.5)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}", hub
    finally:
        await runner.cleanup()


async def test_the_rest_api_and_the_feed_share_one_server(api, http):
    url, hub = api
    async with http.get(f"{url}/api/devices") as response:
        assert response.status == 200  # the REST routes are untouched
    async with http.ws_connect(url.replace("http", "ws") + "/api/live?topic=device/inv1", headers=AUTH) as ws:
        await receive_until(ws, lambda m: m["type"] == "subscribed")
        hub.publish(LiveEvent("device/inv1", "reading", {"values": {"ac_power_w": 1.0}}))
        assert (await receive_until(ws, lambda m: m["type"] == "event"))[-1]["seq"] == 1
    async with http.get(f"{url}/api/live/sse?topic=device/inv1&resume_from=1", headers=AUTH) as response:
        assert [e["event"] for e in await read_sse(response, 2)] == ["subscribed", "reading"]
    async with http.get(f"{url}/api/live/sse?topic=device/inv1") as response:
        assert response.status == 401 and (await response.json())["error"] == "unauthorized"


async def test_a_remote_start_token_is_checked_against_the_gateways_transactions(api, http, tmp_path):
    url, _ = api
    token = issue_transaction_token(API_TOKEN, charger_id="CP-1", id_tag="ALICE")  # what remote-start hands out
    conn = connect(tmp_path / "egw.db")
    charger_store.init(conn)
    tx_store.init(conn)
    started = [tx_store.start_transaction(conn, "CP-1", connector_id=1, id_tag=tag, meter_start=0, start_time=1.0 + i, received=time.time())[0]
               for i, tag in enumerate(("ALICE", "BOB"))]
    conn.close()
    statuses = []
    for transaction_id in (*started, 999):
        async with http.get(f"{url}/api/live/sse?topic=transaction/{transaction_id}&token={token}") as response:
            statuses.append(response.status)
    assert statuses == [200, 403, 403]  # ALICE's session; not BOB's; not one that does not exist
