"""The OCPP websocket front-end: aiohttp at `ws://HOST:PORT/ocpp/{chargePointId}`.

It owns sockets, not protocol: the handshake checks (path, `ocpp1.6` subprotocol,
security profile 1 credentials) happen here, then text frames are handed to a
`Backend` numbered per connection, and whatever the backend wants sent goes out
through a bounded per-connection queue. Two backends exist: the listener actor's
(frames travel to one charger actor each) and `local.LocalBackend` (in-process, for
tests, benchmarks and the simulator's demo).

* A new connection for a chargePointId replaces the old one: the old socket is closed
  with 1000 "replaced by a new connection" and its late frames are ignored.
* Websocket pings every `ping_interval` s; a peer that does not answer is dropped.
* Frames larger than `max_frame_bytes` close the connection (1009), binary frames too
  (1003): OCPP-J is text only.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from actors.ocpp.auth import Authenticator
from supervisor.logs import ActorLog

SUBPROTOCOL = "ocpp1.6"


class Backend(Protocol):
    def opened(self, charge_point_id: str, connection_id: int) -> None: ...
    def frame(self, charge_point_id: str, connection_id: int, seq: int, text: str) -> None: ...
    def closed(self, charge_point_id: str, connection_id: int) -> None: ...


@dataclass(frozen=True)
class ListenerSettings:
    """The `ocpp` config keys the listener reads (defaults in brackets in the docs)."""

    host: str = "0.0.0.0"
    port: int = 9000
    unknown_chargers: str = "reject"  # or "accept" (register on first connection)
    register_as: str = "Accepted"  # registration status of auto-registered chargers
    tls_cert: str | None = None  # PEM files: both given -> wss:// (security profile 2)
    tls_key: str | None = None
    ping_interval: float = 30.0
    max_frame_bytes: int = 65536
    send_queue_limit: int = 256

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> ListenerSettings:
        config = config or {}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in config.items() if k in known})

    def ssl_context(self) -> ssl.SSLContext | None:
        if not (self.tls_cert and self.tls_key):
            return None
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


class _Connection:
    def __init__(self, ws: web.WebSocketResponse, connection_id: int, limit: int) -> None:
        self.ws = ws
        self.connection_id = connection_id
        self.outgoing: asyncio.Queue[str | None] = asyncio.Queue(limit)
        self.writer: asyncio.Task | None = None


class OcppServer:
    def __init__(self, settings: ListenerSettings, authenticator: Authenticator, backend: Backend, log: Any = None) -> None:
        self.settings = settings
        self.auth = authenticator
        self.backend = backend
        self.log = log or ActorLog("ocpp")
        self.connections: dict[str, _Connection] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self.port: int | None = None

    # ---------------------------------------------------------------- life
    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/ocpp/{charge_point_id}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.settings.host, self.settings.port, ssl_context=self.settings.ssl_context())
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        self.log.info("OCPP listener up", host=self.settings.host, port=self.port, tls=self.settings.ssl_context() is not None)
        return self.port

    async def stop(self) -> None:
        closing = [c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway shutting down") for c in list(self.connections.values())]
        if closing:  # all at once: one slow peer must not hold up the others' close handshakes
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout=3.0)
        if self._runner is not None:
            await self._runner.cleanup()

    # -------------------------------------------------------------- sending
    def send(self, charge_point_id: str, connection_id: int, text: str) -> bool:
        """Queue a frame for a charger's current connection (call on the loop thread)."""
        connection = self.connections.get(charge_point_id)
        if connection is None or connection.connection_id != connection_id:
            return False
        try:
            connection.outgoing.put_nowait(text)
        except asyncio.QueueFull:
            self.log.warning("send queue full; closing connection", charger=charge_point_id)
            self.close(charge_point_id, connection_id, WSCloseCode.TRY_AGAIN_LATER, "send queue full")
            return False
        return True

    def close(self, charge_point_id: str, connection_id: int, code: int, reason: str) -> None:
        connection = self.connections.get(charge_point_id)
        if connection is not None and connection.connection_id == connection_id:
            asyncio.ensure_future(connection.ws.close(code=code, message=reason.encode()[:120]))

    async def _write(self, connection: _Connection) -> None:
        while True:
            text = await connection.outgoing.get()
            if text is None or connection.ws.closed:
                return
            try:
                await connection.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    # ------------------------------------------------------------ handshake
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        charge_point_id = request.match_info["charge_point_id"]
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if SUBPROTOCOL not in offered:
            self.log.warning("handshake refused: no ocpp1.6 subprotocol", charger=charge_point_id[:48], offered=offered[:5])
            return web.Response(status=400, text="the ocpp1.6 websocket subprotocol is required\n")
        decision = self.auth.check(charge_point_id, request.headers.get("Authorization"))
        if not decision.allowed:
            self.log.warning("handshake refused", charger=charge_point_id[:48], reason=decision.reason, peer=request.remote)
            return web.Response(status=401, text=decision.reason + "\n", headers={"WWW-Authenticate": 'Basic realm="egw OCPP"'})
        if decision.registered:
            self.log.info("unknown charge point registered", charger=charge_point_id)
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=self.settings.ping_interval, max_msg_size=self.settings.max_frame_bytes)
        await ws.prepare(request)
        connection = _Connection(ws, next(self._ids), self.settings.send_queue_limit)
        old = self.connections.get(charge_point_id)
        self.connections[charge_point_id] = connection
        if old is not None:
            self.log.info("new connection replaces the old one", charger=charge_point_id)
            await old.ws.close(code=WSCloseCode.OK, message=b"replaced by a new connection")
        connection.writer = asyncio.create_task(self._write(connection))
        self.backend.opened(charge_point_id, connection.connection_id)
        try:
            await self._read(charge_point_id, connection)
        finally:
            if self.connections.get(charge_point_id) is connection:
                del self.connections[charge_point_id]
            connection.outgoing.put_nowait(None) if not connection.outgoing.full() else connection.writer.cancel()
            self.backend.closed(charge_point_id, connection.connection_id)
        return ws

    async def _read(self, charge_point_id: str, connection: _Connection) -> None:
        seq = 0
        async for msg in connection.ws:
            if msg.type == WSMsgType.TEXT:
                self.backend.frame(charge_point_id, connection.connection_id, seq, msg.data)
                seq += 1
            elif msg.type == WSMsgType.BINARY:
                self.log.warning("binary frame; OCPP-J is text only", charger=charge_point_id)
                await connection.ws.close(code=WSCloseCode.UNSUPPORTED_DATA, message=b"OCPP-J frames are text")
            elif msg.type == WSMsgType.ERROR:
                self.log.warning("websocket error", charger=charge_point_id, error=repr(connection.ws.exception()))
                break
