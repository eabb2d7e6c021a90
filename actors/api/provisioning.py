"""Provisioning endpoints: Wi-Fi credentials and the BLE provisioning window.

A fresh gateway has no network: the installer's phone sends Wi-Fi credentials over
the BLE tunnel, which forwards them to these endpoints of the REST API, so the radio
path and the LAN path share one set of handlers, one validation and one token check.

    GET    /api/wifi            status: state, SSID, signal, address, provisioned
    GET    /api/wifi/scan       visible networks, strongest first
    POST   /api/wifi            {"ssid", "psk"}: store and start connecting (202)
    DELETE /api/wifi            forget the gateway's network
    GET    /api/ble             BLE state, advertising, provisioning window
    POST   /api/ble/window      {"minutes": N}: open (or extend) the window
    DELETE /api/ble/window      close it now

The pre-shared key is write-only: never logged, never returned, never put in an error
message (the schema marks it `writeOnly`, and `actors.api.validation` then never
quotes the value). `WifiService` turns a `actors.wifi.backend.WifiBackend` (NetworkManager
over D-Bus, or the in-memory fake for demos) into the API's shapes and errors.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import asdict
from typing import Any

from actors.api.backend import BadInputError, UnavailableError, UpstreamError
from actors.wifi.backend import FakeWifiBackend, WifiBackend, WifiError, WifiNetwork, WifiStatus, WifiUnavailableError
from supervisor.logs import ActorLog

log = ActorLog("api")

MAX_NETWORKS = 50
WIFI_RETRY_AFTER = 10  # NetworkManager restarting or not yet up: worth asking again soon
WIFI_BACKENDS = ("networkmanager", "fake", "none")
"""Values of the `wifi_backend` setting."""


class DisabledWifi:
    """The Wi-Fi backend of a gateway configured without (or with unusable) Wi-Fi provisioning."""

    def __init__(self, reason: str = "Wi-Fi provisioning is disabled on this gateway (wifi_backend = none)") -> None:
        self.reason = reason

    async def _refuse(self) -> Any:
        raise WifiUnavailableError(self.reason)

    async def status(self) -> WifiStatus:
        return await self._refuse()

    async def scan(self) -> list[WifiNetwork]:
        return await self._refuse()

    async def connect(self, ssid: str, psk: str | None) -> WifiStatus:
        return await self._refuse()

    async def forget(self) -> bool:
        return await self._refuse()


def demo_networks() -> list[WifiNetwork]:
    return [WifiNetwork("egw-demo", 78, True), WifiNetwork("egw-demo-open", 41, False)]


def make_wifi_backend(kind: str, bus_address: str | None = None) -> WifiBackend:
    """The backend for the `wifi_backend` setting.

    "networkmanager" talks to NetworkManager on the system bus (or `bus_address`); where
    there is none, every call is a 503 `wifi_unavailable`, never a pretend success.
    "fake" is an in-memory network stack for demos; "none" disables the endpoints.
    """
    if kind == "networkmanager":
        from actors.wifi.networkmanager import NetworkManagerWifi

        return NetworkManagerWifi(bus_address=bus_address or None)
    if kind == "fake":
        return FakeWifiBackend(demo_networks())
    if kind == "none":
        return DisabledWifi()
    # the configuration loader rejects other values; should one get here, say so on every call
    log.error("unknown wifi_backend; Wi-Fi provisioning disabled", wifi_backend=str(kind)[:40])
    return DisabledWifi(f"wifi_backend must be one of {', '.join(WIFI_BACKENDS)}, not {str(kind)[:40]!r}")


class WifiService:
    """A `WifiBackend` in the API's terms: plain dicts out, `ApiError`s for failures."""

    def __init__(self, backend: WifiBackend) -> None:
        self.backend = backend

    async def _run(self, call: Callable[[], Awaitable[Any]]) -> Any:
        try:
            return await call()
        except WifiUnavailableError as exc:
            raise UnavailableError(str(exc), retry_after=WIFI_RETRY_AFTER, code="wifi_unavailable") from None
        except WifiError as exc:
            raise UpstreamError(str(exc), code="wifi_failed") from None

    async def status(self) -> dict[str, Any]:
        return asdict(await self._run(self.backend.status))

    async def scan(self) -> list[dict[str, Any]]:
        networks = await self._run(self.backend.scan)
        strongest: dict[str, WifiNetwork] = {}
        for network in networks:
            if network.ssid and (network.ssid not in strongest or network.signal > strongest[network.ssid].signal):
                strongest[network.ssid] = network
        ordered = sorted(strongest.values(), key=lambda n: (-n.signal, n.ssid))[:MAX_NETWORKS]
        return [{"ssid": n.ssid, "signal": max(0, min(100, int(n.signal))), "secured": bool(n.secured)} for n in ordered]

    async def connect(self, ssid: str, psk: str | None) -> dict[str, Any]:
        status = asdict(await self._run(lambda: self.backend.connect(ssid, psk)))
        log.info("wifi network provisioned", ssid=ssid, secured=psk is not None)
        return status

    async def forget(self) -> dict[str, Any]:
        removed = await self._run(self.backend.forget)
        log.info("wifi network forgotten", removed=removed)
        return {**asdict(await self._run(self.backend.status)), "removed": bool(removed)}


