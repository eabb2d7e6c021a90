"""The feed in a real multiprocess actor system: harvest and supervisors as sources, the
live-feed API actor SIGKILLed while clients are subscribed."""

from __future__ import annotations

import asyncio
import json
import os
import signal
from contextlib import asynccontextmanager

import aiohttp
import pytest

from actors.harvest.specs import harvest_child_specs
from actors.ocpp.specs import ocpp_child_specs
from simulators.charger.chargepoint import SimulatedChargePoint
from simulators.charger.connection import connect as ocpp_connect
from supervisor.messages import GetTree, Tree
from supervisor.spec import Backoff, ChildSpec, Heartbeat, SupervisorSpec
from tests.conftest import ask_typed, free_port, wait_until
from tests.live.conftest import API_TOKEN, AUTH, read_sse, receive_until
from supervisor.embedded import start_root as start_tree

FAST = Backoff(min_delay=0.01, max_delay=0.2, factor=2.0, jitter=0.1, reset_after=60)


def start_root(asys, tmp_path, api_port: int, ocpp_port: int | None = None):
    values = {"data_dir": str(tmp_path), "uploads": [], "ocpp_host": "127.0.0.1", "ocpp_port": ocpp_port,
              "ocpp_unknown_chargers": "accept", "live_metrics_db_interval": 0.0}
    ocpp = ocpp_child_specs(values) if ocpp_port else []
    children = (*harvest_child_specs(values), *ocpp,
                ChildSpec("api", "tests.live.actors.LiveApiActor", {"port": api_port, "token": API_TOKEN, "db_path": str(tmp_path / "egw.db")}, observer=True),
                ChildSpec("producer", "tests.live.actors.Producer"))
    spec = SupervisorSpec(children=children, backoff=FAST, heartbeat=Heartbeat(interval=0.5, timeout=10.0))
    root = start_tree(asys, spec)
    return root


def node(asys, root, name: str) -> dict | None:
    for record in ask_typed(asys, root, GetTree(), Tree).records:
        if record["name"] == name and record["state"] == "running" and record["pid"]:
            return record
    return None


async def connect(http: aiohttp.ClientSession, url: str, timeout: float = 15.0) -> aiohttp.ClientWebSocketResponse:
    """Reconnect the way a client does: retry until the API answers again."""
    deadline = asyncio.get_running_loop().time() + timeout
    while True:
        try:
            return await http.ws_connect(url, headers=AUTH)
        except aiohttp.ClientError:
            assert asyncio.get_running_loop().time() < deadline, "the live feed did not come back"
            await asyncio.sleep(0.05)


