"""The live feed of a real `egw run` process: a simulated inverter's readings, a simulated
charger's session, SIGKILL of the API actor with subscribers attached, `egw watch`.

The API actor mounts the feed (`attach_live_feed`); a gateway whose `/api/live/sse` is 404
has lost that wiring, and these tests fail saying so.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import time

import aiohttp
import pytest

from storage.api_token import read_token, token_path
from simulators.charger.chargepoint import SimulatedChargePoint
from simulators.charger.connection import connect as ocpp_connect
from tests.api.test_actor import http, http_ok
from tests.api.test_running_gateway import actor_pids, running_gateway  # noqa: F401 - the fixture
from tests.conftest import EGW, wait_until
from tests.live.conftest import receive_until


@pytest.fixture
def gateway_env(gateway_env: dict[str, str]) -> dict[str, str]:
    return {**gateway_env, "EGW_OCPP_UNKNOWN_CHARGERS": "accept"}  # the simulated charger registers itself


def assert_feed_mounted(port: int, token: str) -> None:
    """The running API serves the live feed: a bad topic is refused by the feed (400, naming the topic), not 404."""
    status, _, body = http(port, "/api/live/sse?topic=nonsense", token=token)
    assert status != 404, "the API actor does not mount the live feed (/api/live/sse is 404)"
    assert status == 400 and body["error"] == "bad_request", (status, body)


async def connect(session: aiohttp.ClientSession, url: str, token: str, timeout: float = 15.0) -> aiohttp.ClientWebSocketResponse:
    deadline = time.monotonic() + timeout
    while True:
        try:
            return await session.ws_connect(url, headers={"Authorization": f"Bearer {token}"})
        except aiohttp.ClientError:
            assert time.monotonic() < deadline, "the live feed did not come back"
            await asyncio.sleep(0.05)


async def test_api_actor_killed_under_subscribers_who_reconnect_and_resume(running_gateway):  # noqa: F811
    proc, port, env, _ = running_gateway
    token = read_token(token_path(env["EGW_DATA_DIR"]))
    assert_feed_mounted(port, token)
    await asyncio.to_thread(wait_until, lambda: all(actor_pids(port).values()), timeout=15, what="every actor running")
    before = actor_pids(port)["api"]
    url = f"ws://127.0.0.1:{port}/api/live"
    async with aiohttp.ClientSession() as session:
        ws = await connect(session, url + "?topic=device/inv1", token)
        readings = [m for m in await receive_until(ws, lambda m: m.get("type") == "event", timeout=15) if m["type"] == "event"]
        assert readings[-1]["data"]["values"]  # a real poll of the simulated inverter, committed by the harvest actor
        epoch, last = readings[-1]["epoch"], readings[-1]["seq"]

        os.kill(before, signal.SIGKILL)
        while True:  # dropped
            message = await ws.receive(10.0)
            if message.type != aiohttp.WSMsgType.TEXT:
                break
            data = json.loads(message.data)
            last = data.get("seq", last) if data.get("type") == "event" else last
        ws = await connect(session, url, token)
        await ws.send_json({"op": "subscribe", "topic": "device/inv1", "resume_from": last + 1, "epoch": epoch})
        head = await receive_until(ws, lambda m: m["type"] == "subscribed")
        assert head[0]["type"] == "resync" and head[0]["rest"] == "/api/devices/inv1"
        after = await receive_until(ws, lambda m: m.get("type") == "event", timeout=15)
        assert after[-1]["epoch"] != epoch
        await ws.send_json({"op": "subscribe", "topic": "gateway", "resume_from": 1, "epoch": after[-1]["epoch"]})
        restarted = await receive_until(ws, lambda m: m.get("kind") == "restarted", timeout=10)
        assert restarted[-1]["data"]["child"] == "api"
        await ws.close()
    assert proc.poll() is None and actor_pids(port)["api"] != before


async def test_a_remote_started_session_streams_to_the_drivers_app_and_to_egw_watch(running_gateway):  # noqa: F811
    proc, port, env, _ = running_gateway
    token = read_token(token_path(env["EGW_DATA_DIR"]))
    assert_feed_mounted(port, token)
    ocpp_url = f"ws://127.0.0.1:{env['EGW_OCPP_PORT']}/ocpp/CP-7"
    await asyncio.to_thread(wait_until, lambda: all(actor_pids(port).values()), timeout=15, what="every actor running")
    deadline = time.monotonic() + 15
    while True:  # the listener may bind a moment after it reports running
        try:
            conn = await ocpp_connect(ocpp_url)
            break
        except aiohttp.ClientConnectorError:
            assert time.monotonic() < deadline, "the OCPP listener did not accept connections"
            await asyncio.sleep(0.1)
    cp = SimulatedChargePoint("CP-7", conn, response_timeout=10)
    reader = asyncio.create_task(cp.start())
    try:
        await cp.boot()
        await asyncio.to_thread(wait_until, lambda: http(port, "/api/chargers/CP-7")[0] == 200 and "chargers/CP-7" in actor_pids(port), timeout=15, what="charger actor")
        status, _, answer = await asyncio.to_thread(http, port, "/api/chargers/CP-7/remote-start", "POST", {"idTag": "ALICE", "connectorId": 1}, token=token)
        assert status == 200 and answer["live_token"].startswith("lt1.")
        transaction_id = await cp.start_transaction(1, "ALICE", meter_start=0)  # what the charger does after accepting
        watch = subprocess.Popen([*EGW, "watch", f"transaction/{transaction_id}", "--token", answer["live_token"], "--resume-from", "1", "--count", "6", "--json"],
                                 env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        async with aiohttp.ClientSession() as session:
            ws = await connect(session, f"ws://127.0.0.1:{port}/api/live", answer["live_token"])
            await ws.send_json({"op": "subscribe", "topic": f"transaction/{transaction_id}", "resume_from": 1})
            for i in range(1, 5):
                await cp.meter(1, transaction_id, 100 * i, 7000.0)
            await cp.stop_transaction(transaction_id, 500)
            got = [m for m in await receive_until(ws, lambda m: m.get("kind") == "stopped", timeout=15) if m["type"] == "event"]
            await ws.send_json({"op": "subscribe", "topic": "charger/CP-7"})
            refused = await receive_until(ws, lambda m: m["type"] == "error", timeout=5)
            assert refused[-1]["error"] == "forbidden"  # the driver's token opens only that session
            await ws.close()
        out, err = await asyncio.to_thread(watch.communicate, timeout=30)
    finally:
        reader.cancel()
        await conn.close()
    assert [m["seq"] for m in got] == list(range(1, len(got) + 1))
    assert [m["kind"] for m in got] == ["started", "meter_values", "meter_values", "meter_values", "meter_values", "meter_values", "stopped"]
    assert watch.returncode == 0, err
    assert [json.loads(line)["seq"] for line in out.splitlines() if json.loads(line)["type"] == "event"] == [1, 2, 3, 4, 5, 6]
    _ = http_ok  # imported with `http` for the fixture's module
