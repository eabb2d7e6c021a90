"""Live feed benchmark: `python -m bench.live [--subscribers 1 100 500] [--events 100]`.

Fan-out latency: a simulated charger (this process) sends MeterValues over a real OCPP
websocket to a server process that runs the real charger protocol (SQLite commit, WAL,
synchronous=FULL), turns its live effect into a `LiveEvent` exactly as the charger
actor is to (`actors.ocpp.live_events.live_events`) and publishes it to the hub, which
fans it out over real websockets to N subscribers of the session's topic (also in this
process). Latency is from sending the MeterValues frame to its arrival at each
subscriber (CLOCK_MONOTONIC is shared by processes), p50/p99 over every
(event, subscriber) pair. One event at a time, the next when every subscriber has the
previous one (or after 1 s).

Baseline, measured in the same run: the OCPP round trip of a MeterValues (CALL to
CALLRESULT) against the gateway's real OCPP family (listener actor + charger actor in a
multiprocess actor system, `bench.ocpp.actor_gateway`). Each fan-out figure is printed
next to it as a ratio (fan-out / round trip: how many round trips a subscriber waits).

Measured twice: "hub" (the protocol and the hub in one server process, no actor hops)
and "actors" (listener actor -> charger actor -> a live-feed actor named "api" in a real
multiprocess actor system: the hops the gateway makes; `bench.live_support.FeedActor`
is the API actor's live-feed part alone).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import multiprocessing
import os
import random
import statistics
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.ocpp import Client, actor_gateway, free_port, iso, percentile, process_server, wait_for_running  # noqa: E402

TOKEN = "b" * 43
CHARGER = "BENCH-CP"


# ---------------------------------------------------------------- the server
def _serve_feed(port: int, db_path: str, ready: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    from aiohttp import web

    from actors.live.hub import Hub
    from actors.ocpp.live_events import live_events
    from actors.live.routes import add_live_routes
    from actors.live.tokens import LiveAuthorizer
    from actors.ocpp.policy import OcppPolicy
    from actors.ocpp.protocol import ChargerProtocol
    from storage import chargers as charger_store
    from storage import ocpp_transactions as tx_store
    from storage.db import connect

    async def main() -> None:
        conn = connect(db_path)
        charger_store.init(conn)
        tx_store.init(conn)
        charger_store.add_charger(conn, CHARGER, registration_status="Accepted")
        hub = Hub(queue_size=256, max_subscribers=2000)
        app = web.Application()
        add_live_routes(app, hub, LiveAuthorizer(TOKEN))

        async def ocpp(request: web.Request) -> web.WebSocketResponse:
            ws = web.WebSocketResponse(protocols=("ocpp1.6",))
            await ws.prepare(request)
            protocol = ChargerProtocol(CHARGER, conn, OcppPolicy(live_metrics_db_interval=10.0))
            protocol.connected(1)
            async for message in ws:
                effects = protocol.receive(1, message.data)
                for text in effects.frames:
                    await ws.send_str(text)
                for update in effects.live:
                    for event in live_events(update):
                        hub.publish(event)
            return ws

        app.router.add_get("/ocpp/{id}", ocpp)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port, backlog=1024).start()
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


@contextlib.contextmanager
def actor_feed(ocpp_port: int, live_port: int, data_dir: str) -> Iterator[None]:
    """Harvest + the OCPP family + a live-feed actor named "api" under a real root supervisor."""
    from actors.harvest.specs import harvest_child_specs
    from actors.ocpp.specs import ocpp_child_specs
    from supervisor.embedded import private_actor_system, start_root
    from supervisor.launcher import preimport_heavy_libraries
    from supervisor.logs import log_definitions
    from supervisor.spec import ChildSpec, SupervisorSpec

    preimport_heavy_libraries()
    values = {"data_dir": data_dir, "uploads": [], "ocpp_host": "127.0.0.1", "ocpp_port": ocpp_port, "ocpp_unknown_chargers": "accept"}
    feed = ChildSpec("api", "bench.live_support.FeedActor", {"port": live_port, "token": TOKEN})
    spec = SupervisorSpec(children=(*harvest_child_specs(values), *ocpp_child_specs(values), feed))
    with private_actor_system(log_definitions("ERROR")) as asys:
        root = start_root(asys, spec)
        wait_for_running(asys, root, ("ocpp", "api", "harvest"))
        time.sleep(0.3)  # the listener binds right after it reports running
        yield


# ------------------------------------------------------------ measurements
async def fan_out(port: int, subscribers: int, events: int, live_port: int | None = None) -> list[float]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))
    charger = Client(f"ws://127.0.0.1:{port}/ocpp", f"{CHARGER}", random.Random(1))
    live_port = live_port or port
    try:
        await charger.open(session)
        _, frame = await charger.call("StartTransaction", {"connectorId": 1, "idTag": "BENCH", "meterStart": 0, "timestamp": iso(time.time())})
        transaction_id = frame[2]["transactionId"]
        url = f"ws://127.0.0.1:{live_port}/api/live?topic=transaction/{transaction_id}"
        sockets = []
        for i in range(0, subscribers, 50):
            sockets += await asyncio.gather(*(session.ws_connect(url, headers={"Authorization": f"Bearer {TOKEN}"}) for _ in range(min(50, subscribers - i))))
        for ws in sockets:
            assert json.loads((await ws.receive(10)).data)["type"] == "subscribed"
        sent_at: dict[int, float] = {}
        latencies: list[float] = []
        arrived: dict[int, int] = {}
        all_in = {seq: asyncio.Event() for seq in range(1, events + 1)}

        async def listen(ws: aiohttp.ClientWebSocketResponse) -> None:
            async for message in ws:
                now = time.monotonic()
                body = json.loads(message.data)
                if body.get("kind") != "meter_values":
                    continue
                seq = int(body["data"]["energy_wh"]) // 10  # which MeterValues this is (the k-th carries k * 10 Wh)
                if seq in sent_at:
                    latencies.append(now - sent_at[seq])
                    arrived[seq] = arrived.get(seq, 0) + 1
                    if arrived[seq] == subscribers:
                        all_in[seq].set()

        readers = [asyncio.create_task(listen(ws)) for ws in sockets]
        for seq in range(1, events + 1):
            payload = {"connectorId": 1, "transactionId": transaction_id, "meterValue": [{"timestamp": iso(time.time()), "sampledValue": [
                {"value": str(seq * 10), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
                {"value": "7400.0", "measurand": "Power.Active.Import", "unit": "W"}]}]}
            sent_at[seq] = time.monotonic()
            await charger.call("MeterValues", payload)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(all_in[seq].wait(), 1.0)
        missing = events * subscribers - len(latencies)
        if missing:
            print(f"  ({missing} of {events * subscribers} deliveries did not arrive within 1 s)")
        for task in readers:
            task.cancel()
        await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
        return latencies
    finally:
        await session.close()


async def round_trips(port: int, count: int) -> list[float]:
    async with aiohttp.ClientSession() as session:
        charger = Client(f"ws://127.0.0.1:{port}/ocpp", "BENCH-RT", random.Random(2))
        await charger.open(session)
        _, frame = await charger.call("StartTransaction", {"connectorId": 1, "idTag": "BENCH", "meterStart": 0, "timestamp": iso(time.time())})
        transaction_id = frame[2]["transactionId"]
        out = []
        for seq in range(1, count + 1):
            payload = {"connectorId": 1, "transactionId": transaction_id, "meterValue": [{"timestamp": iso(time.time()), "sampledValue": [
                {"value": str(seq * 10), "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]}
            elapsed, _ = await charger.call("MeterValues", payload)
            out.append(elapsed)
            await asyncio.sleep(0.01)
        return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.live")
    parser.add_argument("--subscribers", type=int, nargs="+", default=[1, 100, 500])
    parser.add_argument("--events", type=int, default=100)
    args = parser.parse_args(argv if argv is not None else [])
    multiprocessing.set_start_method("fork", force=True)  # also when another benchmark ran first in this process

    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        with actor_gateway(port, tmp):
            baseline = asyncio.run(round_trips(port, args.events))
    base_p50, base_p99 = statistics.median(baseline) * 1000, percentile(baseline, 99) * 1000

    results = {}
    for n in args.subscribers:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            with process_server(_serve_feed, port, str(Path(tmp) / "egw.db")):
                latencies = asyncio.run(fan_out(port, n, args.events))
        results[("hub", n)] = (statistics.median(latencies) * 1000, percentile(latencies, 99) * 1000, len(latencies))
    for n in args.subscribers:
        with tempfile.TemporaryDirectory() as tmp:
            ocpp_port, live_port = free_port(), free_port()
            with actor_feed(ocpp_port, live_port, tmp):
                latencies = asyncio.run(fan_out(ocpp_port, n, args.events, live_port))
        results[("actors", n)] = (statistics.median(latencies) * 1000, percentile(latencies, 99) * 1000, len(latencies))

    print(f"Live feed fan-out, {args.events} MeterValues per figure, loopback, {os.cpu_count()} CPUs")
    print(f"{'figure':54} {'value ms':>9} {'baseline ms':>12} {'ratio':>7}")
    print(f"{'OCPP MeterValues round trip (actors) p50':54} {base_p50:9.2f} {base_p50:12.2f} {1.0:7.2f}")
    print(f"{'OCPP MeterValues round trip (actors) p99':54} {base_p99:9.2f} {base_p99:12.2f} {1.0:7.2f}")
    for (path, n), (p50, p99, count) in results.items():
        print(f"{f'MeterValues -> {n} subscribers, {path}, p50 ({count})':54} {p50:9.2f} {base_p50:12.2f} {p50 / base_p50:7.2f}")
        print(f"{f'MeterValues -> {n} subscribers, {path}, p99':54} {p99:9.2f} {base_p99:12.2f} {p99 / base_p99:7.2f}")
    print("hub: protocol + hub in one process; actors: listener -> charger actor -> live-feed actor (the real hops)")
    print("ratio = fan-out latency / OCPP round trip of the real gateway (lower is better)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
