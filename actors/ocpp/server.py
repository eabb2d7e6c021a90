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

Limits, and why (each a `ListenerSettings` field, from the gateway settings):

* `max_frame_bytes` (1 MiB, setting `ocpp_max_frame_bytes`): the largest text frame
  accepted. A schema-valid StopTransaction carrying 12 h of transactionData is ~174 KB,
  and a charger whose frame is refused resends it forever, so the default leaves a wide
  margin. A larger frame closes the connection with 1009 and one log line naming the
  limit; binary frames close it with 1003 (OCPP-J is text only).
* `handshake_timeout` (10 s, setting `ocpp_handshake_timeout`): a TCP connection that
  has not completed its websocket upgrade by then (nothing sent, a partial HTTP request,
  a refused handshake kept alive, a stalled TLS handshake) is closed, so half-open
  connections cannot pile up.
* `send_queue_limit` frames / `send_queue_bytes` bytes (1024 / 4 MiB) wait per connection
  for a peer that reads slowly; past either the connection is closed with 1013 "try
  again later". With the frame limit this bounds a connection's memory at a few MiB.

Warnings name the charger, so `ActorLog` rate-limits them per connection (at most 20
lines a minute of each, then a summary line with the count).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from aiohttp import WSCloseCode, WSMsgType, web

from actors.ocpp.auth import Authenticator
from supervisor.logs import ActorLog

SUBPROTOCOL = "ocpp1.6"
MAX_FRAME_BYTES = 1024 * 1024


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
    max_frame_bytes: int = MAX_FRAME_BYTES
    handshake_timeout: float = 10.0  # seconds from TCP accept to a completed websocket upgrade
    hold_frames: int = 1000  # frames held per connection while its charger actor starts (actors.ocpp.listener)
    send_queue_limit: int = 1024  # frames waiting for a slow reader, per connection
    send_queue_bytes: int = 4 * 1024 * 1024  # and their bytes

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> ListenerSettings:
        config = config or {}
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in config.items() if k in known})

    def ssl_context(self) -> ssl.SSLContext | None:
        """None for plain ws://; raises when only one of the two files is given (never a silent ws://)."""
        if not self.tls_cert and not self.tls_key:
            return None
        if not (self.tls_cert and self.tls_key):
            raise ValueError("OCPP TLS needs both tls_cert and tls_key; refusing to serve plain ws:// with only one")
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.minimum_version = ssl.TLSVersion.TLSv1_2
        context.load_cert_chain(self.tls_cert, self.tls_key)
        return context


class _Connection:
    def __init__(self, ws: web.WebSocketResponse, connection_id: int, limit: int, limit_bytes: int) -> None:
        self.ws = ws
        self.connection_id = connection_id
        self.limit, self.limit_bytes = limit, limit_bytes
        self.outgoing: asyncio.Queue[str | None] = asyncio.Queue()  # bounded by `offer`, in frames and bytes
        self.queued_bytes = 0
        self.writer: asyncio.Task | None = None

    def offer(self, text: str) -> bool:
        """Queue a frame unless that would pass the frame or byte bound."""
        if self.outgoing.qsize() >= self.limit or self.queued_bytes + len(text) > self.limit_bytes:
            return False
        self.queued_bytes += len(text)
        self.outgoing.put_nowait(text)
        return True


class _HandshakeDeadlineSite(web.TCPSite):
    """A TCPSite that hands each accepted connection to `on_accept` (to arm its deadline)
    and bounds the TLS handshake by the same timeout."""

    def __init__(self, runner: web.AppRunner, host: str, port: int, *, ssl_context: ssl.SSLContext | None,
                 timeout: float, on_accept: Callable[[Any], None]) -> None:
        super().__init__(runner, host, port, ssl_context=ssl_context)
        self._timeout, self._on_accept = timeout, on_accept

    async def start(self) -> None:
        await web.BaseSite.start(self)
        factory = self._runner.server
        assert factory is not None

        def accept() -> Any:
            handler = factory()
            self._on_accept(handler)
            return handler

        extra = {"ssl_handshake_timeout": self._timeout} if self._ssl_context is not None else {}
        self._server = await asyncio.get_running_loop().create_server(
            accept, self._host, self._port, ssl=self._ssl_context, backlog=self._backlog, **extra)
        self._bound_port = self._server.sockets[0].getsockname()[1] if self._server.sockets else self._port


