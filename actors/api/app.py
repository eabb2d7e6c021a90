"""The aiohttp application: route table + handlers + uniform JSON errors.

`build_app(backend, token=...)` is all a server needs; the API actor serves it, tests
and benchmarks serve it over an in-memory backend. Design rules, and why:

* Every answer is JSON (except `/metrics`), errors included: 400 names the field, 401
  asks for a bearer token, 404/405/413 come from the middleware, 503 carries
  `Retry-After`. A malformed request can never reach an unhandled exception.
* Handlers never wait on a device or charger: every backend call is bounded by
  `backend_timeout`, after which the client gets 503 instead of a hanging request.
* Bodies are limited to `max_body` bytes, read once, before any parsing.
* The token is checked before the body is even read, so an unauthenticated client
  cannot make the gateway parse anything.

Why one module: every handler is a few lines over the backend, and they share the request
state, the error mapping and the route table's registration; split, each piece would import
all the others.
"""

from __future__ import annotations

import asyncio
import json
import math
import time
from collections import Counter
from collections.abc import Awaitable, Callable
from importlib import metadata
from typing import Any

from aiohttp import web

from actors.live.tokens import issue_transaction_token
from actors.api import charger_admin, loadpoints
from actors.api import metrics as prometheus
from actors.api.backend import ApiBackend, ApiError, ChargerError, NoAnswerError, NotFoundError, UnavailableError
from actors.api.commands import CommandLedger
from actors.live.jsontext import json_text
from actors.api.openapi import build_document
from actors.api.provisioning import handlers as provisioning_handlers
from supervisor.redaction import redact
from actors.api.routes import ROUTES, Route
from actors.api.token import token_matches
from actors.api.validation import parse_json_body, parse_params, parse_since
from actors.web import api as web_page
from supervisor.logs import ActorLog, RateLimitedLog

log = ActorLog("api")


MAX_BODY = 64 * 1024
BACKEND_TIMEOUT = 5.0
COMMAND_TIMEOUT = 40.0  # a charger may take its whole OCPP call timeout (30 s by default) to answer

CHARGER_COMMANDS = {route.operation: route.command for route in ROUTES if route.command is not None}
"""Route operation -> the OCPP 1.6 action the charger actor is asked to send."""

_KNOWN_METHODS = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"}


def gateway_version() -> str:
    try:
        return metadata.version("egw")
    except metadata.PackageNotFoundError:
        return "0.0.0+unknown"


class ApiState:
    """Per-app state: the token, limits, the OpenAPI document and request counters."""

    def __init__(self, backend: ApiBackend, token: str | None, version: str, backend_timeout: float, max_body: int, command_timeout: float = COMMAND_TIMEOUT) -> None:
        self.backend = backend
        self.command_timeout = command_timeout
        self.max_body = max_body
        self.token = token
        self.version = version
        self.backend_timeout = backend_timeout
        self.document = build_document(version)
        self.document_bytes = json.dumps(self.document).encode()
        self.requests: Counter = Counter()  # (method, route template, status) -> count; bounded by the route table
        self.log_rejected = RateLimitedLog()
        self.commands = CommandLedger()  # charger commands: pollable by id, idempotent by key

    def add_documented_paths(self, paths: dict[str, dict[str, Any]], components: dict[str, dict[str, Any]] | None = None) -> None:
        """Describe routes mounted beside the route table (the live feed) in the served document."""
        self.document["paths"].update(paths)
        self.document["components"]["schemas"].update(components or {})
        self.document_bytes = json.dumps(self.document).encode()

    async def call(self, what: str, coro: Awaitable[Any], timeout: float | None = None) -> Any:
        """Await a backend call, turning a slow part into 503 rather than a hanging request.

        Reads get `backend_timeout`; commands that wait for a charger or a supervisor get
        the longer `command_timeout`, and are still bounded.
        """
        limit = self.backend_timeout if timeout is None else timeout
        try:
            return await asyncio.wait_for(coro, limit)
        except TimeoutError:
            raise UnavailableError(f"{what}: no answer within {limit:g} s", retry_after=max(1, math.ceil(min(limit, 30)))) from None


