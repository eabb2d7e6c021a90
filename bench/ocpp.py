"""OCPP central system benchmark: `python -m bench.ocpp [--chargers 50 200] [--seconds 20]`.

Measured in the same run, against the same load generator:

  egw-actors   the gateway's OCPP family as it ships: listener actor + one charger actor
               per charger in a multiprocess actor system, every message validated and
               committed to SQLite (WAL, synchronous=FULL) before it is answered; frames
               travel over each charger actor's unix-socket link to the listener's loop
               (actors.ocpp.replies), control and supervision as thespian messages
  egw-local    the same protocol and store driven in-process (no actor hops), to show
               what the actor hops cost
  baseline     a bare aiohttp + `ocpp` package central system that validates (the
               package's default) and stores nothing

Load: N simulated chargers, each sending one message per second in a realistic mix
(StatusNotification, MeterValues, Heartbeat, and a StartTransaction/StopTransaction pair
every 30 messages), p50/p99 of the call round trip. Throughput: 50 chargers sending
their next CALL as soon as the previous one is answered (closed loop), calls/s.
Every figure is printed next to the baseline's, as a ratio (latency: baseline/egw,
so higher is better in both cases; throughput: egw/baseline).

The load generator runs in this process, each central system in its own process(es),
all on loopback.
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
from collections.abc import Callable, Iterator
from typing import Any
from datetime import datetime, timezone
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from supervisor.embedded import free_port  # noqa: E402


REPLY_TIMEOUT = 30.0  # a reply slower than this fails the run instead of hanging it


def iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


# ------------------------------------------------------------- central systems
def _serve_baseline(port: int, ready: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    from aiohttp import web
    from ocpp.routing import on
    from ocpp.v16 import ChargePoint, call_result
    from ocpp.v16.enums import Action

    counter = iter(range(1, 10**9))

    class Bare(ChargePoint):
        @on(Action.boot_notification)
        def on_boot(self, **_):
            return call_result.BootNotification(current_time=iso(time.time()), interval=300, status="Accepted")

        @on(Action.heartbeat)
        def on_heartbeat(self, **_):
            return call_result.Heartbeat(current_time=iso(time.time()))

        @on(Action.status_notification)
        def on_status(self, **_):
            return call_result.StatusNotification()

        @on(Action.meter_values)
        def on_meter(self, **_):
            return call_result.MeterValues()

        @on(Action.start_transaction)
        def on_start_transaction(self, **_):
            return call_result.StartTransaction(transaction_id=next(counter), id_tag_info={"status": "Accepted"})

        @on(Action.stop_transaction)
        def on_stop_transaction(self, **_):
            return call_result.StopTransaction()

    class Conn:
        def __init__(self, ws):
            self.ws = ws

        async def send(self, text):
            await self.ws.send_str(text)

        async def recv(self):
            msg = await self.ws.receive()
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError("closed")
            return msg.data

    async def handle(request):
        ws = web.WebSocketResponse(protocols=("ocpp1.6",))
        await ws.prepare(request)
        with contextlib.suppress(ConnectionError):
            await Bare(request.match_info["cp"], Conn(ws)).start()
        return ws

    async def main():
        app = web.Application()
        app.router.add_get("/ocpp/{cp}", handle)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        await web.TCPSite(runner, "127.0.0.1", port).start()
        ready.set()
        await asyncio.Event().wait()

    import logging

    logging.getLogger("ocpp").setLevel(logging.WARNING)
    asyncio.run(main())


def _serve_local(port: int, db_path: str, ready: multiprocessing.Event) -> None:  # type: ignore[valid-type]
    import logging

    from actors.ocpp.auth import Authenticator
    from actors.ocpp.local import LocalBackend
    from actors.ocpp.server import ListenerSettings, OcppServer
    from storage import chargers, ocpp_transactions
    from storage.db import connect

    logging.getLogger().setLevel(logging.ERROR)

    async def main():
        conn = connect(db_path)
        chargers.init(conn)
        ocpp_transactions.init(conn)
        settings = ListenerSettings(host="127.0.0.1", port=port, unknown_chargers="accept")
        backend = LocalBackend(conn)
        server = OcppServer(settings, Authenticator(conn, "accept"), backend)
        await server.start()
        backend.attach(server)
        ready.set()
        await asyncio.Event().wait()

    asyncio.run(main())


@contextlib.contextmanager
def process_server(target: Callable, *args) -> Iterator[None]:
    ready = multiprocessing.Event()
    proc = multiprocessing.Process(target=target, args=(*args, ready), daemon=True)
    proc.start()
    if not ready.wait(30):
        proc.kill()
        raise RuntimeError(f"{target.__name__} did not start")
    try:
        yield
    finally:
        proc.kill()
        proc.join(5)


@contextlib.contextmanager
def actor_gateway(port: int, data_dir: str) -> Iterator[None]:
    """The OCPP family and the harvest actor under a real root supervisor."""
    from actors.harvest.specs import harvest_child_specs
    from actors.ocpp.specs import ocpp_child_specs
    from supervisor.embedded import private_actor_system, start_root
    from supervisor.launcher import preimport_heavy_libraries
    from supervisor.logs import log_definitions
    from supervisor.spec import Heartbeat, SupervisorSpec

    preimport_heavy_libraries()
    values = {"data_dir": data_dir, "uploads": [], "ocpp_host": "127.0.0.1", "ocpp_port": port, "ocpp_unknown_chargers": "accept"}
    # the gateway's default heartbeat (supervisor.config: heartbeat_interval 1 s, heartbeat_timeout 10 s)
    spec = SupervisorSpec(children=tuple(harvest_child_specs(values) + ocpp_child_specs(values)), heartbeat=Heartbeat(1.0, 10.0))
    with private_actor_system(log_definitions(os.environ.get("BENCH_LOG_LEVEL", "ERROR"))) as asys:
        root = start_root(asys, spec)
        wait_for_running(asys, root, ("ocpp",))
        yield


def wait_for_running(asys: Any, root: Any, names: tuple[str, ...], timeout: float = 20.0) -> None:
    """Poll the root's tree until the named children run (a benchmark must not time a start-up)."""
    from supervisor.messages import GetTree, Tree

    deadline = time.monotonic() + timeout
    while True:
        reply = asys.ask(root, GetTree(), 5)
        if isinstance(reply, Tree):
            states = {r["name"]: r["state"] for r in reply.records}
            if all(states.get(name) == "running" for name in names):
                return
        if time.monotonic() > deadline:
            raise RuntimeError(f"{', '.join(names)} did not start within {timeout:g} s")
        time.sleep(0.05)


