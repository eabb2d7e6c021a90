"""`GET /api/live` (websocket) and `GET /api/live/sse` (Server-Sent Events) over a `Hub`.

Websocket protocol (JSON text messages):

    client -> {"op": "subscribe", "topic": "transaction/17", "resume_from": 42, "epoch": "ab12cd34"}
              ("resume_from": the first sequence number wanted; "epoch" from earlier messages)
    client -> {"op": "unsubscribe", "topic": "transaction/17"}
    server -> {"type": "subscribed", "topic": ..., "seq": <last seq>, "epoch": ..., "replayed": n}
    server -> {"type": "event", "topic": ..., "seq": n, "epoch": ..., "kind": ..., "time": ..., "data": {...}}
    server -> {"type": "resync", "topic": ..., "reason": ..., "rest": "/api/transactions/17"}
    server -> {"type": "lagged", "dropped": n, "resume_from": {topic: seq}, "disconnect": bool}
    server -> {"type": "error", "error": code, "message": ..., "topic": ...}

`?topic=` (repeatable) subscribes at connect time. A connection without a valid token,
or a refused subscription, gets an error message and is closed (4401 no/unknown token,
4403 token not valid for the topic); a malformed message only gets an error message.
A subscriber that never catches up is closed with 4008 after its final `lagged`.

SSE: `GET /api/live/sse?topic=T[&resume_from=N]` streams one topic; each event's id is
`<epoch>:<seq>`, so a reconnecting EventSource resumes exactly via `Last-Event-ID`.
A lagging SSE client is sent a `lagged` event and disconnected (it reconnects and
resumes). Refusals are 401/403 JSON, a bad topic 400, a full feed 503.

Why one module: the websocket and SSE routes are two framings of one subscription protocol
(resume, resync, lag) over the same hub, and must stay identical in what they send; one
module keeps them side by side.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import WSMsgType, web

from actors.live.hub import Frame, Hub, HubFullError, Subscriber, control
from actors.live.tokens import LiveAuthError, bearer
from actors.live.topics import Topic, TopicError, parse_topic
from supervisor.logs import ActorLog

Authorize = Callable[[str | None, Topic], Awaitable[None]]

SEND_TIMEOUT = 10.0  # a client that cannot take one message in this long is dropped
KEEPALIVE = 15.0  # SSE comment / websocket ping interval, so dead peers are noticed
MAX_CLIENT_MESSAGE = 4096

HUB_KEY = web.AppKey("egw_live_hub", Hub)
log = ActorLog("live")


class _LimitedLog:
    """At most `per_minute` lines a minute, then a count: clients that hammer the feed
    without a token, or crowds of slow ones, must not be able to fill the gateway's log."""

    def __init__(self, per_minute: int = 30) -> None:
        self.per_minute = per_minute
        self.window, self.logged, self.suppressed = time.monotonic(), 0, 0

    def __call__(self, msg: str, **fields: Any) -> None:
        now = time.monotonic()
        if now - self.window >= 60.0:
            if self.suppressed:
                log.warning("live feed refusals and drops not logged individually", count=self.suppressed)
            self.window, self.logged, self.suppressed = now, 0, 0
        if self.logged < self.per_minute:
            self.logged += 1
            log.info(msg, **fields)
        else:
            self.suppressed += 1


