"""Benchmark: a request through the BLE tunnel vs. the same request over loopback HTTP.

Run: .venv/bin/python -m tests.ble.bench_tunnel

The tunnel path is the real one minus the radio: the phone side's D-Bus calls to the
bless GATT objects (via a fake BlueZ on a private dbus-daemon), reassembly, dispatch
over loopback HTTP to the API, paging, notification. The baseline, measured in the
same run, is the plain HTTP request the tunnel itself makes, so the ratio is the
tunnel's own overhead (radio time excluded).
"""

from __future__ import annotations

import asyncio
import time

import aiohttp
from aiohttp import web

from actors.ble.dispatch import HttpDispatcher
from actors.ble.server import REQUEST_UUID, RESPONSE_UUID, BleServer
from actors.ble.setup_code import SetupCodeGuard, generate_code
from actors.ble.tunnel import Limits, Tunnel
from tests.ble.conftest import SmallApi, parse_page
from tests.ble.dbus_daemon import PrivateDbusDaemon
from tests.ble.fake_bluez import Central, FakeBlueZ

ROUNDS = 200


async def main() -> None:
    daemon = PrivateDbusDaemon()
    bluez = FakeBlueZ(daemon.address)
    await bluez.start()
    api = SmallApi()
    runner = web.AppRunner(api.app())
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    api.port = runner.addresses[0][1]
    dispatcher = HttpDispatcher(api.port)
    server = BleServer("egw-bench", Tunnel(dispatcher, lambda: True, lambda: None, SetupCodeGuard(generate_code()), Limits(page_size=182), endpoints=frozenset({("GET", "/api/echo"), ("GET", "/api/big")})), bus_address=daemon.address)
    await server.start()
    await bluez.wait_for(lambda: bluez.applications)
    central = Central(bluez, next(iter(bluez.applications.values())))
    await central.start_notify(RESPONSE_UUID)

    async def tunnel_get(path: bytes, offset: int = 0):
        raw = b"GET " + path + b" EGWTTP/1.1\r\nOffset: %d\r\n\r\n" % offset
        for i in range(0, len(raw), 20):
            await central.write(REQUEST_UUID, raw[i : i + 20])
        return parse_page(await central.notifications.get())

    async with aiohttp.ClientSession() as session:
        async def http_get(path: str) -> bytes:
            async with session.get(f"http://127.0.0.1:{api.port}{path}") as reply:
                return await reply.read()

        for _ in range(20):  # warm-up
            await http_get("/api/echo")
            await tunnel_get(b"/api/echo")

        start = time.perf_counter()
        for _ in range(ROUNDS):
            await http_get("/api/echo")
        http_ms = (time.perf_counter() - start) / ROUNDS * 1000

        start = time.perf_counter()
        for _ in range(ROUNDS):
            await tunnel_get(b"/api/echo")
        tunnel_ms = (time.perf_counter() - start) / ROUNDS * 1000

        start = time.perf_counter()
        for _ in range(ROUNDS // 10):
            await http_get("/api/big")
        http_big_ms = (time.perf_counter() - start) / (ROUNDS // 10) * 1000

        start = time.perf_counter()
        pages = 0
        for _ in range(ROUNDS // 10):
            got, total = 0, None
            while total is None or got < total:
                page = await tunnel_get(b"/api/big", got)
                total = int(page.headers["content-length"])
                got += len(page.body)
                pages += 1
        tunnel_big_ms = (time.perf_counter() - start) / (ROUNDS // 10) * 1000

    print(f"small GET  over loopback HTTP   {http_ms:8.3f} ms  (baseline)")
    print(f"small GET  through BLE tunnel   {tunnel_ms:8.3f} ms  ratio {tunnel_ms / http_ms:6.1f}x  (2 writes + 1 notification on D-Bus)")
    print(f"{len(api.big)} B GET over loopback HTTP {http_big_ms:8.3f} ms  (baseline)")
    print(f"{len(api.big)} B GET through BLE tunnel {tunnel_big_ms:8.3f} ms  ratio {tunnel_big_ms / http_big_ms:6.1f}x  ({pages // (ROUNDS // 10)} pages of 182 B, one execution)")

    await server.stop()
    await dispatcher.close()
    await runner.cleanup()
    await bluez.stop()
    daemon.stop()


if __name__ == "__main__":
    asyncio.run(main())