STATE_KEY = web.AppKey("egw_api_state", ApiState)


# ------------------------------------------------------------------ responses
def json_response(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json_text(data), status=status, content_type="application/json", headers=headers)


def error_response(status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    body = {"error": code, **({"field": field} if field is not None else {}), "message": message}
    return json_response(body, status=status, headers=headers)


_HTTP_CODES = {404: "not_found", 405: "method_not_allowed", 413: "payload_too_large", 400: "bad_request", 411: "length_required", 415: "unsupported_media_type"}


@web.middleware
async def errors_middleware(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    """Every failure as a JSON body with a stable `error` code; unexpected ones logged as bugs."""
    state: ApiState = request.app[STATE_KEY]
    route = request.match_info.route.resource.canonical if request.match_info.route.resource is not None else "unmatched"
    method = request.method if request.method in _KNOWN_METHODS else "OTHER"
    try:
        response = await handler(request)
    except ApiError as exc:
        headers = {"Retry-After": str(exc.retry_after)} if isinstance(exc, UnavailableError) else None
        if exc.status == 400:
            state.log_rejected("bad request", path=request.path, field=exc.field, reason=exc.message)
        response = json_response(exc.body(), status=exc.status, headers=headers)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {k: v for k, v in exc.headers.items() if k in ("Allow",)}
        message = exc.reason if exc.status != 413 else f"request body larger than {state.max_body} bytes"
        response = error_response(exc.status, _HTTP_CODES.get(exc.status, "http_error"), message, headers=headers)
    except asyncio.CancelledError:
        raise
    except Exception:  # noqa: BLE001 - a bug: answer 500 JSON, log with traceback
        log.exception("unhandled error in API handler", path=request.path, method=request.method)
        response = error_response(500, "internal_error", "internal error; see the gateway log")
    state.requests[(method, route, response.status)] += 1
    return response


# -------------------------------------------------------------- handler glue
def _endpoint(route: Route, handler: Callable[..., Awaitable[web.StreamResponse]]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """Wrap a handler: token check, body size check and parsing, parameter parsing."""

    async def endpoint(request: web.Request) -> web.StreamResponse:
        state: ApiState = request.app[STATE_KEY]
        if route.protected and (state.token is None or not token_matches(state.token, request.headers.get("Authorization"))):
            state.log_rejected("request without a valid token", path=request.path, method=request.method, peer=request.remote)
            return error_response(401, "unauthorized", "this endpoint needs 'Authorization: Bearer <token>' (see `egw token`)",
                                  field="header.Authorization", headers={"WWW-Authenticate": 'Bearer realm="egw"'})
        params = parse_params(route, dict(request.match_info), request.query, request.headers)
        body = None
        if route.body is not None:
            limit = state.max_body
            if request.content_length is not None and request.content_length > limit:
                raise web.HTTPRequestEntityTooLarge(max_size=limit, actual_size=request.content_length)
            body = parse_json_body(await request.read(), route.body, required=route.body_required)
        return await handler(state, params, body)

    endpoint.__name__ = route.operation
    return endpoint


def _handlers() -> dict[str, Callable[..., Awaitable[web.StreamResponse]]]:
    async def health(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response(await s.call("health", s.backend.health()))

    async def actors(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response({"actors": await s.call("actor tree", s.backend.tree())})

    async def list_devices(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response({"devices": await s.call("devices", s.backend.devices())})

    async def get_device(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response(await s.call(f"device {p['id']}", s.backend.device(p["id"])))

    async def add_device(s: ApiState, p: dict, body: dict) -> web.StreamResponse:
        device = await s.call("device supervisor", s.backend.add_device(body), s.command_timeout)
        return json_response({"id": body["id"], "status": "added", "device": device}, status=201)

    async def remove_device(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        device = await s.call("device supervisor", s.backend.remove_device(p["id"]), s.command_timeout)
        return json_response({"id": p["id"], "status": "removed", "device": device})

    async def outbox(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response(await s.call("outbox", s.backend.outbox_status()))

    async def dead_letters(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response({"dead_letters": await s.call("dead letters", s.backend.dead_letters())})

    async def resend_dead_letters(s: ApiState, p: dict, body: dict | None) -> web.StreamResponse:
        ids = (body or {}).get("ids")
        return json_response(await s.call(f"transport {p['name']}", s.backend.resend_dead_letters(p["name"], ids), s.command_timeout))

    async def update_transport(s: ApiState, p: dict, body: dict) -> web.StreamResponse:
        transport = await s.call(f"transport {p['name']}", s.backend.update_transport(p["name"], body), s.command_timeout)
        return json_response({"name": p["name"], "status": "updated", "transport": transport})

    async def list_chargers(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        chargers = await s.call("chargers", s.backend.chargers())
        return json_response({"chargers": [c for c in chargers if charger_matches(c, status=p.get("status"), serial=p.get("serial"))]})

    async def set_connector_override(s: ApiState, p: dict, body: dict) -> web.StreamResponse:
        charger, connector, status = p["id"], p["connectorId"], body["status"]
        await s.call(f"charger {charger}", s.backend.set_connector_override(charger, connector, status, body.get("reason")))
        kind = "Operative" if status == "Available" else "Inoperative"
        told = await tell_availability(s, charger, connector, kind) if body.get("change_availability", True) else not_told(None)
        return json_response(await override_result(s, charger, connector, told))

    async def clear_connector_override(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        charger, connector = p["id"], p["connectorId"]
        lifted = await s.call(f"charger {charger}", s.backend.clear_connector_override(charger, connector))
        out_of_service = lifted is not None and lifted["status"] in ("Faulted", "Unavailable")
        told = await tell_availability(s, charger, connector, "Operative") if out_of_service and p["change_availability"] else not_told(None)
        return json_response({**await override_result(s, charger, connector, told), "lifted": lifted is not None})

    async def get_charger(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response(await s.call(f"charger {p['id']}", s.backend.charger(p["id"])))

    def charger_command(operation: str) -> Callable[..., Awaitable[web.StreamResponse]]:
        action = CHARGER_COMMANDS[operation]

        async def command(s: ApiState, p: dict, body: dict | None) -> web.StreamResponse:
            """Send one command and answer its outcome, or 202 while it runs on (actors.api.commands)."""
            if body is None:  # a GET: GetConfiguration takes its keys from the query string
                body = {"key": p["key"].split(",")} if "key" in p else {}
            charger = p["id"]

            def live_token() -> dict[str, Any]:
                if action != "RemoteStartTransaction" or not s.token:
                    return {}
                # a driver's app may follow just the session this start produces
                return {"live_token": issue_transaction_token(s.token, charger_id=charger, id_tag=body["idTag"])}

            record = s.commands.submit(charger, action, body, p.get("Idempotency-Key"),
                                       lambda: s.backend.charger_command(charger, action, body), on_accepted=live_token)
            status, answer, headers = await s.commands.wait(record, s.command_timeout)
            return json_response(answer, status=status, headers=headers or None)

        return command

    async def charger_command_status(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        record = s.commands.get(p["id"], p["command_id"])
        if record is None:
            raise NotFoundError(f"no command {p['command_id']} for charger {p['id']} (unknown, or older than 24 h)", field="path.command_id")
        return json_response(record.view())

    async def list_transactions(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        since = parse_since(p["since"]) if "since" in p else None
        rows = await s.call("transactions", s.backend.transactions(charger=p.get("charger"), id_tag=p.get("idTag"), since=since, limit=p["limit"]))
        return json_response({"transactions": rows})

    async def get_transaction(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response(await s.call(f"transaction {p['id']}", s.backend.transaction(p["id"])))

    async def set_payment_reference(s: ApiState, p: dict, body: dict) -> web.StreamResponse:
        return json_response(await s.call(f"transaction {p['id']}", s.backend.set_payment_reference(p["id"], body["reference"], replace=body.get("replace", False))))

    async def list_reservations(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        rows = await s.call("reservations", s.backend.reservations(charger=p.get("charger"), status=p.get("status"), limit=p["limit"]))
        return json_response({"reservations": rows})

    async def get_reservation(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response(await s.call(f"reservation {p['id']}", s.backend.reservation(p["id"])))

    async def crypto(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        identity = dict(await s.call("identity", s.backend.crypto()))
        identity.setdefault("available", identity.get("public_key") is not None)
        for key in ("serial", "public_key", "key_id", "algorithm"):
            identity.setdefault(key, None)
        identity["serialNumber"] = identity["serial"]
        identity["deviceName"] = identity.pop("device_name", None) or (f"egw-{identity['serial']}" if identity["serial"] else None)
        identity["publicKey"] = identity.pop("public_key_hex", None)
        return json_response(identity)

    async def config(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response(redact(await s.call("configuration", s.backend.config())))

    async def uptime(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        health = await s.call("health", s.backend.health())
        return json_response({"msek": int(max(0.0, float(health.get("uptime_s") or 0.0)) * 1000)})

    async def version(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response({"version": s.version})

    async def hello(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return json_response({"message": "hello from the egw gateway"})

    async def openapi(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        return web.Response(body=s.document_bytes, content_type="application/json")

    async def metrics(s: ApiState, p: dict, b: None) -> web.StreamResponse:
        async def best_effort(what: str, coro: Awaitable[Any], empty: Any) -> Any:
            try:
                return await s.call(what, coro)
            except ApiError:
                return empty

        tree, devices, outbox_state, chargers, health = await asyncio.gather(
            best_effort("actor tree", s.backend.tree(), []),
            best_effort("devices", s.backend.devices(), []),
            best_effort("outbox", s.backend.outbox_status(), {}),
            best_effort("chargers", s.backend.chargers(), []),
            best_effort("health", s.backend.health(), {}),
        )
        text = prometheus.render(tree=tree, devices=devices, outbox=outbox_state, chargers=chargers, requests=s.requests, uptime_s=float(health.get("uptime_s") or 0.0))
        return web.Response(text=text, content_type="text/plain", charset="utf-8", headers={"X-Prometheus-Format": "0.0.4"})

    handlers = {  # every handler by its route's operation name (actors.api.routes)
        "health": health, "actors": actors, "list_devices": list_devices, "get_device": get_device,
        "add_device": add_device, "remove_device": remove_device, "outbox": outbox, "dead_letters": dead_letters,
        "resend_dead_letters": resend_dead_letters, "update_transport": update_transport, "list_chargers": list_chargers,
        "set_connector_override": set_connector_override, "clear_connector_override": clear_connector_override,
        "get_charger": get_charger, "charger_command_status": charger_command_status,
        "list_transactions": list_transactions, "get_transaction": get_transaction,
        "set_payment_reference": set_payment_reference, "list_reservations": list_reservations,
        "get_reservation": get_reservation, "crypto": crypto, "config": config, "uptime": uptime, "version": version,
        "hello": hello, "openapi": openapi, "metrics": metrics,
    }
    handlers.update({op: charger_command(op) for op in CHARGER_COMMANDS})
    return handlers


def charger_matches(charger: dict[str, Any], *, status: str | None, serial: str | None) -> bool:
    """The `GET /api/chargers` filters: `serial` the charger's serial number; `status` a connector (1 and up) showing it.

    A connector shows its operator override while one is set (the view's `status`). A
    charger is `Available` only while connected with its registration Accepted: one that
    is offline or refused could not start the session a driver looks for.
    """
    if serial is not None and charger.get("serial") != serial:
        return False
    if status is None:
        return True
    if status == "Available" and not (charger.get("connected") and charger.get("registration") == "Accepted"):
        return False
    return any(c.get("id", 0) > 0 and c.get("status") == status for c in charger.get("connectors", []))


def not_told(kind: str | None, error: str | None = None, *, sent: bool = False, status: str | None = None) -> dict[str, Any]:
    """What a connector override told the charger (ConnectorOverrideResult.change_availability)."""
    return {"sent": sent, "type": kind, "status": status, "error": error}


async def tell_availability(s: ApiState, charger: str, connector: int, kind: str) -> dict[str, Any]:
    """Send ChangeAvailability over the charger command path; its outcome, never an exception.

    The override is the operator's record and stands whatever the charger says: a charger
    that is offline, refuses or does not answer is reported, and the operator can retry
    with POST /api/chargers/{id}/availability.
    """
    try:
        answer = await s.call(f"charger {charger}", s.backend.charger_command(charger, "ChangeAvailability", {"connectorId": connector, "type": kind}),
                              s.command_timeout)
    except (NoAnswerError, ChargerError) as exc:  # it reached the charger
        return not_told(kind, exc.code, sent=True)
    except ApiError as exc:
        return not_told(kind, exc.code)
    return not_told(kind, sent=True, status=str(answer.get("status")))


async def override_result(s: ApiState, charger_id: str, connector_id: int, told: dict[str, Any]) -> dict[str, Any]:
    """The connector as REST shows it now, with what the charger was told."""
    charger = await s.call(f"charger {charger_id}", s.backend.charger(charger_id))
    connector = next((c for c in charger.get("connectors", []) if c.get("id") == connector_id), None)
    if connector is None:
        raise NotFoundError(f"charger {charger_id} never reported connector {connector_id}", field="path.connectorId")
    return {"charger": charger_id, "connector": connector_id, "status": connector["status"], "reported_status": connector.get("reported_status"),
            "override": connector.get("override"), "change_availability": told}


def add_documented_routes(app: web.Application, paths: dict[str, dict[str, Any]], components: dict[str, dict[str, Any]] | None = None) -> None:
    """Add OpenAPI path items for routes another module registered on `app`, and the schemas they refer to."""
    app[STATE_KEY].add_documented_paths(paths, components)


def build_app(backend: ApiBackend, *, token: str | None, version: str | None = None, max_body: int = MAX_BODY,
              backend_timeout: float = BACKEND_TIMEOUT, command_timeout: float = COMMAND_TIMEOUT) -> web.Application:
    """The API as an aiohttp application over `backend`.

    `token` guards the protected routes; None makes every protected route answer 401
    (a gateway that could not create its token must not become writable by anyone).
    """
    app = web.Application(middlewares=[errors_middleware], client_max_size=max_body)
    app[STATE_KEY] = ApiState(backend, token, version or gateway_version(), backend_timeout, max_body, command_timeout)
    handlers = {**_handlers(), **provisioning_handlers(), **charger_admin.handlers(), **loadpoints.handlers()}
    handlers.update(web_page.handlers())  # the local web page (actors/web)
    missing = {r.operation for r in ROUTES} - set(handlers)
    if missing:
        raise RuntimeError(f"routes without handlers: {sorted(missing)}")
    for route in ROUTES:
        app.router.add_route(route.method, route.path, _endpoint(route, handlers[route.operation]), name=route.operation)
    web_page.setup(app)  # the local web page at /, and its sign-in cookie accepted where the bearer token is
    return app


def uptime_since(start_monotonic: float) -> float:
    """Seconds since `start_monotonic` (a time.monotonic() value), never negative."""
    return max(0.0, time.monotonic() - start_monotonic)
