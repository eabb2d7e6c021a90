"""REST API throughput and tail latency: `/api/devices` under 16 concurrent clients.

Two figures, each next to a bare aiohttp handler that returns the same JSON document,
measured in the same run, on the same machine, with the same client:

1. the API layer alone (route table, middleware, parameter parsing, backend timeout
   guard, request counters) over an in-memory list of 12 devices;
2. the API actor in a real gateway tree (multiprocess actor system, three device
   actors polling the inverter simulator over Modbus TCP), which asks the root
   supervisor for the tree (at most every 0.1 s, concurrent requests sharing one
   ask): what an installer's dashboard really gets.

Servers run in their own processes so the client never competes with them for its
event loop. Runs alternate and the medians are reported, so background load hits
both sides alike.

    python -m bench api            (or: python -m bench.api [seconds])
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing
import statistics
import sys
import time
from typing import Any

CLIENTS = 16
DURATION_S = 3.0
WARMUP_S = 0.5
DEVICES = 12


def device_list() -> list[dict[str, Any]]:
    values = {"ac_power_w": 4321.5, "ac_energy_wh": 12345678, "dc_power_w": 4500.25, "ac_voltage_an_v": 231.2, "ac_current_a": 18.7,
              "grid_frequency_hz": 50.01, "temperature_c": 41.5, "status": "MPPT", "ac_power_factor": 0.99, "ac_reactive_power_var": 120.0}
    return [
        {"id": f"inv{i}", "profile": "sunspec", "connection": {"host": "192.168.1.50", "port": 502, "unit_id": i + 1}, "state": "online", "online": True,
         "serial": f"SN{i:06d}", "last_poll": "2026-11-21T10:00:00.000Z", "values": dict(values), "polls": 86400, "errors": 3, "gaps": 1,
         "poll_latency_ms": 14.2, "last_error": None, "restarts": 0}
        for i in range(DEVICES)
    ]


class BenchBackend:
    """Just enough of the ApiBackend Protocol for `/api/devices` (answers from memory)."""

    def __init__(self) -> None:
        self.items = device_list()

    async def devices(self) -> list[dict[str, Any]]:
        return self.items


def _serve(kind: str, ready: Any, data: dict[str, Any] | None = None) -> None:
    from aiohttp import web

    if kind == "layer":
        from actors.api.app import build_app

        app = build_app(BenchBackend(), token="x" * 43, version="bench")  # type: ignore[arg-type]
    else:
        data = data or {"devices": device_list()}

        async def devices(request: web.Request) -> web.Response:
            return web.json_response(data)

        app = web.Application()
        app.router.add_get("/api/devices", devices)

    async def main() -> None:
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        ready.send(runner.addresses[0][1])
        await asyncio.Event().wait()

    asyncio.run(main())


async def _load(port: int, duration: float) -> tuple[int, list[float]]:
    import aiohttp

    url = f"http://127.0.0.1:{port}/api/devices"
    latencies: list[float] = []
    connector = aiohttp.TCPConnector(limit=CLIENTS)
    async with aiohttp.ClientSession(connector=connector) as session:
        async def client(until: float, record: bool) -> None:
            while time.perf_counter() < until:
                started = time.perf_counter()
                async with session.get(url) as response:
                    await response.read()
                    if response.status != 200:
                        raise RuntimeError(f"{url}: HTTP {response.status}")
                if record:
                    latencies.append(time.perf_counter() - started)

        warm = time.perf_counter() + WARMUP_S
        await asyncio.gather(*(client(warm, False) for _ in range(CLIENTS)))
        end = time.perf_counter() + duration
        await asyncio.gather(*(client(end, True) for _ in range(CLIENTS)))
    return len(latencies), latencies


def measure(kind: str, duration: float, data: dict[str, Any] | None = None) -> dict[str, float]:
    """Serve `kind` ("bare" or "layer") in a fresh process and load it."""
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    server = context.Process(target=_serve, args=(kind, sender, data), daemon=True)
    server.start()
    try:
        if not receiver.poll(15):
            raise RuntimeError(f"{kind} server did not start")
        return measure_port(receiver.recv(), duration)
    finally:
        server.kill()
        server.join(5)


def measure_port(port: int, duration: float) -> dict[str, float]:
    count, latencies = asyncio.run(_load(port, duration))
    latencies.sort()
    return {
        "rps": count / duration,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "requests": count,
    }


ROUNDS = 3


class Gateway:
    """A gateway subtree in a multiprocess actor system: harvest, 3 devices on the simulator, the API."""

    def __enter__(self) -> Gateway:
        import json
        import tempfile
        import urllib.request

        from actors.api.actor import api_child_spec
        from actors.device.specs import devices_part
        from actors.harvest.specs import harvest_child_specs
        from simulators.inverter import InverterSimulator
        from supervisor.embedded import free_port, private_actor_system, start_root
        from supervisor.logs import log_definitions
        from supervisor.spec import SupervisorSpec

        self.tmp = tempfile.TemporaryDirectory(prefix="egw-bench-api-")
        self.sim = InverterSimulator("huawei_sun2000", units=(1, 2, 3)).start()
        self.port = free_port()
        devices = [{"id": f"inv{u}", "profile": "huawei_sun2000", "host": "127.0.0.1", "port": self.sim.port, "unit_id": u, "poll_interval": 1.0} for u in (1, 2, 3)]
        config = {"data_dir": self.tmp.name, "api_host": "127.0.0.1", "api_port": self.port, "devices": devices, "uploads": []}
        spec = SupervisorSpec(children=(*harvest_child_specs(config), *devices_part(config), api_child_spec(config)))
        self.resources = contextlib.ExitStack()
        start_root(self.resources.enter_context(private_actor_system(log_definitions("ERROR"))), spec)
        deadline = time.monotonic() + 30
        while True:
            try:
                body = json.load(urllib.request.urlopen(f"http://127.0.0.1:{self.port}/api/devices", timeout=1))
                if len(body["devices"]) == 3 and all(d["online"] for d in body["devices"]):
                    self.document = body
                    return self
            except OSError:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("the bench gateway did not come up with 3 online devices")
            time.sleep(0.1)

    def __exit__(self, *exc: object) -> None:
        self.resources.close()
        self.sim.stop()
        self.tmp.cleanup()


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def _report(title: str, ours: dict[str, float], bare: dict[str, float]) -> None:
    print(title)
    print(f"{'':24}{'egw API':>12}{'bare aiohttp':>14}{'ratio':>8}")
    print(f"{'requests/s':24}{ours['rps']:12.0f}{bare['rps']:14.0f}{ours['rps'] / bare['rps']:8.2f}")
    print(f"{'p50 latency ms':24}{ours['p50_ms']:12.2f}{bare['p50_ms']:14.2f}{ours['p50_ms'] / bare['p50_ms']:8.2f}")
    print(f"{'p99 latency ms':24}{ours['p99_ms']:12.2f}{bare['p99_ms']:14.2f}{ours['p99_ms'] / bare['p99_ms']:8.2f}")


def main(argv: list[str] | None = None) -> None:
    """Alternate baseline and API runs and report medians, so background load hits both alike."""
    parser = argparse.ArgumentParser(prog="python -m bench.api")
    parser.add_argument("--seconds", type=float, default=DURATION_S, help=f"length of each run (default {DURATION_S:g})")
    parser.add_argument("--rounds", type=int, default=ROUNDS, help=f"alternating runs of each side (default {ROUNDS})")
    args = parser.parse_args(argv if argv is not None else [])
    duration, rounds = args.seconds, args.rounds
    bare_runs, layer_runs = [], []
    for _ in range(rounds):
        bare_runs.append(measure("bare", duration))
        layer_runs.append(measure("layer", duration))
    _report(f"1. API layer: /api/devices ({DEVICES} devices, in memory), {CLIENTS} concurrent clients, median of {rounds} alternating runs of {duration:g} s",
            _median_run(layer_runs), _median_run(bare_runs))

    with Gateway() as gateway:
        bare_runs, actor_runs = [], []
        for _ in range(rounds):
            bare_runs.append(measure("bare", duration, gateway.document))
            actor_runs.append(measure_port(gateway.port, duration))
    print()
    _report(f"2. API actor in a gateway tree: /api/devices (3 devices polled over Modbus TCP), {CLIENTS} concurrent clients",
            _median_run(actor_runs), _median_run(bare_runs))
    print("(requests/s ratio: higher is better, 1.0 = no overhead; latency ratios: lower is better)")


if __name__ == "__main__":
    main(sys.argv[1:])