async def test_killing_the_api_actor_drops_subscribers_who_reconnect_and_resume(multiproc_system, tmp_path):
    asys = multiproc_system
    port = free_port()
    root = start_root(asys, tmp_path, port)
    first = await asyncio.to_thread(wait_until, lambda: node(asys, root, "api"), what="live API running")
    url = f"ws://127.0.0.1:{port}/api/live"
    async with aiohttp.ClientSession() as http:
        ws = await connect(http, url)
        await ws.send_json({"op": "subscribe", "topic": "device/sim"})
        await receive_until(ws, lambda m: m["type"] == "subscribed")
        readings = [m for m in await receive_until(ws, lambda m: m.get("seq", 0) >= 5, timeout=10) if m["type"] == "event"]
        assert [m["seq"] for m in readings] == list(range(readings[0]["seq"], readings[-1]["seq"] + 1))
        outbox = [m["data"]["outbox_seq"] for m in readings]
        assert outbox == list(range(outbox[0], outbox[0] + len(outbox)))  # each committed reading, once, in order
        epoch, last = readings[-1]["epoch"], readings[-1]["seq"]

        os.kill(first["pid"], signal.SIGKILL)
        while True:  # the subscriber is dropped: its stream ends
            message = await ws.receive(10.0)
            if message.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.ERROR):
                break
            last = max(last, receive_seq(message))
        await ws.close()

        ws = await connect(http, url)
        await ws.send_json({"op": "subscribe", "topic": "device/sim", "resume_from": last + 1, "epoch": epoch})
        head = await receive_until(ws, lambda m: m["type"] == "subscribed")
        assert head[0]["type"] == "resync" and head[0]["rest"] == "/api/devices/sim"  # told to re-read, never silently skipped
        after = [m for m in await receive_until(ws, lambda m: m.get("type") == "event" and m["seq"] >= head[-1]["seq"] + 3, timeout=10) if m["type"] == "event"]
        assert after[0]["epoch"] != epoch and [m["seq"] for m in after] == list(range(head[-1]["seq"] + 1, after[-1]["seq"] + 1))
        assert after[0]["data"]["outbox_seq"] > outbox[-1]  # the harvest actor found the new API by itself
        # the gateway topic of the new API tells what happened
        await ws.send_json({"op": "subscribe", "topic": "gateway", "resume_from": 1, "epoch": after[0]["epoch"]})
        gateway = [m for m in await receive_until(ws, lambda m: m.get("kind") == "restarted", timeout=10) if m.get("topic") == "gateway" and m["type"] == "event"]
        assert gateway[-1]["data"]["child"] == "api" and gateway[-1]["data"]["restarts"] == 1
        await ws.close()
    second = node(asys, root, "api")
    assert second and second["pid"] != first["pid"]


def receive_seq(message: aiohttp.WSMessage) -> int:
    data = json.loads(message.data)
    return data.get("seq", 0) if data.get("type") == "event" else 0


async def test_harvest_readings_reach_an_sse_client_of_the_live_api(multiproc_system, tmp_path):
    asys = multiproc_system
    port = free_port()
    root = start_root(asys, tmp_path, port)
    await asyncio.to_thread(wait_until, lambda: node(asys, root, "api"), what="live API running")
    async with aiohttp.ClientSession() as http:
        async with http.get(f"http://127.0.0.1:{port}/api/live/sse?topic=device/sim", headers=AUTH) as response:
            assert response.status == 200
            got = await read_sse(response, 4, timeout=10)
    assert got[0]["event"] == "subscribed"
    readings = [e["data"] for e in got[1:]]
    assert all(e["kind"] == "reading" and e["data"]["values"]["ac_power_w"] > 1000.0 for e in readings)
    assert [e["seq"] for e in readings] == list(range(readings[0]["seq"], readings[0]["seq"] + 3))


@pytest.fixture
def live_chargers(monkeypatch):
    """Charger actors with the proposed emission lines (set before the actor system forks)."""
    monkeypatch.setattr("actors.ocpp.listener.CHARGER_ACTOR", "tests.live.actors.LiveChargerActor")


@asynccontextmanager
async def booted_charge_point(asys, tmp_path, charge_point_id: str):
    """The feed's API and the OCPP family running, and the simulator connected over real OCPP and booted: (charge point, API port)."""
    api_port, ocpp_port = free_port(), free_port()
    root = start_root(asys, tmp_path, api_port, ocpp_port)
    await asyncio.to_thread(wait_until, lambda: node(asys, root, "api") and node(asys, root, "ocpp"), what="API and OCPP listener running")
    conn = await ocpp_connect(f"ws://127.0.0.1:{ocpp_port}/ocpp/{charge_point_id}")
    cp = SimulatedChargePoint(charge_point_id, conn, response_timeout=5)
    reader = asyncio.create_task(cp.start())
    try:
        assert (await cp.boot()).status == "Accepted"
        yield cp, api_port
    finally:
        reader.cancel()
        await conn.close()