# ------------------------------------------------------------- load generator
class Client:
    def __init__(self, url: str, cp_id: str, rng: random.Random) -> None:
        self.url, self.cp_id, self.rng = url, cp_id, rng
        self.n = 0
        self.meter = 0
        self.transaction_id: int | None = None

    async def open(self, session: aiohttp.ClientSession) -> None:
        self.ws = await session.ws_connect(f"{self.url}/{self.cp_id}", protocols=("ocpp1.6",), heartbeat=None)
        await self.call("BootNotification", {"chargePointVendor": "bench", "chargePointModel": "B"})

    async def call(self, action: str, payload: dict) -> tuple[float, list]:
        self.n += 1
        unique_id = f"{self.cp_id}-{self.n}"
        started = time.perf_counter()
        await self.ws.send_str(json.dumps([2, unique_id, action, payload]))
        while True:
            msg = await self.ws.receive(timeout=REPLY_TIMEOUT)
            if msg.type != aiohttp.WSMsgType.TEXT:
                raise ConnectionError(f"{self.cp_id}: connection closed ({msg.type})")
            frame = json.loads(msg.data)
            if frame[0] == 2:  # a central-initiated call (e.g. TriggerMessage): acknowledge it
                await self.ws.send_str(json.dumps([3, frame[1], {"status": "Accepted"}]))
                continue
            if frame[1] == unique_id:
                return time.perf_counter() - started, frame

    async def next_message(self) -> float:
        """One message of the mix; returns its round-trip time in seconds."""
        now = iso(time.time())
        step = self.n % 30
        if step == 0 and self.transaction_id is None:
            elapsed, frame = await self.call("StartTransaction", {"connectorId": 1, "idTag": "BENCH", "meterStart": self.meter, "timestamp": now})
            self.transaction_id = frame[2]["transactionId"]
            return elapsed
        if step == 15 and self.transaction_id is not None:
            tx, self.transaction_id = self.transaction_id, None
            return (await self.call("StopTransaction", {"transactionId": tx, "meterStop": self.meter, "timestamp": now, "reason": "Local"}))[0]
        if step % 5 == 1:
            return (await self.call("StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Charging" if self.transaction_id else "Available", "timestamp": now}))[0]
        if step % 10 == 2:
            return (await self.call("Heartbeat", {}))[0]
        self.meter += self.rng.randint(1, 5)
        payload = {"connectorId": 1, "meterValue": [{"timestamp": now, "sampledValue": [
            {"value": str(self.meter), "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "7400.0", "measurand": "Power.Active.Import", "unit": "W"}]}]}
        if self.transaction_id is not None:
            payload["transactionId"] = self.transaction_id
        return (await self.call("MeterValues", payload))[0]


async def _clients(url: str, n: int, prefix: str) -> tuple[aiohttp.ClientSession, list[Client]]:
    session = aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0))  # the default pool stops at 100 sockets
    rng = random.Random(42)
    clients = [Client(url, f"{prefix}{i:04d}", random.Random(rng.random())) for i in range(n)]
    for i in range(0, n, 25):  # connect in waves: chargers do not all boot in the same millisecond
        await asyncio.gather(*(c.open(session) for c in clients[i:i + 25]))
    return session, clients


async def paced_load(url: str, n: int, seconds: float, prefix: str) -> list[float]:
    """Each charger sends one message per second (phases spread over the second)."""
    session, clients = await _clients(url, n, prefix)
    latencies: list[float] = []
    end = time.monotonic() + seconds

    async def run(client: Client, phase: float) -> None:
        await asyncio.sleep(phase)
        next_at = time.monotonic()
        while next_at < end:
            latencies.append(await client.next_message())
            next_at += 1.0
            await asyncio.sleep(max(0.0, next_at - time.monotonic()))

    try:
        await asyncio.gather(*(run(c, i / n) for i, c in enumerate(clients)))
    finally:
        await session.close()
    return latencies


async def closed_loop(url: str, n: int, seconds: float, prefix: str) -> float:
    """Calls per second with every charger sending its next CALL as soon as answered."""
    session, clients = await _clients(url, n, prefix)
    count = 0
    end = time.monotonic() + seconds

    async def run(client: Client) -> None:
        nonlocal count
        while time.monotonic() < end:
            await client.next_message()
            count += 1

    started = time.monotonic()
    try:
        await asyncio.gather(*(run(c) for c in clients))
    finally:
        await session.close()
    return count / (time.monotonic() - started)


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(p / 100 * (len(ordered) - 1))))]


