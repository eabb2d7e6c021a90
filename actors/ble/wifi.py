"""Wi-Fi provisioning: the REST endpoints and the interface to the network stack.

A fresh gateway has no network; the installer's phone sends the Wi-Fi credentials
over the BLE tunnel, which forwards them to these endpoints of the local REST API:

    GET    /api/wifi         status: state, SSID, signal, address, whether provisioned
    GET    /api/wifi/scan    visible networks (SSID, signal, secured), strongest first
    POST   /api/wifi         {"ssid": ..., "psk": ...}: store and start connecting (202)
    DELETE /api/wifi         forget the provisioned network

The pre-shared key is write-only: it is never logged, never returned, never put in
an error message, and never passed on a command line (the NetworkManager backend
hands it over D-Bus). Writes need the API's bearer token, like every mutating
endpoint. Backends sit behind `WifiBackend`; `FakeWifiBackend` serves tests and demos,
`actors.ble.wifi_nm.NetworkManagerWifi` drives NetworkManager.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass
from typing import Any, Protocol

from aiohttp import web

log = logging.getLogger("egw.wifi")

MAX_BODY = 1024
MAX_NETWORKS = 50
CALL_TIMEOUT = 10.0


@dataclass(frozen=True)
class WifiStatus:
    state: str  # connected, connecting, disconnected, unavailable
    ssid: str | None = None
    signal: int | None = None  # percent
    ip4: str | None = None
    provisioned: bool = False  # the gateway's own Wi-Fi profile exists


@dataclass(frozen=True)
class WifiNetwork:
    ssid: str
    signal: int
    secured: bool


class WifiError(Exception):
    """The network stack refused or failed; the message is safe to show (no secrets)."""


class WifiUnavailableError(WifiError):
    """No network manager or no Wi-Fi device: provisioning cannot work on this box."""


class WifiBackend(Protocol):
    async def status(self) -> WifiStatus: ...

    async def scan(self) -> list[WifiNetwork]: ...

    async def connect(self, ssid: str, psk: str | None) -> WifiStatus:
        """Store the network as the gateway's Wi-Fi profile and start connecting (do not wait)."""
        ...

    async def forget(self) -> bool:
        """Remove the gateway's Wi-Fi profile; False when there was none."""
        ...


class FakeWifiBackend:
    """An in-memory network stack: visible networks, one provisioned profile."""

    def __init__(self, networks: list[WifiNetwork] | None = None) -> None:
        self.networks = list(networks or [])
        self.profile: tuple[str, str | None] | None = None  # (ssid, psk) as the network stack would store it
        self.connects = 0

    async def status(self) -> WifiStatus:
        if self.profile is None:
            return WifiStatus("disconnected")
        ssid = self.profile[0]
        visible = next((n for n in self.networks if n.ssid == ssid), None)
        if visible is None:
            return WifiStatus("connecting", ssid, provisioned=True)
        return WifiStatus("connected", ssid, visible.signal, "192.168.1.50", provisioned=True)

    async def scan(self) -> list[WifiNetwork]:
        return list(self.networks)

    async def connect(self, ssid: str, psk: str | None) -> WifiStatus:
        self.profile = (ssid, psk)
        self.connects += 1
        return await self.status()

    async def forget(self) -> bool:
        existed = self.profile is not None
        self.profile = None
        return existed


# ------------------------------------------------------------------ validation
class WifiInputError(ValueError):
    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field
        self.message = message


