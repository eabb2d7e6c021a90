"""The route table: every endpoint the API serves, described once as data.

The app registers exactly these routes, the OpenAPI document is generated from them,
the token check is applied from the `protected` flag, and the tests enumerate them
(token enforcement, fuzzing, document coverage). Adding an endpoint means adding a
row here and a handler with the same `operation` name in `actors.api.app`.
"""

from __future__ import annotations

from actors.api import charger_admin, loadpoints, schemas
from storage.chargers import CONNECTOR_STATUSES
from actors.web import api as web_page
from actors.api.route_spec import (  # noqa: F401 - Location, Param and Route are re-exported for the app and its tests
    Location, Param, Route, BAD_INPUT, CHARGER_ID, PERSONAL_READ_ERRORS, DEVICE_ID, LIMIT, NOT_FOUND, NO_BLE, UNAVAILABLE, WIFI_FAILED, WIFI_UNAVAILABLE, WRITE_ERRORS, charger_command, path_id,
)

CONNECTOR_ID = Param("connectorId", "path", {"type": "integer", "minimum": 1, "maximum": 100}, True, "the connector (1 and up, as the charger numbers them)")
NO_CONNECTOR = dict([(404, ("no such charger, or it never reported this connector", "Error"))])
SINCE = {
    "type": "string", "maxLength": 64,
    "anyOf": [{"format": "date-time", "pattern": r"^\d{4}-\d{2}-\d{2}[Tt ]\d{2}:\d{2}:\d{2}(\.\d{1,9})?([Zz]|[+-]\d{2}:\d{2})$"},
              {"pattern": r"^\d{1,10}(\.\d{1,9})?$", "description": "epoch seconds (at most 10 digits before the point)"}],
}
"""What `parse_since` accepts, so a client (or a fuzzer) can tell a valid `since` from one that is a 400: RFC 3339 with an
explicit offset, or non-negative epoch seconds."""
TRANSACTION_ID = Param("id", "path", {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}, True, "transaction id")