def measure(url: str, sizes: list[int], seconds: float, throughput_chargers: int, tag: str) -> dict:
    results: dict = {}
    for n in sizes:
        lat = asyncio.run(paced_load(url, n, seconds, f"{tag}{n}-"))
        results[n] = {"p50_ms": statistics.median(lat) * 1000, "p99_ms": percentile(lat, 99) * 1000, "calls": len(lat)}
    results["throughput"] = asyncio.run(closed_loop(url, throughput_chargers, seconds, f"{tag}T-"))
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ocpp")
    parser.add_argument("--chargers", type=int, nargs="+", default=[50, 200])
    parser.add_argument("--seconds", type=float, default=20.0)
    parser.add_argument("--throughput-chargers", type=int, default=50)
    parser.add_argument("--systems", nargs="+", default=["egw-actors", "egw-local"], choices=["egw-actors", "egw-local"])
    args = parser.parse_args(argv if argv is not None else [])
    multiprocessing.set_start_method("fork", force=True)  # also when another benchmark ran first in this process

    results: dict[str, dict] = {}
    port = free_port()
    with process_server(_serve_baseline, port):
        results["baseline"] = measure(f"ws://127.0.0.1:{port}/ocpp", args.chargers, args.seconds, args.throughput_chargers, "B")
    for system in args.systems:
        with tempfile.TemporaryDirectory() as tmp:
            port = free_port()
            server = actor_gateway(port, tmp) if system == "egw-actors" else process_server(_serve_local, port, str(Path(tmp) / "egw.db"))
            with server:
                results[system] = measure(f"ws://127.0.0.1:{port}/ocpp", args.chargers, args.seconds, args.throughput_chargers, system[4])

    base = results["baseline"]
    print(f"OCPP central system, {args.seconds:g} s per figure, loopback, {os.cpu_count()} CPUs")
    print(f"{'figure':34} {'system':11} {'value':>10} {'baseline':>10} {'ratio':>7}")
    for system in args.systems:
        r = results[system]
        for n in args.chargers:
            for key in ("p50_ms", "p99_ms"):
                ratio = base[n][key] / r[n][key] if r[n][key] else float("inf")
                print(f"{f'{n} chargers @1 msg/s {key[:3]} latency ms':34} {system:11} {r[n][key]:10.2f} {base[n][key]:10.2f} {ratio:7.2f}")
        ratio = r["throughput"] / base["throughput"]
        print(f"{f'max calls/s ({args.throughput_chargers} chargers, closed loop)':34} {system:11} {r['throughput']:10.0f} {base['throughput']:10.0f} {ratio:7.2f}")
    print("latency ratio = baseline/egw, throughput ratio = egw/baseline (aims: p99 <= 20 ms at 200 chargers, throughput ratio >= 0.7)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
