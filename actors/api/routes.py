"""The route table: every endpoint the API serves, described once as data.

The app registers exactly these routes, the OpenAPI document is generated from them,
the token check is applied from the `protected` flag, and the tests enumerate them
(token enforcement, fuzzing, document coverage). Adding an endpoint means adding a
row here and a handler with the same `operation` name in `actors.api.app`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from actors.api import schemas

Location = Literal["path", "query"]


@dataclass(frozen=True)
class Param:
    name: str
    location: Location
    schema: dict[str, Any]
    required: bool = False
    description: str = ""


@dataclass(frozen=True)
class Route:
    """One endpoint. `responses` maps status -> (description, component schema name or None)."""

    method: str
    path: str
    operation: str
    summary: str
    tag: str
    params: tuple[Param, ...] = ()
    body: str | None = None  # component schema name of the JSON request body
    responses: dict[int, tuple[str, str | None]] = field(default_factory=dict)
    protected: bool = False  # needs `Authorization: Bearer <token>`
    content_type: str = "application/json"  # of the 200 response


def _id(name: str, what: str) -> Param:
    return Param(name, "path", schemas.IdentifierSchema, True, f"the {what} id")


_DEVICE_ID = _id("id", "device")
_CHARGER_ID = _id("id", "charger")
_LIMIT = Param("limit", "query", {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}, False, "at most this many items")

_NOT_FOUND = (404, ("no such item", "Error"))
_BAD = (400, ("invalid input; `field` names it", "Error"))
_UNAVAILABLE = (503, ("the part that must answer is restarting; see Retry-After", "Error"))
_WRITE_ERRORS = dict([_BAD, (401, ("missing or wrong bearer token", "Error")), (413, ("request body too large", "Error")), _UNAVAILABLE])

_WIFI_UNAVAILABLE = ("no NetworkManager or no Wi-Fi device (`error` is wifi_unavailable), or it did not answer; see Retry-After", "Error")
_WIFI_FAILED = ("NetworkManager refused (`error` is wifi_failed)", "Error")
_NO_BLE = ("BLE provisioning is not enabled on this gateway (ble_enabled)", "Error")


def _charger_command(slug: str, summary: str, body: str) -> Route:
    return Route(
        "POST", f"/api/chargers/{{id}}/{slug}", f"charger_{slug.replace('-', '_')}", summary, "chargers",
        params=(_CHARGER_ID,), body=body, protected=True,
        responses={200: ("the charger's answer", "CommandResult"), **_WRITE_ERRORS, 404: ("no such charger", "Error"),
                   409: ("the charger rejected the command", "Error"), 501: ("this gateway has no OCPP central system", "Error")},
    )


ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/health", "health", "Overall health: ok or degraded, with reasons", "status", responses={200: ("health", "Health"), 503: _UNAVAILABLE[1]}),
    Route("GET", "/api/actors", "actors", "The supervision tree", "status", responses={200: ("actor tree", "ActorTree"), 503: _UNAVAILABLE[1]}),
    Route("GET", "/api/devices", "list_devices", "All devices with their latest values", "devices", responses={200: ("devices", "DeviceList"), 503: _UNAVAILABLE[1]}),
    Route("POST", "/api/devices", "add_device", "Add a device (persisted; its actor starts at once)", "devices", body="DeviceSettings", protected=True,
          responses={201: ("device added", "DeviceChange"), **_WRITE_ERRORS, 409: ("a device with this id exists", "Error"), 501: ("device management not available", "Error")}),
    Route("GET", "/api/devices/{id}", "get_device", "One device", "devices", params=(_DEVICE_ID,), responses={200: ("device", "Device"), **dict([_BAD, _NOT_FOUND, _UNAVAILABLE])}),
    Route("DELETE", "/api/devices/{id}", "remove_device", "Remove a device (its actor stops)", "devices", params=(_DEVICE_ID,), protected=True,
          responses={200: ("device removed", "DeviceChange"), **_WRITE_ERRORS, 404: ("no such device", "Error"), 501: ("device management not available", "Error")}),
    Route("GET", "/api/outbox", "outbox", "Store-and-forward state: pending, acknowledged, budget, transports", "outbox", responses={200: ("outbox", "Outbox"), 503: _UNAVAILABLE[1]}),
    Route("GET", "/api/outbox/dead-letters", "dead_letters", "Batches a receiver refused for good, parked with the reason (they count in the byte budget)", "outbox",
          responses={200: ("dead letters", "DeadLetterList"), 503: _UNAVAILABLE[1]}),
    Route("POST", "/api/transports/{name}/dead-letters/resend", "resend_dead_letters", "Send a transport's parked batches again (all, or those `ids`)", "outbox",
          params=(_id("name", "transport"),), body="ResendRequest", protected=True,
          responses={200: ("queued", "ResendResult"), **_WRITE_ERRORS, 404: ("no such transport", "Error")}),
    Route("PUT", "/api/transports/{name}", "update_transport", "Change an upload transport's settings", "outbox", params=(_id("name", "transport"),), body="TransportSettings", protected=True,
          responses={200: ("transport updated", "TransportChange"), **_WRITE_ERRORS, 404: ("no such transport", "Error"), 501: ("transport settings not available", "Error")}),
    Route("GET", "/api/chargers", "list_chargers", "All known chargers", "chargers", responses={200: ("chargers", "ChargerList"), 503: _UNAVAILABLE[1]}),
    Route("GET", "/api/chargers/{id}", "get_charger", "One charger with connectors", "chargers", params=(_CHARGER_ID,), responses={200: ("charger", "Charger"), **dict([_BAD, _NOT_FOUND, _UNAVAILABLE])}),
    _charger_command("remote-start", "RemoteStartTransaction", "RemoteStart"),
    _charger_command("remote-stop", "RemoteStopTransaction", "RemoteStop"),
    _charger_command("reserve", "ReserveNow", "Reserve"),
    _charger_command("cancel-reservation", "CancelReservation", "CancelReservation"),
    _charger_command("availability", "ChangeAvailability", "Availability"),
    _charger_command("reset", "Reset", "Reset"),
    _charger_command("trigger", "TriggerMessage", "Trigger"),
    _charger_command("configuration", "ChangeConfiguration", "ChangeConfiguration"),
    Route("GET", "/api/chargers/{id}/configuration", "charger_get_configuration", "GetConfiguration (may reveal charger secrets, hence protected)", "chargers",
          params=(_CHARGER_ID, Param("key", "query", {"type": "string", "maxLength": 1024, "pattern": r"^[A-Za-z0-9_.-]{1,50}(,[A-Za-z0-9_.-]{1,50})*$"}, False, "comma-separated configuration keys (all when absent)")),
          protected=True, responses={200: ("the charger's answer", "CommandResult"), **_WRITE_ERRORS, 404: ("no such charger", "Error"), 501: ("this gateway has no OCPP central system", "Error")}),
    Route("GET", "/api/transactions", "list_transactions", "Charging transactions, newest first", "chargers",
          params=(Param("charger", "query", schemas.IdentifierSchema, False, "only this charger"),
                  Param("idTag", "query", schemas.IdTagSchema, False, "only this idTag"),
                  Param("since", "query", {"type": "string", "maxLength": 64}, False, "only transactions started at or after this time: RFC 3339 or epoch seconds"),
                  _LIMIT),
          responses={200: ("transactions", "TransactionList"), **dict([_BAD, _UNAVAILABLE])}),
    Route("GET", "/api/transactions/{id}", "get_transaction", "One transaction", "chargers",
          params=(Param("id", "path", {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}, True, "transaction id"),),
          responses={200: ("transaction", "Transaction"), **dict([_BAD, _NOT_FOUND, _UNAVAILABLE])}),
    Route("GET", "/api/crypto", "crypto", "Gateway identity (also under the Sourceful gateway's field names)", "identity", responses={200: ("identity", "Crypto"), 503: _UNAVAILABLE[1]}),
    Route("GET", "/api/config", "config", "Effective configuration, secrets redacted", "status", responses={200: ("configuration", "Config"), 503: _UNAVAILABLE[1]}),
    Route("GET", "/api/uptime", "uptime", "Uptime in milliseconds (Sourceful-compatible)", "compat", responses={200: ("uptime", "Uptime")}),
    Route("GET", "/api/version", "version", "Gateway version (Sourceful-compatible)", "compat", responses={200: ("version", "Version")}),
    Route("GET", "/api/hello", "hello", "Liveness greeting (Sourceful-compatible)", "compat", responses={200: ("greeting", "Hello")}),
    Route("GET", "/api/wifi", "wifi_status", "Wi-Fi state: connected network, signal, address, whether provisioned", "provisioning",
          responses={200: ("Wi-Fi status", "WifiStatus"), 503: _WIFI_UNAVAILABLE}),
    Route("GET", "/api/wifi/scan", "wifi_scan", "Visible Wi-Fi networks, strongest first", "provisioning",
          responses={200: ("networks", "WifiScan"), 502: _WIFI_FAILED, 503: _WIFI_UNAVAILABLE}),
    Route("POST", "/api/wifi", "wifi_connect", "Provision Wi-Fi: store the network and start connecting (poll GET /api/wifi); the key is write-only", "provisioning",
          body="WifiCredentials", protected=True, responses={202: ("stored; connecting in the background", "WifiStatus"), **_WRITE_ERRORS, 502: _WIFI_FAILED, 503: _WIFI_UNAVAILABLE}),
    Route("DELETE", "/api/wifi", "wifi_forget", "Forget the provisioned Wi-Fi network", "provisioning", protected=True,
          responses={200: ("forgotten", "WifiStatus"), **_WRITE_ERRORS, 502: _WIFI_FAILED, 503: _WIFI_UNAVAILABLE}),
    Route("GET", "/api/ble", "ble_status", "BLE provisioning: state (unavailable with a reason), advertising, window", "provisioning",
          responses={200: ("BLE status", "BleStatus"), 501: _NO_BLE, 503: _UNAVAILABLE[1]}),
    Route("POST", "/api/ble/window", "ble_open_window", "Open (or extend) the BLE provisioning window", "provisioning", body="BleWindowRequest", protected=True,
          responses={200: ("window open", "BleStatus"), **_WRITE_ERRORS, 501: _NO_BLE, 503: ("BLE is restarting or unavailable (no BlueZ, no adapter); see Retry-After", "Error")}),
    Route("DELETE", "/api/ble/window", "ble_close_window", "Close the BLE provisioning window now", "provisioning", protected=True,
          responses={200: ("window closed", "BleStatus"), **_WRITE_ERRORS, 501: _NO_BLE}),
    Route("GET", "/api/openapi.json", "openapi", "This document", "meta", responses={200: ("OpenAPI 3.1 document", None)}),
    Route("GET", "/metrics", "metrics", "Prometheus metrics (text exposition format 0.0.4)", "meta", responses={200: ("metrics", None)}, content_type="text/plain"),
)


def route_for(method: str, path: str) -> Route | None:
    """The table row for a registered (method, path template), if any."""
    for route in ROUTES:
        if route.method == method and route.path == path:
            return route
    return None
