"""The ingest receiver's HTTP face (aiohttp), with fault injection for tests and site checks.

    POST /v1/batches     body: a compact JWS (application/jose)  -> 200 {"acked": {stream: seq}, ...}
    POST /v1/gateways    body: a gateway's PEM public key        -> 201 {"kid": serial}
    GET  /v1/status      what was received (items, batches, duplicates, chain breaks, acks)
    POST /v1/faults      {"mode": M, "count": n, "retry_after": s, "delay": s}: the next n
                         batch requests misbehave; modes:
        refuse     the connection is closed without any response
        error      500 Internal Server Error, nothing stored
        throttle   429 Too Many Requests with Retry-After, nothing stored
        slow       waits `delay` seconds, then processes normally
        truncate   stores the batch, then sends a response cut short mid-body
        lose_ack   stores the batch, then closes the connection: the ack is lost
        garbage    200 with a body that is not JSON, nothing stored
        reject     422 with a reason, nothing stored (a permanent rejection)

Permanent problems with the batch itself answer 400/401/409/413 with a JSON reason.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from aiohttp import web

from simulators.ingest.store import IngestStore, BatchRejectedError

log = logging.getLogger("ingest")
MAX_BATCH_BYTES = 16 * 1024 * 1024
FAULT_MODES = {"refuse", "error", "throttle", "slow", "truncate", "lose_ack", "garbage", "reject"}


@dataclass(frozen=True)
class Fault:
    mode: str
    retry_after: float = 1.0
    delay: float = 5.0


class IngestApp:
    """The receiver: one store, a queue of injected faults, counters of what happened."""

    def __init__(self, db_path: str | Path) -> None:
        self.store = IngestStore(db_path)
        self.faults: deque[Fault] = deque(maxlen=10_000)
        self.requests = 0
        self.faults_applied: dict[str, int] = {}

    def inject(self, mode: str, count: int = 1, retry_after: float = 1.0, delay: float = 5.0) -> None:
        if mode not in FAULT_MODES:
            raise ValueError(f"unknown fault mode {mode!r}; known: {sorted(FAULT_MODES)}")
        for _ in range(count):
            self.faults.append(Fault(mode, retry_after, delay))

    def web_app(self) -> web.Application:
        app = web.Application(client_max_size=MAX_BATCH_BYTES)
        app.router.add_post("/v1/batches", self.post_batch)
        app.router.add_post("/v1/gateways", self.post_gateway)
        app.router.add_get("/v1/status", self.get_status)
        app.router.add_post("/v1/faults", self.post_faults)
        app.on_cleanup.append(self._close)
        return app

    async def _close(self, _app: web.Application) -> None:
        self.store.close()

    async def post_batch(self, request: web.Request) -> web.StreamResponse:
        self.requests += 1
        fault = self.faults.popleft() if self.faults else None
        if fault is not None:
            self.faults_applied[fault.mode] = self.faults_applied.get(fault.mode, 0) + 1
            log.info("fault injected: %s", fault.mode)
            if fault.mode == "refuse":
                return _drop_connection(request)
            if fault.mode == "error":
                return web.json_response({"error": "injected internal error"}, status=500)
            if fault.mode == "throttle":
                return web.json_response({"error": "slow down"}, status=429, headers={"Retry-After": f"{fault.retry_after:g}"})
            if fault.mode == "garbage":
                return web.Response(status=200, body=b"<html>captive portal</html>", content_type="text/html")
            if fault.mode == "reject":
                return web.json_response({"error": "injected permanent rejection"}, status=422)
            if fault.mode == "slow":
                await asyncio.sleep(fault.delay)
        body = await request.read()
        try:
            jws = body.decode("ascii").strip()
        except UnicodeDecodeError:
            return web.json_response({"error": "body must be a compact JWS (ASCII)"}, status=400)
        try:
            result = self.store.ingest(jws)
        except BatchRejectedError as exc:
            log.warning("batch rejected (%s): %s", exc.status, exc.reason)
            return web.json_response({"error": exc.reason}, status=exc.status)
        text = json.dumps(result.as_json()).encode()
        if fault is not None and fault.mode == "lose_ack":
            return _drop_connection(request)
        if fault is not None and fault.mode == "truncate":
            response = web.StreamResponse(status=200, headers={"Content-Type": "application/json", "Content-Length": str(len(text))})
            await response.prepare(request)
            await response.write(text[: len(text) // 2])
            request.transport.close()
            return response
        return web.Response(body=text, content_type="application/json")

    async def post_gateway(self, request: web.Request) -> web.Response:
        try:
            kid = self.store.register(await request.read())
        except ValueError as exc:
            return web.json_response({"error": f"not a P-256 public key: {exc}"}, status=400)
        return web.json_response({"kid": kid}, status=201)

    async def get_status(self, _request: web.Request) -> web.Response:
        summary = self.store.summary() | {"requests": self.requests, "faults_applied": self.faults_applied, "faults_pending": len(self.faults)}
        return web.json_response(summary)

    async def post_faults(self, request: web.Request) -> web.Response:
        try:
            spec: Any = await request.json()
            self.inject(spec["mode"], int(spec.get("count", 1)), float(spec.get("retry_after", 1.0)), float(spec.get("delay", 5.0)))
        except (ValueError, KeyError, TypeError) as exc:
            return web.json_response({"error": f"bad fault spec: {exc}"}, status=400)
        return web.json_response({"pending": len(self.faults)})


def _drop_connection(request: web.Request) -> web.Response:
    """Close the socket without answering (the response object is never written)."""
    if request.transport is not None:
        request.transport.abort()
    return web.Response(status=204)


class IngestServerThread:
    """The receiver on 127.0.0.1 in a background thread with its own event loop (tests, demo, bench).

    Store access from other threads goes through `call()`, which runs on the loop thread
    (SQLite connections stay in the thread that made them).
    """

    def __init__(self, db_path: str | Path, port: int = 0, host: str = "127.0.0.1") -> None:
        self.db_path, self.port, self.host = db_path, port, host
        self.loop = asyncio.new_event_loop()
        self.app: IngestApp | None = None
        self._runner: web.AppRunner | None = None
        self._thread = threading.Thread(target=self.loop.run_forever, name="ingest", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/v1/batches"

    def start(self) -> IngestServerThread:
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(10)
        return self

    async def _start(self) -> None:
        self.app = IngestApp(self.db_path)
        self._runner = web.AppRunner(self.app.web_app(), access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = self._runner.addresses[0][1]

    def call(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        async def run() -> Any:
            return fn(*args, **kwargs)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(30)

    def stop(self) -> None:
        if self._runner is not None:
            asyncio.run_coroutine_threadsafe(self._runner.cleanup(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()

    def __enter__(self) -> IngestServerThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


async def serve(db_path: str | Path, port: int, host: str = "127.0.0.1", keys: tuple[Path, ...] = ()) -> None:
    """Run the receiver until cancelled; prints one JSON line with the URL once listening."""
    app = IngestApp(db_path)
    for key in keys:
        app.store.register(Path(key).read_bytes())
    runner = web.AppRunner(app.web_app(), access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, host, port)
    await site.start()
    bound = runner.addresses[0][1]
    print(json.dumps({"listening": f"http://{host}:{bound}/v1/batches", "port": bound}), flush=True)
    try:
        await asyncio.Event().wait()
    finally:
        await runner.cleanup()