async def test_a_session_over_real_ocpp_reaches_transaction_subscribers_through_the_actors(live_chargers, multiproc_system, tmp_path):
    async with booted_charge_point(multiproc_system, tmp_path, "CP-9") as (cp, api_port):
        async with aiohttp.ClientSession() as http:
            charger_ws = await connect(http, f"ws://127.0.0.1:{api_port}/api/live?topic=charger/CP-9")
            await receive_until(charger_ws, lambda m: m["type"] == "subscribed")
            await cp.status(1, "Preparing")
            status = await receive_until(charger_ws, lambda m: m.get("kind") == "connector_status", timeout=10)
            assert status[-1]["kind"] == "connector_status" and status[-1]["data"]["status"] == "Preparing"
            transaction_id = await cp.start_transaction(1, "ALICE", meter_start=0)
            ws = await connect(http, f"ws://127.0.0.1:{api_port}/api/live")
            await ws.send_json({"op": "subscribe", "topic": f"transaction/{transaction_id}", "resume_from": 1})  # from the session's start
            await receive_until(ws, lambda m: m["type"] == "subscribed")
            for i in range(1, 11):
                await cp.meter(1, transaction_id, 100 * i, 7000.0 + i)
            await cp.stop_transaction(transaction_id, 1100)
            got = [m for m in await receive_until(ws, lambda m: m.get("data", {}).get("power_w") == 0.0, timeout=10) if m["type"] == "event"]
            await ws.close()
            await charger_ws.close()
    assert [m["seq"] for m in got] == list(range(1, len(got) + 1)), [m["kind"] for m in got]
    meter = [m["data"]["energy_wh"] for m in got if m["kind"] == "meter_values"]
    assert meter == [100.0 * i for i in range(1, 11)] + [1100.0]


async def test_state_of_charge_and_current_reach_the_drivers_feed_with_energy_and_power(live_chargers, multiproc_system, tmp_path):
    """The simulator sends SoC and Current.Import (phase-less, then per phase) over real OCPP; a websocket
    subscriber of the session and an SSE one see soc_percent and current_a beside energy and power."""
    async with booted_charge_point(multiproc_system, tmp_path, "CP-8") as (cp, api_port):
        transaction_id = await cp.start_transaction(1, "ALICE", meter_start=0)
        async with aiohttp.ClientSession() as http:
            ws = await connect(http, f"ws://127.0.0.1:{api_port}/api/live")
            await ws.send_json({"op": "subscribe", "topic": f"transaction/{transaction_id}", "resume_from": 1})
            await receive_until(ws, lambda m: m["type"] == "subscribed")
            await cp.meter(1, transaction_id, 1000, 7360.0, soc_percent=41.5, current_a=32.0)
            await cp.meter(1, transaction_id, 2000, 11000.0, soc_percent=43.0, current_a={"L1": 16.0, "L2": 15.8, "L3": 16.2})
            await cp.meter(1, transaction_id, 3000, 11000.0)  # a charger that samples neither this time
            got = [m for m in await receive_until(ws, lambda m: m.get("data", {}).get("energy_wh") == 3000.0, timeout=10) if m.get("kind") == "meter_values"]
            await ws.close()
            async with http.get(f"http://127.0.0.1:{api_port}/api/live/sse?topic=transaction/{transaction_id}&resume_from=1", headers=AUTH) as sse:
                replayed = [e["data"]["data"] for e in await read_sse(sse, 5, timeout=10) if e["event"] == "meter_values"]  # subscribed, started, 3 samples
    figures = [(m["data"]["energy_wh"], m["data"]["power_w"], m["data"]["soc_percent"], m["data"]["current_a"]) for m in got]
    assert figures == [(1000.0, 7360.0, 41.5, 32.0), (2000.0, 11000.0, 43.0, 16.2), (3000.0, 11000.0, None, None)]
    assert got[1]["data"]["current_phases_a"] == {"L1": 16.0, "L2": 15.8, "L3": 16.2}
    assert [(e["soc_percent"], e["current_a"]) for e in replayed] == [(41.5, 32.0), (43.0, 16.2), (None, None)]