_TOPIC = {"type": "string", "pattern": "^(gateway|transaction/[^/]+|charger/[^/]+|device/[^/]+|loadpoint/[^/]+)$"}
_LIVE_ERRORS = {
    "401": {"description": "no or unknown token", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
    "403": {"description": "the token does not open this topic", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
}
def _data(required: list[str], **properties: Any) -> dict[str, Any]:
    return {"type": "object", "required": required, "properties": properties}


_NUM = {"type": ["number", "null"]}
_STR = {"type": ["string", "null"]}
_INT = {"type": ["integer", "null"]}
_SESSION = {"charger": {"type": "string"}, "connector": {"type": "integer"}, "transaction_id": {"type": "integer"}}
_CHILD = {"child": {"type": "string"}}

LIVE_EVENT_DATA: dict[str, dict[str, Any]] = {
    # actors/ocpp/live_events.py (the charger actor)
    "meter_values": _data(["charger", "connector", "transaction_id", "energy_wh", "power_w", "session_energy_wh", "soc_percent", "current_a"],
                          **_SESSION, energy_wh=_NUM, power_w=_NUM, session_energy_wh=_NUM, soc_percent=_NUM, current_a=_NUM,
                          current_phases_a={"type": "object", "additionalProperties": {"type": "number"}}),
    "connector_status": _data(["charger", "connector", "status", "error_code"], charger={"type": "string"}, connector={"type": "integer"},
                              status={"type": "string"}, error_code=_STR),
    "status": _data(["charger", "connector", "status", "error_code", "transaction_id"], **_SESSION, status={"type": "string"}, error_code=_STR),
    "started": _data(["charger", "connector", "transaction_id", "id_tag", "meter_start_wh"], **_SESSION, id_tag={"type": "string"}, meter_start_wh={"type": "number"}),
    "stopped": _data(["charger", "connector", "transaction_id", "meter_stop_wh", "energy_wh", "reason"], **_SESSION, meter_stop_wh={"type": "number"},
                     energy_wh=_NUM, reason=_STR),
    # actors/harvest/live_events.py (the harvest actor, after each committed batch)
    "reading": _data(["values", "flags", "outbox_seq"], values={"type": "object"}, flags={"type": "array", "items": {"type": "string"}}, outbox_seq=_INT),
    "gap": _data(["start", "end", "reason", "missed_polls"], start=_NUM, end=_NUM, reason=_STR, missed_polls=_INT),
    "device_event": _data(["kind", "detail"], kind={"type": "string"}, detail={"type": "object"}),
    # actors/energy/actor.py (the energy manager, every decision): the loadpoint as GET /api/loadpoints/{id} shows it
    "loadpoint": _data(["id", "mode", "decision"], id={"type": "string"}, mode={"type": "string"}, decision={"type": ["object", "null"]}),
    # the gateway topic (the supervisors and the harvest actor)
    "restarted": _data(["child", "pid", "restarts"], **_CHILD, pid=_INT, restarts={"type": "integer", "minimum": 0}),
    "child_exited": _data(["child", "reason", "restart"], **_CHILD, reason=_STR, restart=_STR),
    "child_failed": _data(["child", "reason", "retry_in_s"], **_CHILD, reason=_STR, retry_in_s=_NUM),
    "escalated": _data(["supervisor", "reason"], supervisor={"type": "string"}, reason=_STR),
    "outbox_state": _data(["state", "outbox_bytes", "budget_bytes", "reason"], state={"type": "string"}, outbox_bytes=_INT, budget_bytes=_INT, reason=_STR),
}
LIVE_EVENT_DATA["transaction_started"] = LIVE_EVENT_DATA["started"]  # the same data on the charger's topic
LIVE_EVENT_DATA["transaction_stopped"] = LIVE_EVENT_DATA["stopped"]
"""`data` of each event kind the gateway publishes, as its builders fill it. A kind not listed
(a charger's connected / disconnected, a child_hung) still is an event with an object `data`."""

_EPOCH = {"type": "string", "description": "the feed instance; sequence numbers compare only within one epoch"}
LIVE_COMPONENTS: dict[str, dict[str, Any]] = {
    "LiveEvent": {
        "type": "object",
        "required": ["type", "topic", "seq", "epoch", "kind", "time", "emitted", "data"],
        "description": "one event of a topic (actors/live/hub.py Hub.publish); `data` is as LIVE_EVENT_DATA lists for its `kind`",
        "properties": {"type": {"const": "event"}, "topic": _TOPIC, "seq": {"type": "integer", "minimum": 1}, "epoch": _EPOCH,
                       "kind": {"type": "string"}, "time": _NUM, "emitted": _NUM, "data": {"type": "object"}},
        "allOf": [{"if": {"properties": {"kind": {"const": kind}}}, "then": {"properties": {"data": schema}}} for kind, schema in LIVE_EVENT_DATA.items()],
    },
    "LiveControl": {
        "type": "object",
        "required": ["type", "epoch"],
        "description": "a message that is not an event (actors/live/hub.py control): subscribed (`seq` the topic's last, `replayed`), unsubscribed, "
                       "resync (`reason`, `rest` the resource to re-read), lagged (`dropped`, `resume_from` per topic, `disconnect`), error",
        "properties": {"type": {"enum": ["subscribed", "unsubscribed", "resync", "lagged", "error"]}, "epoch": _EPOCH, "topic": _TOPIC,
                       "seq": {"type": "integer", "minimum": 0}, "replayed": {"type": "integer", "minimum": 0}, "reason": {"type": "string"},
                       "rest": {"type": ["string", "null"]}, "dropped": {"type": "integer", "minimum": 0},
                       "resume_from": {"type": "object", "additionalProperties": {"type": "integer", "minimum": 0}}, "disconnect": {"type": "boolean"},
                       "error": {"type": "string"}, "message": {"type": "string"}, "status": {"type": "integer"}},
        "allOf": [
            {"if": {"properties": {"type": {"const": "subscribed"}}}, "then": {"required": ["topic", "seq", "replayed"]}},
            {"if": {"properties": {"type": {"const": "resync"}}}, "then": {"required": ["topic", "reason"]}},
            {"if": {"properties": {"type": {"const": "lagged"}}}, "then": {"required": ["dropped", "resume_from", "disconnect"]}},
            {"if": {"properties": {"type": {"const": "error"}}}, "then": {"required": ["error", "message"]}},
        ],
    },
    "LiveMessage": {"description": "every JSON message of the live feed: a websocket text message, or an SSE event's `data` line",
                    "oneOf": [{"$ref": "#/components/schemas/LiveEvent"}, {"$ref": "#/components/schemas/LiveControl"}]},
}
"""The live feed's messages, joined to the OpenAPI document's components by the API actor."""

_MESSAGES = {"$ref": "#/components/schemas/LiveMessage"}

LIVE_OPENAPI_PATHS: dict[str, dict] = {
    "/api/live": {
        "get": {
            "operationId": "live_websocket",
            "summary": "Live feed over a websocket (JSON messages)",
            "description": "Upgrade to a websocket, then send `{\"op\": \"subscribe\", \"topic\": ..., \"resume_from\": seq}` or "
                           "`{\"op\": \"unsubscribe\", \"topic\": ...}`. Topics: `gateway`, `transaction/{id}`, `charger/{id}`, "
                           "`device/{id}`, `loadpoint/{id}`. Every event carries the topic's sequence number; `lagged` and `resync` messages say "
                           "when a client missed events. The API token (bearer header or `token` query parameter) opens every "
                           "topic; a remote start's `live_token` opens only its session. See actors/live/PROTOCOL.md.",
            "security": [{"bearerToken": []}],
            "parameters": [{"name": "token", "in": "query", "required": False, "schema": {"type": "string"}}],
            "responses": {
                "101": {"description": "switching to the websocket protocol; every server message is a LiveMessage (JSON text)", "x-live-message": _MESSAGES},
                "400": {"description": "not a websocket upgrade request", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                **_LIVE_ERRORS,
                "503": {"description": "subscriber limit reached", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        }
    },
    "/api/live/sse": {
        "get": {
            "operationId": "live_sse",
            "summary": "Live feed as Server-Sent Events",
            "description": "One topic per stream; `Last-Event-ID` (`<epoch>:<seq>`) or `resume_from` resumes after a reconnect.",
            "security": [{"bearerToken": []}],
            "parameters": [
                {"name": "topic", "in": "query", "required": True, "schema": _TOPIC},
                {"name": "resume_from", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}},
                {"name": "token", "in": "query", "required": False, "schema": {"type": "string"}},
            ],
            "responses": {
                "200": {"description": "an event stream: each event's `event` is its kind or control type, `data` one LiveMessage (JSON)",
                        "content": {"text/event-stream": {"schema": {"type": "string"}, "x-live-message": _MESSAGES}}},
                "400": {"description": "bad topic or resume_from", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
                **_LIVE_ERRORS,
                "503": {"description": "subscriber limit reached", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}},
            },
        }
    },
}


def add_live_routes(app: web.Application, hub: Hub, authorize: Authorize, *, send_timeout: float = SEND_TIMEOUT,
                    keepalive: float = KEEPALIVE) -> None:
    """Register the live endpoints on `app` (before it is started)."""
    app[HUB_KEY] = hub
    feed = _Feed(hub, authorize, send_timeout, keepalive)
    app.router.add_get("/api/live", feed.websocket, name="live_websocket")
    app.router.add_get("/api/live/sse", feed.sse, name="live_sse")

    async def close_subscribers(app: web.Application) -> None:
        hub.close_all("shutdown")

    app.on_shutdown.append(close_subscribers)


def _json_error(status: int, code: str, message: str, headers: dict[str, str] | None = None, field: str | None = None) -> web.Response:
    """The REST API's error shape: `error`, then `field` (for bad input) so it is read first, then `message`."""
    body = {"error": code, **({"field": field} if field else {}), "message": message}
    return web.json_response(body, status=status, headers=headers)


def _int_param(value: str | None, name: str) -> int | None:
    if value is None or value == "":
        return None
    try:
        number = int(value)
    except ValueError:
        raise TopicError(f"{name} must be an integer sequence number, not {value[:40]!r}") from None
    if not 0 <= number < 2**53:
        raise TopicError(f"{name} out of range")
    return number


def parse_last_event_id(value: str | None) -> tuple[int | None, str | None]:
    """`(resume_from, epoch)` from an SSE Last-Event-ID `<epoch>:<seq>` (or a bare seq)."""
    if not value:
        return None, None
    epoch, sep, seq = value.strip().rpartition(":")
    last = _int_param(seq, "Last-Event-ID")
    return (None if last is None else last + 1), (epoch if sep else None)


class _Feed:
    def __init__(self, hub: Hub, authorize: Authorize, send_timeout: float, keepalive: float) -> None:
        self.hub, self.authorize = hub, authorize
        self.send_timeout, self.keepalive = send_timeout, keepalive
        self.refused = self.dropped = _LimitedLog()

    # ------------------------------------------------------------------ SSE
    async def sse(self, request: web.Request) -> web.StreamResponse:
        field = "query.topic"
        try:
            topic = parse_topic(request.query.get("topic"))
            field = "header.Last-Event-ID"
            resume_from, epoch = parse_last_event_id(request.headers.get("Last-Event-ID"))
            if resume_from is None:
                field = "query.resume_from"
                resume_from, epoch = _int_param(request.query.get("resume_from"), "resume_from"), request.query.get("epoch")
        except TopicError as exc:
            return _json_error(400, "bad_request", str(exc), field=field)
        try:
            await self.authorize(bearer(request.headers.get("Authorization"), request.query.get("token")), topic)
        except LiveAuthError as exc:
            self.refused("live subscription refused", topic=str(topic), peer=request.remote, status=exc.status)
            headers = {"WWW-Authenticate": 'Bearer realm="egw"'} if exc.status == 401 else None
            return _json_error(exc.status, exc.code, exc.message, headers)
        try:
            subscriber = self.hub.add_subscriber(disconnect_on_lag=True, peer=str(request.remote))
        except HubFullError as exc:
            return _json_error(503, "unavailable", str(exc), {"Retry-After": "5"})
        try:
            self.hub.subscribe(subscriber, str(topic), resume_from, epoch)
        except HubFullError as exc:
            self.hub.remove_subscriber(subscriber)
            return _json_error(503, "unavailable", str(exc), {"Retry-After": "5"})
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache", "X-Accel-Buffering": "no"})
        try:
            await response.prepare(request)
            await response.write(b"retry: 1000\n\n")
            while True:
                try:
                    async with asyncio.timeout(self.keepalive):  # get() is cancel-safe: it pops only after waking
                        frame = await subscriber.get()
                except TimeoutError:
                    async with asyncio.timeout(self.send_timeout):
                        await response.write(b": keepalive\n\n")
                    continue
                if frame is None:
                    break
                async with asyncio.timeout(self.send_timeout):
                    await response.write(frame.sse())
        except (ConnectionError, TimeoutError, asyncio.CancelledError) as exc:
            if isinstance(exc, TimeoutError):
                self.dropped("live SSE client too slow; dropped", peer=request.remote, topic=str(topic))
                _abort(request)
            if isinstance(exc, asyncio.CancelledError):
                raise
        finally:
            self.hub.remove_subscriber(subscriber)
        if subscriber.close_reason == "lagged":
            self.dropped("live SSE client lagged; disconnected", peer=request.remote, topic=str(topic), dropped=subscriber.dropped)
        return response

    # ------------------------------------------------------------ websocket
    async def websocket(self, request: web.Request) -> web.StreamResponse:
        token = bearer(request.headers.get("Authorization"), request.query.get("token"))
        ws = web.WebSocketResponse(heartbeat=self.keepalive, max_msg_size=MAX_CLIENT_MESSAGE)
        if not ws.can_prepare(request).ok:
            return _json_error(400, "bad_request", "GET /api/live is a websocket: send an Upgrade request (or use /api/live/sse)", field="header.Upgrade")
        recognizes = getattr(self.authorize, "recognizes", None)
        if recognizes is not None and not recognizes(token):
            # refused before it takes a subscriber slot; told why over the socket (browsers cannot read a 401 body)
            self.refused("live websocket refused: no valid token", peer=request.remote)
            await ws.prepare(request)
            await ws.send_str(control("error", self.hub.epoch, error="unauthorized", status=401,
                                      message="the live feed needs 'Authorization: Bearer <token>' or ?token=<token> (see `egw token`)").text)
            await ws.close(code=4401, message=b"unauthorized")
            return ws
        try:
            subscriber = self.hub.add_subscriber(peer=str(request.remote))
        except HubFullError as exc:
            return _json_error(503, "unavailable", str(exc), {"Retry-After": "5"})
        try:
            await ws.prepare(request)
            writer = asyncio.create_task(self._write(ws, subscriber, request))
            try:
                for topic in request.query.getall("topic", []):
                    if not await self._subscribe(ws, subscriber, token, {"topic": topic}):
                        return ws
                async for message in ws:
                    if message.type != WSMsgType.TEXT:
                        if message.type == WSMsgType.BINARY:
                            subscriber.push_control(control("error", self.hub.epoch, error="bad_request", message="send JSON text messages"))
                        continue
                    if not await self._handle(ws, subscriber, token, message.data):
                        break
                    if subscriber.closing:
                        break
            finally:
                subscriber.close(subscriber.close_reason or "client closed")
                with contextlib.suppress(asyncio.TimeoutError, asyncio.CancelledError):
                    await asyncio.wait_for(asyncio.shield(writer), self.send_timeout)
                writer.cancel()
        finally:
            self.hub.remove_subscriber(subscriber)
        return ws

    async def _write(self, ws: web.WebSocketResponse, subscriber: Subscriber, request: web.Request) -> None:
        """Drain the subscriber into the socket; the only task that sends on `ws`."""
        try:
            while True:
                frame: Frame | None = await subscriber.get()
                if frame is None:
                    break
                async with asyncio.timeout(self.send_timeout):  # no task per message, unlike wait_for
                    await ws.send_str(frame.text)
        except TimeoutError:
            self.dropped("live websocket client too slow; dropped", peer=request.remote, topics=sorted(subscriber.topics))
            _abort(request)
            return
        except ConnectionError:
            return
        code, reason = {"lagged": (4008, "lagged"), "shutdown": (1001, "gateway going away"),
                        "unauthorized": (4401, "unauthorized"), "forbidden": (4403, "forbidden")}.get(subscriber.close_reason or "", (1000, ""))
        with contextlib.suppress(ConnectionError, asyncio.TimeoutError):
            await asyncio.wait_for(ws.close(code=code, message=reason.encode()), self.send_timeout)

    async def _handle(self, ws: web.WebSocketResponse, subscriber: Subscriber, token: str | None, text: str) -> bool:
        try:
            message = json.loads(text)
        except ValueError:
            message = None
        if not isinstance(message, dict) or message.get("op") not in ("subscribe", "unsubscribe"):
            subscriber.push_control(control("error", self.hub.epoch, error="bad_request",
                                            message='expected {"op": "subscribe"|"unsubscribe", "topic": ...}'))
            return True
        if message["op"] == "unsubscribe":
            try:
                topic = str(parse_topic(message.get("topic")))
            except TopicError as exc:
                subscriber.push_control(control("error", self.hub.epoch, error="bad_request", message=str(exc)))
                return True
            self.hub.unsubscribe(subscriber, topic)
            subscriber.push_control(control("unsubscribed", self.hub.epoch, topic))
            return True
        return await self._subscribe(ws, subscriber, token, message)

    async def _subscribe(self, ws: web.WebSocketResponse, subscriber: Subscriber, token: str | None, message: dict) -> bool:
        """Subscribe as asked; False when the connection is being closed (refused)."""
        raw_topic = message.get("topic")
        try:
            topic = parse_topic(raw_topic)
            resume_from = message.get("resume_from")
            if resume_from is not None and (isinstance(resume_from, bool) or not isinstance(resume_from, int) or not 0 <= resume_from < 2**53):
                raise TopicError("resume_from must be a non-negative integer sequence number")
            epoch = message.get("epoch")
            if epoch is not None and not isinstance(epoch, str):
                raise TopicError("epoch must be a string")
        except TopicError as exc:
            subscriber.push_control(control("error", self.hub.epoch, error="bad_request", message=str(exc),
                                            topic=raw_topic if isinstance(raw_topic, str) else None))
            return True
        try:
            await self.authorize(token, topic)
        except LiveAuthError as exc:
            self.refused("live subscription refused", topic=str(topic), peer=subscriber.peer, status=exc.status)
            subscriber.push_control(control("error", self.hub.epoch, str(topic), error=exc.code, status=exc.status, message=exc.message))
            subscriber.close(exc.code)
            return False
        try:
            self.hub.subscribe(subscriber, str(topic), resume_from, epoch)
        except HubFullError as exc:
            subscriber.push_control(control("error", self.hub.epoch, str(topic), error="unavailable", message=str(exc)))
        return True


def _abort(request: web.Request) -> None:
    transport = request.transport
    if transport is not None:
        transport.abort()