def ssid_checked(ssid: str) -> str:
    """The schema bounds characters; the 802.11 limit is 32 bytes."""
    try:
        encoded = ssid.encode("utf-8")
    except UnicodeEncodeError:
        raise BadInputError("must be valid Unicode text", field="ssid") from None
    if len(encoded) > 32:
        raise BadInputError("must be 1 to 32 bytes as UTF-8", field="ssid")
    return ssid


def ble_view(status: Any, now: float | None = None) -> dict[str, Any]:
    """A `actors.ble.messages.BleStatus` as the API shows it (with the wall time the window closes)."""
    from actors.api.stores import iso

    remaining = float(status.window_remaining_s)
    closes_at = iso((time.time() if now is None else now) + remaining) if status.window_open else None
    return {"state": status.state, "reason": status.reason, "advertising": bool(status.advertising), "window_open": bool(status.window_open),
            "window_remaining_s": remaining, "window_closes_at": closes_at, "requests_served": int(status.requests_served)}


def handlers() -> dict[str, Callable[..., Awaitable[Any]]]:
    """Route operation -> handler, merged into the app's handlers by `actors.api.app.build_app`."""
    from actors.api.app import ApiState, json_response

    async def wifi_status(s: ApiState, p: dict, b: None) -> Any:
        return json_response(await s.call("wifi", s.backend.wifi_status()))

    async def wifi_scan(s: ApiState, p: dict, b: None) -> Any:
        return json_response({"networks": await s.call("wifi scan", s.backend.wifi_scan(), s.command_timeout)})

    async def wifi_connect(s: ApiState, p: dict, body: dict) -> Any:
        ssid = ssid_checked(body["ssid"])
        status = await s.call("wifi", s.backend.wifi_connect(ssid, body.get("psk")), s.command_timeout)
        return json_response(status, status=202)

    async def wifi_forget(s: ApiState, p: dict, b: None) -> Any:
        return json_response(await s.call("wifi", s.backend.wifi_forget(), s.command_timeout))

    async def ble_status(s: ApiState, p: dict, b: None) -> Any:
        return json_response(await s.call("ble", s.backend.ble_status()))

    async def ble_open_window(s: ApiState, p: dict, body: dict) -> Any:
        return json_response(await s.call("ble", s.backend.ble_open_window(body.get("minutes"))))

    async def ble_close_window(s: ApiState, p: dict, b: None) -> Any:
        return json_response(await s.call("ble", s.backend.ble_close_window()))

    return {  # every handler by its route's operation name (actors.api.routes)
        "wifi_status": wifi_status, "wifi_scan": wifi_scan, "wifi_connect": wifi_connect, "wifi_forget": wifi_forget,
        "ble_status": ble_status, "ble_open_window": ble_open_window, "ble_close_window": ble_close_window,
    }