class OcppServer:
    def __init__(self, settings: ListenerSettings, authenticator: Authenticator, backend: Backend, log: Any = None) -> None:
        self.settings = settings
        self.auth = authenticator
        self.backend = backend
        self.log = log or ActorLog("ocpp")
        self.connections: dict[str, _Connection] = {}
        self._ids = itertools.count(1)
        self._runner: web.AppRunner | None = None
        self._upgrading: dict[Any, asyncio.TimerHandle] = {}  # accepted, not yet upgraded -> its deadline
        self.port: int | None = None

    # ---------------------------------------------------------------- life
    async def start(self) -> int:
        app = web.Application()
        app.router.add_get("/ocpp/{charge_point_id}", self._handle)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = _HandshakeDeadlineSite(self._runner, self.settings.host, self.settings.port, ssl_context=self.settings.ssl_context(),
                                      timeout=self.settings.handshake_timeout, on_accept=self._accepted)
        await site.start()
        self.port = site.port
        self.log.info("OCPP listener up", host=self.settings.host, port=self.port, tls=self.settings.ssl_context() is not None,
                      max_frame_bytes=self.settings.max_frame_bytes, handshake_timeout=self.settings.handshake_timeout)
        return self.port

    def _accepted(self, handler: Any) -> None:
        loop = asyncio.get_running_loop()
        self._upgrading[handler] = loop.call_later(self.settings.handshake_timeout, self._handshake_expired, handler)

    def _handshake_expired(self, handler: Any) -> None:
        """Close a connection still not upgraded: it holds a socket and a parser for nothing."""
        if self._upgrading.pop(handler, None) is None:
            return
        transport = handler.transport
        if transport is None or transport.is_closing():
            return
        peer = transport.get_extra_info("peername")
        self.log.warning("websocket handshake not completed in time; connection closed",
                         peer=str(peer[0]) if peer else None, seconds=self.settings.handshake_timeout)
        handler.force_close()
        transport.close()

    async def stop(self) -> None:
        closing = [c.ws.close(code=WSCloseCode.GOING_AWAY, message=b"gateway shutting down") for c in list(self.connections.values())]
        if closing:  # all at once: one slow peer must not hold up the others' close handshakes
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(asyncio.gather(*closing, return_exceptions=True), timeout=3.0)
        for deadline in self._upgrading.values():
            deadline.cancel()
        self._upgrading.clear()
        if self._runner is not None:
            await self._runner.cleanup()

    # -------------------------------------------------------------- sending
    def send(self, charge_point_id: str, connection_id: int, text: str) -> bool:
        """Queue a frame for a charger's current connection (call on the loop thread)."""
        connection = self.connections.get(charge_point_id)
        if connection is None or connection.connection_id != connection_id:
            return False
        if not connection.offer(text):
            self.log.warning("send queue full; closing connection", charger=charge_point_id,
                             frames=connection.outgoing.qsize(), bytes=connection.queued_bytes)
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
            connection.queued_bytes -= len(text)
            try:
                await connection.ws.send_str(text)
            except (ConnectionError, RuntimeError):
                return

    # ------------------------------------------------------------ handshake
    async def _handle(self, request: web.Request) -> web.StreamResponse:
        charge_point_id = request.match_info["charge_point_id"]
        deadline = self._upgrading.get(request.protocol)
        offered = [p.strip() for p in request.headers.get("Sec-WebSocket-Protocol", "").split(",") if p.strip()]
        if SUBPROTOCOL not in offered:
            self.log.warning("handshake refused: no ocpp1.6 subprotocol", charger=charge_point_id[:48], offered=offered[:5])
            return web.Response(status=400, text="the ocpp1.6 websocket subprotocol is required\n")
        decision = self.auth.check(charge_point_id, request.headers.get("Authorization"), remote=request.remote)
        if not decision.allowed:
            self.log.warning("handshake refused", charger=charge_point_id[:48], reason=decision.reason, peer=request.remote, status=decision.http_status)
            headers = {"WWW-Authenticate": 'Basic realm="egw OCPP"'} if decision.http_status == 401 else {}
            if decision.retry_after is not None:
                headers["Retry-After"] = str(decision.retry_after)
            return web.Response(status=decision.http_status, text=decision.reason + "\n", headers=headers)
        if decision.registered:
            self.log.info("unknown charge point registered", charger=charge_point_id)
        ws = web.WebSocketResponse(protocols=(SUBPROTOCOL,), heartbeat=self.settings.ping_interval, max_msg_size=self.settings.max_frame_bytes)
        await ws.prepare(request)
        if deadline is not None and self._upgrading.pop(request.protocol, None) is deadline:
            deadline.cancel()  # upgraded in time: from now on the ping interval watches it
        connection = _Connection(ws, next(self._ids), self.settings.send_queue_limit, self.settings.send_queue_bytes)
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
            connection.outgoing.put_nowait(None)
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
                if getattr(msg.data, "code", None) == WSCloseCode.MESSAGE_TOO_BIG:  # aiohttp's WebSocketError
                    self.log.warning("frame larger than max_frame_bytes; connection closed with 1009", charger=charge_point_id,
                                     max_frame_bytes=self.settings.max_frame_bytes, setting="ocpp_max_frame_bytes")
                else:
                    self.log.warning("websocket error", charger=charge_point_id, error=repr(connection.ws.exception())[:200])
                break