CORE_ROUTES: tuple[Route, ...] = (
    Route("GET", "/api/health", "health", "Overall health: ok or degraded, with reasons", "status", responses={200: ("health", "Health"), 503: UNAVAILABLE[1]}),
    Route("GET", "/api/actors", "actors", "The supervision tree", "status", responses={200: ("actor tree", "ActorTree"), 503: UNAVAILABLE[1]}),
    Route("GET", "/api/devices", "list_devices", "All devices with their latest values", "devices", responses={200: ("devices", "DeviceList"), 503: UNAVAILABLE[1]}),
    Route("POST", "/api/devices", "add_device", "Add a device (persisted; its actor starts at once)", "devices", body="DeviceSettings", protected=True,
          responses={201: ("device added", "DeviceChange"), **WRITE_ERRORS, 409: ("a device with this id exists", "Error"), 501: ("device management not available", "Error")}),
    Route("GET", "/api/devices/{id}", "get_device", "One device", "devices", params=(DEVICE_ID,), responses={200: ("device", "Device"), **dict([BAD_INPUT, NOT_FOUND, UNAVAILABLE])}),
    Route("DELETE", "/api/devices/{id}", "remove_device", "Remove a device (its actor stops)", "devices", params=(DEVICE_ID,), protected=True,
          responses={200: ("device removed", "DeviceChange"), **WRITE_ERRORS, 404: ("no such device", "Error"), 501: ("device management not available", "Error")}),
    Route("GET", "/api/outbox", "outbox", "Store-and-forward state: pending, acknowledged, budget, transports", "outbox", responses={200: ("outbox", "Outbox"), 503: UNAVAILABLE[1]}),
    Route("GET", "/api/outbox/dead-letters", "dead_letters", "Batches a receiver refused for good, parked with the reason (they count in the byte budget)", "outbox",
          responses={200: ("dead letters", "DeadLetterList"), 503: UNAVAILABLE[1]}),
    Route("POST", "/api/transports/{name}/dead-letters/resend", "resend_dead_letters", "Send a transport's parked batches again (all, or those `ids`)", "outbox",
          params=(path_id("name", "transport"),), body="ResendRequest", protected=True,
          responses={200: ("queued", "ResendResult"), **WRITE_ERRORS, 404: ("no such transport", "Error")}),
    Route("PUT", "/api/transports/{name}", "update_transport", "Change an upload transport's settings", "outbox", params=(path_id("name", "transport"),), body="TransportSettings", protected=True,
          responses={200: ("transport updated", "TransportChange"), **WRITE_ERRORS, 404: ("no such transport", "Error"), 501: ("transport settings not available", "Error")}),
    Route("GET", "/api/chargers", "list_chargers", "Known chargers; `status` and `serial` narrow the list", "chargers",
          params=(Param("status", "query", {"enum": list(CONNECTOR_STATUSES)}, False,
                        "only chargers with a connector (1 and up) in this status, an operator's override counting over the charger's report; "
                        "`Available` also needs the charger connected and its registration Accepted (one that cannot start a session is not available)"),
                  Param("serial", "query", {"type": "string", "minLength": 1, "maxLength": 25}, False,
                        "only the charger with this serial number (BootNotification's chargePointSerialNumber, else chargeBoxSerialNumber)")),
          responses={200: ("chargers", "ChargerList"), **dict([BAD_INPUT, UNAVAILABLE])}),
    Route("GET", "/api/chargers/{id}", "get_charger", "One charger with connectors", "chargers", params=(CHARGER_ID,), responses={200: ("charger", "Charger"), **dict([BAD_INPUT, NOT_FOUND, UNAVAILABLE])}),
    Route("PUT", "/api/chargers/{id}/connectors/{connectorId}/override", "set_connector_override",
          "Override a connector's status for maintenance (stored until lifted; the charger's own report is kept beside it)", "chargers",
          params=(CHARGER_ID, CONNECTOR_ID), body="ConnectorOverrideRequest", protected=True,
          responses={200: ("overridden", "ConnectorOverrideResult"), **WRITE_ERRORS, **NO_CONNECTOR}),
    Route("DELETE", "/api/chargers/{id}/connectors/{connectorId}/override", "clear_connector_override",
          "Lift a connector's override (and send ChangeAvailability Operative when it was Faulted or Unavailable)", "chargers",
          params=(CHARGER_ID, CONNECTOR_ID, Param("change_availability", "query", {"type": "boolean", "default": True}, False,
                                                 "send the charger ChangeAvailability Operative when the lifted override was Faulted or Unavailable")),
          protected=True, responses={200: ("no override now (`lifted` says whether there was one)", "ConnectorOverrideResult"), **WRITE_ERRORS, **NO_CONNECTOR}),
    charger_command("remote-start", "RemoteStartTransaction", "RemoteStart", summary="start a session (the answer carries a live_token when accepted)"),
    charger_command("remote-stop", "RemoteStopTransaction", "RemoteStop", summary="stop a session"),
    charger_command("reserve", "ReserveNow", "Reserve", summary="reserve a connector (the gateway assigns the reservationId, in the result)"),
    charger_command("cancel-reservation", "CancelReservation", "CancelReservation", summary="cancel a reservation"),
    charger_command("availability", "ChangeAvailability", "Availability", summary="make a connector (0: all) operative or inoperative"),
    charger_command("reset", "Reset", "Reset", summary="reboot the charger (Soft or Hard)"),
    charger_command("trigger", "TriggerMessage", "Trigger", summary="ask the charger to send a message now"),
    charger_command("configuration", "ChangeConfiguration", "ChangeConfiguration", summary="set a configuration key"),
    charger_command("configuration", "GetConfiguration", None, method="GET", summary="read configuration keys (may reveal charger secrets, hence protected)",
                    params=(Param("key", "query", {"type": "string", "maxLength": 1024, "pattern": r"^[A-Za-z0-9_.-]{1,50}(,[A-Za-z0-9_.-]{1,50})*$"}, False,
                                  "comma-separated configuration keys (all when absent)"),)),
    charger_command("clear-cache", "ClearCache", "ClearCache", body_required=False, summary="clear the charger's authorization cache (no body, or {})"),
    charger_command("unlock", "UnlockConnector", "UnlockConnector", summary="unlock a connector (answers Unlocked, UnlockFailed or NotSupported)"),
    charger_command("charging-profile", "SetChargingProfile", "SetChargingProfile", summary="install a charging profile"),
    charger_command("clear-charging-profile", "ClearChargingProfile", "ClearChargingProfile", body_required=False,
                    summary="clear charging profiles (no body or {}: all of them)"),
    charger_command("composite-schedule", "GetCompositeSchedule", "GetCompositeSchedule", summary="the schedule the charger will follow on a connector"),
    charger_command("local-list", "SendLocalList", "SendLocalList", summary="send (a change to) the local authorization list, entries as given"),
    charger_command("local-list-version", "GetLocalListVersion", None, method="GET",
                    summary="the version of the charger's local authorization list (0: empty; -1 answers 409 NotSupported)"),
    charger_command("diagnostics", "GetDiagnostics", "GetDiagnostics", summary="have the charger upload diagnostics to `location` (answers the fileName)"),
    charger_command("firmware", "UpdateFirmware", "UpdateFirmware", summary="have the charger fetch and install firmware from `location` at retrieveDate"),
    charger_command("data-transfer", "DataTransfer", "DataTransfer", summary="a vendor-specific request (answers Accepted, Rejected, UnknownMessageId or UnknownVendorId)"),
    Route("GET", "/api/chargers/{id}/commands/{command_id}", "charger_command_status", "A command's outcome, pending or final (kept 24 h)", "chargers",
          params=(CHARGER_ID, Param("command_id", "path", {"type": "string", "pattern": "^[0-9a-f]{16}$"}, True, "the command_id a command answered with")),
          protected=True, responses={200: ("the command as last known", "CommandStatus"), **WRITE_ERRORS, 404: ("no such command for this charger (or it expired)", "Error")}),
    Route("GET", "/api/transactions", "list_transactions", "Charging transactions, newest first (they carry drivers' idTags, hence protected)", "chargers",
          params=(Param("charger", "query", schemas.ChargerIdSchema, False, "only this charger (percent-encoded, `+` as %2B)"),
                  Param("idTag", "query", schemas.IdTagSchema, False, "only this idTag"),
                  Param("since", "query", SINCE, False, "only transactions started at or after this time: RFC 3339 or epoch seconds"),
                  LIMIT),
          protected=True, responses={200: ("transactions", "TransactionList"), **PERSONAL_READ_ERRORS}),
    Route("GET", "/api/transactions/{id}", "get_transaction", "One transaction with its meter samples (protected: it carries the driver's idTag)", "chargers",
          params=(TRANSACTION_ID,), protected=True, responses={200: ("transaction", "Transaction"), **PERSONAL_READ_ERRORS, **dict([NOT_FOUND])}),
    Route("PUT", "/api/transactions/{id}/payment", "set_payment_reference",
          "Set the session's payment reference: the same one again changes nothing, a different one is 409 unless `replace`", "chargers",
          params=(TRANSACTION_ID,), body="PaymentReference", protected=True,
          responses={200: ("stored; the session as GET /api/transactions/{id} shows it", "Transaction"), **WRITE_ERRORS, **dict([NOT_FOUND]),
                     409: ("the session has another payment reference (`error` payment_reference_conflict, `payment_ref` the one set)", "Error")}),
    Route("GET", "/api/reservations", "list_reservations", "Reservations (ReserveNow), newest first (protected: they carry idTags)", "chargers",
          params=(Param("charger", "query", schemas.ChargerIdSchema, False, "only this charger (percent-encoded)"),
                  Param("status", "query", {"enum": ["active", "expired", "cancelled", "used", "refused"]}, False, "only reservations in this state"),
                  LIMIT),
          protected=True, responses={200: ("reservations", "ReservationList"), **PERSONAL_READ_ERRORS}),
    Route("GET", "/api/reservations/{id}", "get_reservation", "One reservation", "chargers",
          params=(Param("id", "path", {"type": "integer", "minimum": 1, "maximum": 2**31 - 1}, True, "reservation id"),),
          protected=True, responses={200: ("reservation", "Reservation"), **PERSONAL_READ_ERRORS, **dict([NOT_FOUND])}),
    Route("GET", "/api/crypto", "crypto", "Gateway identity (also under the Sourceful gateway's field names)", "identity", responses={200: ("identity", "Crypto"), 503: UNAVAILABLE[1]}),
    Route("GET", "/api/config", "config", "Effective configuration, secrets redacted", "status", responses={200: ("configuration", "Config"), 503: UNAVAILABLE[1]}),
    Route("GET", "/api/uptime", "uptime", "Uptime in milliseconds (Sourceful-compatible)", "compat", responses={200: ("uptime", "Uptime")}),
    Route("GET", "/api/version", "version", "Gateway version (Sourceful-compatible)", "compat", responses={200: ("version", "Version")}),
    Route("GET", "/api/hello", "hello", "Liveness greeting (Sourceful-compatible)", "compat", responses={200: ("greeting", "Hello")}),
    Route("GET", "/api/wifi", "wifi_status", "Wi-Fi state: connected network, signal, address, whether provisioned", "provisioning",
          responses={200: ("Wi-Fi status", "WifiStatus"), 503: WIFI_UNAVAILABLE}),
    Route("GET", "/api/wifi/scan", "wifi_scan", "Visible Wi-Fi networks, strongest first", "provisioning",
          responses={200: ("networks", "WifiScan"), 502: WIFI_FAILED, 503: WIFI_UNAVAILABLE}),
    Route("POST", "/api/wifi", "wifi_connect", "Provision Wi-Fi: store the network and start connecting (poll GET /api/wifi); the key is write-only", "provisioning",
          body="WifiCredentials", protected=True, responses={202: ("stored; connecting in the background", "WifiStatus"), **WRITE_ERRORS, 502: WIFI_FAILED, 503: WIFI_UNAVAILABLE}),
    Route("DELETE", "/api/wifi", "wifi_forget", "Forget the provisioned Wi-Fi network", "provisioning", protected=True,
          responses={200: ("forgotten", "WifiStatus"), **WRITE_ERRORS, 502: WIFI_FAILED, 503: WIFI_UNAVAILABLE}),
    Route("GET", "/api/ble", "ble_status", "BLE provisioning: state (unavailable with a reason), advertising, window", "provisioning",
          responses={200: ("BLE status", "BleStatus"), 501: NO_BLE, 503: UNAVAILABLE[1]}),
    Route("POST", "/api/ble/window", "ble_open_window", "Open (or extend) the BLE provisioning window", "provisioning", body="BleWindowRequest", protected=True,
          responses={200: ("window open", "BleStatus"), **WRITE_ERRORS, 501: NO_BLE, 503: ("BLE is restarting or unavailable (no BlueZ, no adapter); see Retry-After", "Error")}),
    Route("DELETE", "/api/ble/window", "ble_close_window", "Close the BLE provisioning window now", "provisioning", protected=True,
          responses={200: ("window closed", "BleStatus"), **WRITE_ERRORS, 501: NO_BLE}),
    Route("GET", "/api/openapi.json", "openapi", "This document", "meta", responses={200: ("OpenAPI 3.1 document", None)}),
    Route("GET", "/metrics", "metrics", "Prometheus metrics (text exposition format 0.0.4)", "meta", responses={200: ("metrics", None)}, content_type="text/plain"),
)

ROUTES: tuple[Route, ...] = CORE_ROUTES + charger_admin.ROUTES + loadpoints.ROUTES
ROUTES += web_page.ROUTES  # the local web page's sign-in, today's energy and warnings (actors/web/api.py)


def route_for(method: str, path: str) -> Route | None:
    """The table row for a registered (method, path template), if any."""
    for route in ROUTES:
        if route.method == method and route.path == path:
            return route
    return None
