"""REST API throughput and tail latency: `/api/devices` under 16 concurrent clients.

Measured against a bare aiohttp handler that returns the same JSON document, in the
same run, on the same machine, with the same client: the ratio is what the gateway's
API layer costs (route table, middleware, parameter parsing, backend timeout guard,
request counters). Each server runs in its own process so the client never competes
with it for the event loop; both serve a realistic device list (12 devices with the
values a SunSpec inverter publishes).

    python -m bench api            (or: python -m bench.api [seconds])
"""

from __future__ import annotations

import asyncio
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


def _serve(kind: str, ready: Any) -> None:
    from aiohttp import web

    if kind == "gateway":
        from actors.api.app import build_app

        app = build_app(BenchBackend(), token="x" * 43, version="bench")  # type: ignore[arg-type]
    else:
        data = {"devices": device_list()}

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


def measure(kind: str, duration: float) -> dict[str, float]:
    context = multiprocessing.get_context("fork")
    receiver, sender = context.Pipe(duplex=False)
    server = context.Process(target=_serve, args=(kind, sender), daemon=True)
    server.start()
    try:
        if not receiver.poll(15):
            raise RuntimeError(f"{kind} server did not start")
        port = receiver.recv()
        count, latencies = asyncio.run(_load(port, duration))
    finally:
        server.kill()
        server.join(5)
    latencies.sort()
    return {
        "rps": count / duration,
        "p50_ms": statistics.median(latencies) * 1000,
        "p99_ms": latencies[min(len(latencies) - 1, int(len(latencies) * 0.99))] * 1000,
        "requests": count,
    }


ROUNDS = 3


def _median_run(runs: list[dict[str, float]]) -> dict[str, float]:
    return {key: statistics.median(run[key] for run in runs) for key in runs[0]}


def main(duration: float = DURATION_S, rounds: int = ROUNDS) -> None:
    """Alternate baseline and gateway runs and report medians, so background load hits both alike."""
    bare_runs, gateway_runs = [], []
    for _ in range(rounds):
        bare_runs.append(measure("bare", duration))
        gateway_runs.append(measure("gateway", duration))
    baseline, gateway = _median_run(bare_runs), _median_run(gateway_runs)
    print(f"/api/devices ({DEVICES} devices), {CLIENTS} concurrent clients, median of {rounds} alternating runs of {duration:g} s, server in its own process")
    print(f"{'':24}{'egw API':>12}{'bare aiohttp':>14}{'ratio':>8}")
    print(f"{'requests/s':24}{gateway['rps']:12.0f}{baseline['rps']:14.0f}{gateway['rps'] / baseline['rps']:8.2f}")
    print(f"{'p50 latency ms':24}{gateway['p50_ms']:12.2f}{baseline['p50_ms']:14.2f}{gateway['p50_ms'] / baseline['p50_ms']:8.2f}")
    print(f"{'p99 latency ms':24}{gateway['p99_ms']:12.2f}{baseline['p99_ms']:14.2f}{gateway['p99_ms'] / baseline['p99_ms']:8.2f}")
    print("(requests/s ratio: higher is better, 1.0 = no overhead; latency ratios: lower is better)")


if __name__ == "__main__":
    main(float(sys.argv[1]) if len(sys.argv) > 1 else DURATION_S)