def parse_credentials(raw: bytes) -> tuple[str, str | None]:
    """Validate a POST body: ssid 1-32 bytes; psk 8-63 printable ASCII or 64 hex digits, or null (open network)."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError):
        raise WifiInputError("body", "body is not valid JSON") from None
    if not isinstance(body, dict):
        raise WifiInputError("body", "body must be a JSON object")
    for key in body:
        if key not in ("ssid", "psk"):
            raise WifiInputError(str(key)[:32], "unknown field")
    ssid = body.get("ssid")
    if ssid is None:
        raise WifiInputError("ssid", "missing required field")
    if not isinstance(ssid, str) or not 1 <= len(ssid.encode()) <= 32:
        raise WifiInputError("ssid", "must be a string of 1 to 32 bytes")
    psk = body.get("psk")
    if psk is not None:
        if not isinstance(psk, str):
            raise WifiInputError("psk", "must be a string or null")
        is_hex_key = len(psk) == 64 and all(c in "0123456789abcdefABCDEF" for c in psk)
        is_passphrase = 8 <= len(psk) <= 63 and all(" " <= c <= "~" for c in psk)
        if not (is_hex_key or is_passphrase):
            raise WifiInputError("psk", "must be 8 to 63 printable ASCII characters or 64 hex digits")
    return ssid, psk


# ------------------------------------------------------------------ routes
def _json(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(text=json.dumps(data), status=status, content_type="application/json", headers=headers)


def _error(status: int, code: str, message: str, field: str | None = None, headers: dict[str, str] | None = None) -> web.Response:
    body: dict[str, Any] = {"error": code, "message": message}
    if field is not None:
        body["field"] = field
    return _json(body, status, headers)


def _app_token(app: web.Application) -> str | None:
    """The REST API's token, when the app is the API's (`actors.api.app.build_app`)."""
    try:
        from actors.api.app import STATE_KEY
    except ImportError:
        return None
    state = app.get(STATE_KEY)
    return state.token if state is not None else None


def add_wifi_routes(app: web.Application, backend: WifiBackend, token: str | None = None, timeout: float = CALL_TIMEOUT) -> None:
    """Register the Wi-Fi endpoints on `app`.

    `token` guards POST and DELETE; when None, the API app's own token is used
    (and with no token at all, writes are refused: fail closed).
    """

    def authorised(request: web.Request) -> bool:
        from actors.api.token import token_matches

        expected = token if token is not None else _app_token(request.app)
        return expected is not None and token_matches(expected, request.headers.get("Authorization"))

    def unauthorised() -> web.Response:
        return _error(401, "unauthorized", "this endpoint needs 'Authorization: Bearer <token>'", "header.Authorization", {"WWW-Authenticate": 'Bearer realm="egw"'})

    async def call(what: str, coro: Awaitable[Any]) -> Any:
        try:
            return await asyncio.wait_for(coro, timeout)
        except TimeoutError:
            raise WifiUnavailableError(f"{what}: the network manager did not answer within {timeout:g} s") from None

    def guarded(handler: Callable[[web.Request], Awaitable[web.Response]]) -> Callable[[web.Request], Awaitable[web.Response]]:
        async def endpoint(request: web.Request) -> web.Response:
            try:
                return await handler(request)
            except WifiUnavailableError as exc:
                return _error(503, "unavailable", str(exc), headers={"Retry-After": "10"})
            except WifiError as exc:
                return _error(502, "wifi_failed", str(exc))

        return endpoint

    async def get_status(request: web.Request) -> web.Response:
        return _json(asdict(await call("status", backend.status())))

    async def get_scan(request: web.Request) -> web.Response:
        networks = await call("scan", backend.scan())
        strongest: dict[str, WifiNetwork] = {}
        for network in networks:
            if network.ssid and (network.ssid not in strongest or network.signal > strongest[network.ssid].signal):
                strongest[network.ssid] = network
        ordered = sorted(strongest.values(), key=lambda n: -n.signal)[:MAX_NETWORKS]
        return _json({"networks": [asdict(n) for n in ordered]})

    async def post_wifi(request: web.Request) -> web.Response:
        if not authorised(request):
            return unauthorised()
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _error(413, "payload_too_large", f"request body larger than {MAX_BODY} bytes", "body")
        raw = await request.content.read(MAX_BODY + 1)
        if len(raw) > MAX_BODY:
            return _error(413, "payload_too_large", f"request body larger than {MAX_BODY} bytes", "body")
        try:
            ssid, psk = parse_credentials(raw)
        except WifiInputError as exc:
            log.info("wifi credentials rejected", extra={"fields": {"field": exc.field, "reason": exc.message}})
            return _error(400, "bad_request", exc.message, exc.field)
        status = await call("connect", backend.connect(ssid, psk))
        log.info("wifi network provisioned", extra={"fields": {"ssid": ssid, "secured": psk is not None}})
        return _json(asdict(status), status=202)

    async def delete_wifi(request: web.Request) -> web.Response:
        if not authorised(request):
            return unauthorised()
        removed = await call("forget", backend.forget())
        log.info("wifi network forgotten", extra={"fields": {"removed": removed}})
        return _json({"removed": removed, **asdict(await call("status", backend.status()))})

    app.router.add_get("/api/wifi", guarded(get_status), name="wifi_status")
    app.router.add_get("/api/wifi/scan", guarded(get_scan), name="wifi_scan")
    app.router.add_post("/api/wifi", guarded(post_wifi), name="wifi_connect")
    app.router.add_delete("/api/wifi", guarded(delete_wifi), name="wifi_forget")
