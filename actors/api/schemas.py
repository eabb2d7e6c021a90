"""JSON Schemas (2020-12, as OpenAPI 3.1 uses them) for every request and response.

One source of truth: the OpenAPI document embeds these under `components/schemas`, and
the handlers validate request bodies and parameters against the very same objects, so
the document can never promise a check the server does not make (or the reverse).
Response schemas leave `additionalProperties` open so the gateway can add fields
without breaking clients; request schemas are closed so a typo is a 400 that names it.

Why one module: it is data, one JSON Schema per request and response type, read top to
bottom like the API reference; the schemas refer to each other by name, so one namespace
keeps every `$ref` checkable in one place.
"""

from __future__ import annotations

import copy
import json
from functools import cache
from pathlib import Path
from typing import Any

from storage.chargers import CHARGE_POINT_ID_PATTERN

ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.:-]{0,63}$"
"""Device and transport ids: safe in URLs, logs, file names and metric labels."""

IdentifierSchema: dict[str, Any] = {"type": "string", "pattern": ID_PATTERN, "maxLength": 64}
ChargerIdSchema: dict[str, Any] = {
    "type": "string", "pattern": CHARGE_POINT_ID_PATTERN, "maxLength": 48,
    "description": "a chargePointId exactly as the charger connects with it (storage.chargers.CHARGE_POINT_ID_PATTERN); "
                   "percent-encode `|`, `+`, `*` and `@` in URLs (in a query string `+` would read as a space)",
}
"""Charger ids: whatever the OCPP handshake accepts, so every charger that connects can be read and commanded."""
IdTagSchema: dict[str, Any] = {"type": "string", "minLength": 1, "maxLength": 20, "description": "OCPP IdToken (CiString20)"}
DateTime: dict[str, Any] = {"type": "string", "format": "date-time"}
NullableDateTime: dict[str, Any] = {"type": ["string", "null"], "format": "date-time"}
Count: dict[str, Any] = {"type": "integer", "minimum": 0}
NullableCount: dict[str, Any] = {"type": ["integer", "null"], "minimum": 0}
NullableNumber: dict[str, Any] = {"type": ["number", "null"]}
NullableString: dict[str, Any] = {"type": ["string", "null"]}
ConnectorId: dict[str, Any] = {"type": "integer", "minimum": 0, "maximum": 100}

# ---------------------------------------------------------------- responses
Error = {
    "type": "object",
    "required": ["error", "message"],
    "properties": {
        "error": {"type": "string", "description": "machine-readable code: bad_request, unauthorized, not_found, method_not_allowed, payload_too_large, conflict, rejected, unavailable, not_implemented"},
        "message": {"type": "string"},
        "field": {"type": "string", "description": "the offending input: a body field (dotted path), query.<name>, path.<name>, header.<name> or body"},
    },
}

Health = {
    "type": "object",
    "required": ["status", "reasons", "uptime_s", "version", "boot_id"],
    "properties": {
        "status": {"enum": ["ok", "degraded"]},
        "reasons": {"type": "array", "items": {"type": "string"}},
        "uptime_s": {"type": "number", "minimum": 0},
        "version": {"type": "string"},
        "boot_id": NullableString,
        "started_at": NullableDateTime,
    },
}

ActorRecord = {
    "type": "object",
    "required": ["name", "kind", "state", "restarts"],
    "properties": {
        "name": {"type": "string"},
        "path": {"type": "string"},
        "kind": {"type": "string", "description": "worker or supervisor"},
        "pid": {"type": ["integer", "null"]},
        "state": {"type": "string", "description": "e.g. starting, running, restarting, stopped, failed, or a state the actor published"},
        "restarts": Count,
        "last_error": NullableString,
        "since": {"type": ["number", "string", "null"], "description": "when the actor entered its state (epoch seconds or RFC 3339)"},
        "info": {"type": "object", "description": "what the actor published about itself"},
        "children": {"type": "array", "items": {"$ref": "#/components/schemas/ActorRecord"}},
    },
}

ActorTree = {"type": "object", "required": ["actors"], "properties": {"actors": {"type": "array", "items": {"$ref": "#/components/schemas/ActorRecord"}}}}

Device = {
    "type": "object",
    "required": ["id", "state", "online", "values"],
    "properties": {
        "id": {"type": "string"},
        "profile": NullableString,
        "connection": {"type": "object", "description": "how the gateway reaches the device (host/port/unit_id or serial settings)"},
        "state": {"type": "string", "description": "online, offline, restarting, starting, unknown, ..."},
        "online": {"type": "boolean"},
        "serial": NullableString,
        "model": {"type": ["string", "null"], "description": "the model the device reports in its identity registers (a name, or a vendor's type code in decimal, such as SMA's device type)"},
        "last_poll": NullableDateTime,
        "values": {"type": "object", "additionalProperties": {"type": ["number", "string", "boolean", "null"]}, "description": "latest normalized quantities by name (ac_power_w, energy_total_wh, ...)"},
        "polls": NullableCount,
        "errors": NullableCount,
        "gaps": NullableCount,
        "poll_latency_ms": NullableNumber,
        "unacknowledged_batches": {"type": ["integer", "null"], "minimum": 0, "description": "batches sent to the harvest and not yet acknowledged (at most 8)"},
        "batches_given_up": {"type": ["integer", "null"], "minimum": 0, "description": "batches given up while the harvest did not acknowledge (each left a gap record)"},
        "last_error": NullableString,
        "restarts": NullableCount,
    },
}

DeviceList = {"type": "object", "required": ["devices"], "properties": {"devices": {"type": "array", "items": {"$ref": "#/components/schemas/Device"}}}}

Transport = {
    "type": "object",
    "required": ["name"],
    "properties": {
        "name": {"type": "string"},
        "url": NullableString,
        "enabled": {"type": ["boolean", "null"]},
        "state": NullableString,
        "last_success": NullableDateTime,
        "last_error": NullableString,
        "backoff_s": NullableNumber,
        "next_attempt": NullableDateTime,
        "acked_seq": {"type": ["object", "integer", "null"], "description": "highest acknowledged sequence (per device when an object)"},
        "dead_letters": NullableCount,
        "uploaded_readings": NullableCount,
        "uploaded_batches": NullableCount,
        "upload_errors": NullableCount,
    },
}

Outbox = {
    "type": "object",
    "required": ["available", "transports"],
    "properties": {
        "available": {"type": "boolean", "description": "false while no outbox store exists (counts are then null)"},
        "pending_items": {**NullableCount, "description": "items committed and not yet acknowledged by a receiver: readings, gaps, device events and charging sessions"},
        "acknowledged_items": {**NullableCount, "description": "items acknowledged by every receiver and still in the outbox"},
        "bytes": NullableCount,
        "oldest_pending": NullableDateTime,
        "gaps": NullableCount,
        "budget_bytes": NullableCount,
        "budget_used": {"type": ["number", "null"], "minimum": 0, "description": "fraction of the byte budget in use"},
        "dead_letters": NullableCount,
        "dead_letter_bytes": NullableCount,
        "disk_full": {"type": ["boolean", "null"], "description": "no room left for the outbox (free space below the watermark)"},
        "transports": {"type": "array", "items": {"$ref": "#/components/schemas/Transport"}},
    },
}

DeadLetter = {
    "type": "object",
    "required": ["id", "transport", "items"],
    "properties": {
        "id": Count,
        "transport": {"type": "string"},
        "parked_at": NullableDateTime,
        "http_status": {"type": ["integer", "null"]},
        "error": NullableString,
        "items": Count,
        "bytes": Count,
        "queued_to_resend": {"type": "boolean", "description": "queued by a resend request, not yet delivered"},
    },
}

DeadLetterList = {"type": "object", "required": ["dead_letters"], "properties": {"dead_letters": {"type": "array", "items": {"$ref": "#/components/schemas/DeadLetter"}}}}

ResendRequest = {
    "type": "object",
    "additionalProperties": False,
    "description": "without `ids`, every parked batch of the transport is sent again",
    "properties": {"ids": {"type": "array", "items": {"type": "integer", "minimum": 1}, "minItems": 1, "maxItems": 1000}},
}

ResendResult = {"type": "object", "required": ["transport", "queued"], "properties": {"transport": {"type": "string"}, "queued": Count}}

Connector = {
    "type": "object",
    "required": ["id", "status"],
    "properties": {
        "id": ConnectorId,
        "status": {"type": "string", "description": "OCPP ChargePointStatus as the spec names it: the operator's override while one is set, "
                                                    "else what the charger last reported"},
        "reported_status": {"type": ["string", "null"], "description": "what the charger itself last reported (StatusNotification), override or not"},
        "override": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ConnectorOverride"}],
                     "description": "the operator's maintenance override (PUT .../connectors/{connectorId}/override), null when none"},
        "error_code": NullableString,
        "transaction_id": {"type": ["integer", "null"]},
        "updated_at": NullableDateTime,
    },
}

ConnectorOverride = {
    "type": "object",
    "required": ["status", "reason", "since"],
    "properties": {"status": {"enum": ["Available", "Unavailable", "Faulted"]}, "reason": NullableString, "since": NullableDateTime},
}

ConnectorOverrideRequest = {
    "type": "object",
    "additionalProperties": False,
    "required": ["status"],
    "properties": {
        "status": {"enum": ["Available", "Unavailable", "Faulted"], "description": "what REST and the available-charger list show for the connector"},
        "reason": {"type": "string", "minLength": 1, "maxLength": 200, "description": "why, for the next operator (shown with the override)"},
        "change_availability": {"type": "boolean", "default": True,
                                "description": "also send the charger ChangeAvailability: Inoperative for Faulted/Unavailable, Operative for Available"},
    },
}

ConnectorOverrideResult = {
    "type": "object",
    "required": ["charger", "connector", "status", "reported_status", "override", "change_availability"],
    "properties": {
        "charger": {"type": "string"},
        "connector": ConnectorId,
        "status": {"type": "string", "description": "what the connector shows now"},
        "reported_status": NullableString,
        "override": {"oneOf": [{"type": "null"}, {"$ref": "#/components/schemas/ConnectorOverride"}]},
        "lifted": {"type": "boolean", "description": "DELETE only: whether there was an override to lift (a second DELETE finds none, and answers 200)"},
        "change_availability": {
            "type": "object",
            "required": ["sent", "type", "status", "error"],
            "description": "the ChangeAvailability told to the charger; the override stands whatever the charger answered",
            "properties": {
                "sent": {"type": "boolean", "description": "false when not asked for, or when it never reached the charger (`error`)"},
                "type": {"type": ["string", "null"], "enum": ["Inoperative", "Operative", None]},
                "status": {"type": ["string", "null"], "description": "the charger's answer: Accepted, Scheduled (after the running session) or Rejected"},
                "error": {"type": ["string", "null"], "description": "charger_offline, queue_full, no_answer, charger_error, ... (as a charger command's `error`)"},
            },
        },
    },
}

Charger = {
    "type": "object",
    "required": ["id", "connected", "connectors"],
    "properties": {
        "id": {"type": "string"},
        "vendor": NullableString,
        "model": NullableString,
        "serial": NullableString,
        "firmware": NullableString,
        "connected": {"type": "boolean"},
        "registration": NullableString,
        "last_seen": NullableDateTime,
        "connectors": {"type": "array", "items": {"$ref": "#/components/schemas/Connector"}},
        "messages": {"type": "object", "additionalProperties": Count, "description": "OCPP messages handled, by action"},
    },
}

ChargerList = {"type": "object", "required": ["chargers"], "properties": {"chargers": {"type": "array", "items": {"$ref": "#/components/schemas/Charger"}}}}

Transaction = {
    "type": "object",
    "required": ["id", "charger"],
    "properties": {
        "id": {"type": "integer"},
        "charger": {"type": "string"},
        "connector": {"type": ["integer", "null"]},
        "id_tag": NullableString,
        "start": NullableDateTime,
        "stop": NullableDateTime,
        "meter_start_wh": NullableNumber,
        "meter_stop_wh": NullableNumber,
        "energy_wh": NullableNumber,
        "stop_reason": NullableString,
        "state": NullableString,
        "reservation_id": {"type": ["integer", "null"]},
        "payment_ref": {"type": ["string", "null"], "description": "the payment reference (PUT /api/transactions/{id}/payment)"},
        "soc_percent": {"type": ["number", "null"], "description": "only in GET /api/transactions/{id}: the latest state of charge the charger reported (SoC)"},
        "current_a": {"type": ["number", "null"], "description": "only in GET /api/transactions/{id}: the latest current (Current.Import; "
                                                                 "the largest phase when only phases are sampled)"},
        "meter_values": {
            "type": "array",
            "description": "only in GET /api/transactions/{id}: the session's samples, oldest first",
            "items": {"type": "object", "required": ["timestamp", "measurand", "value"], "properties": {
                "timestamp": NullableDateTime, "measurand": {"type": "string"}, "value": {"type": "string"}, "unit": NullableString,
                "phase": NullableString, "context": NullableString, "connector": {"type": ["integer", "null"]}}},
        },
    },
}

PaymentReference = {
    "type": "object",
    "additionalProperties": False,
    "required": ["reference"],
    "properties": {
        "reference": {"type": "string", "pattern": r"^[!-~]([ -~]{0,126}[!-~])?$", "maxLength": 128,
                      "description": "the payment's reference (printable ASCII, 1-128 characters, no leading or trailing space)"},
        "replace": {"type": "boolean", "default": False, "description": "replace a different reference already set (else that is 409)"},
    },
}

Reservation = {
    "type": "object",
    "required": ["id", "charger", "connector", "id_tag", "expiry", "status", "ocpp_status"],
    "properties": {
        "id": {"type": "integer", "description": "the reservationId the gateway gave the charger"},
        "charger": {"type": "string"},
        "connector": {"type": "integer"},
        "id_tag": {"type": "string"},
        "parent_id_tag": NullableString,
        "expiry": NullableDateTime,
        "created": NullableDateTime,
        "status": {"enum": ["active", "expired", "cancelled", "used", "refused"],
                   "description": "active until used, cancelled or past its expiry; refused when ReserveNow was answered Faulted, Occupied, Rejected or Unavailable"},
        "ocpp_status": {"type": "string", "description": "as stored: Requested (sent, no answer yet), Accepted, Faulted, Occupied, Rejected, Unavailable, "
                                                         "Cancelled, Used or Expired"},
        "transaction_id": {"type": ["integer", "null"], "description": "the session that used it"},
    },
}

ReservationList = {"type": "object", "required": ["reservations"], "properties": {"reservations": {"type": "array", "items": {"$ref": "#/components/schemas/Reservation"}}}}

TransactionList = {"type": "object", "required": ["transactions"], "properties": {"transactions": {"type": "array", "items": {"$ref": "#/components/schemas/Transaction"}}}}

Crypto = {
    "type": "object",
    "required": ["available", "serial", "public_key", "key_id", "deviceName", "serialNumber", "publicKey"],
    "properties": {
        "available": {"type": "boolean", "description": "false until the gateway key exists"},
        "serial": NullableString,
        "public_key": {"type": ["string", "null"], "description": "PEM (SubjectPublicKeyInfo)"},
        "key_id": NullableString,
        "algorithm": NullableString,
        "deviceName": NullableString,
        "serialNumber": NullableString,
        "publicKey": {"type": ["string", "null"], "description": "hex of the uncompressed P-256 point, as the Sourceful gateway reports it"},
    },
}

Config = {"type": "object", "description": "the effective configuration; secrets are replaced by \"***\""}

Uptime = {"type": "object", "required": ["msek"], "properties": {"msek": {"type": "integer", "minimum": 0}}}
Version = {"type": "object", "required": ["version"], "properties": {"version": {"type": "string"}}}
Hello = {"type": "object", "required": ["message"], "properties": {"message": {"type": "string"}, "serial": NullableString}}

_COMMAND_FIELDS: dict[str, Any] = {
    "charger": {"type": "string"},
    "command": {"type": "string", "description": "the OCPP 1.6 action sent"},
    "command_id": {"type": "string", "description": "poll GET /api/chargers/{id}/commands/{command_id} for the outcome"},
    "status": {"type": "string", "description": "the charger's answer status as OCPP names it (Accepted, Rejected, NotSupported, Unlocked, ...); "
                                                "`Accepted` for answers that carry none (GetConfiguration, GetDiagnostics, UpdateFirmware, GetLocalListVersion "
                                                "except listVersion -1, which OCPP 1.6 defines as not supported: `NotSupported`); `Pending` while unanswered"},
    "result": {"type": ["object", "null"], "description": "the charger's answer payload as OCPP names its fields; null while pending"},
}

CommandResult = {
    "type": "object",
    "required": ["charger", "command", "status", "result"],
    "description": "the charger accepted: status Accepted, or the action's other positive answer (Scheduled, Unlocked, RebootRequired)",
    "properties": {
        **_COMMAND_FIELDS,
        "live_token": {"type": "string", "description": "remote start only: opens GET /api/live for the session this start produces"},
    },
}

CommandPending = {
    "type": "object",
    "required": ["charger", "command", "command_id", "status"],
    "description": "the command is with the charger's queue or the charger and not answered yet; it is neither withdrawn nor sent again. "
                   "Poll the `Location` (GET /api/chargers/{id}/commands/{command_id}) until `state` is done",
    "properties": {**_COMMAND_FIELDS, "status": {"const": "Pending"}, "state": {"const": "pending"}},
}

CommandError = {
    "type": "object",
    "required": ["error", "message"],
    "description": "a command that did not end in acceptance. `error` says how: rejected (the charger answered a non-accepting status, in `status`), "
                   "charger_not_accepted (its registration is Rejected; not sent), charger_error (it answered with a CALLERROR: `ocpp_error_code`, "
                   "`description`), invalid_response (its answer breaks the 1.6 schema), no_answer (sent, no answer within the OCPP call timeout or the "
                   "connection closed first: whether it acted is unknown, and the gateway does not send it again), outcome_unknown (the charger's "
                   "actor did not report at all), charger_offline / queue_full / not_sent (503: never sent to the charger; retry after Retry-After), "
                   "idempotency_key_reused (422)",
    "properties": {
        **Error["properties"],
        **_COMMAND_FIELDS,
        "ocpp_error_code": {"type": "string", "description": "charger_error / invalid_response: the OCPP-J error code (NotSupported, InternalError, ...)"},
        "description": {"type": "string", "description": "charger_error: the charger's error description"},
    },
}

CommandStatus = {
    "type": "object",
    "required": ["command_id", "charger", "command", "state", "http_status"],
    "description": "a command as last known: `state` pending (see CommandPending) or done; `http_status` and the other fields are what the command's "
                   "own request answered or would answer now (CommandResult or CommandError fields)",
    "properties": {
        **CommandError["properties"],
        "state": {"enum": ["pending", "done"]},
        "http_status": {"type": "integer", "description": "202 while pending, then the final status: 200, 400, 404, 409, 502, 503 or 504"},
        "live_token": CommandResult["properties"]["live_token"],
    },
}

DeviceChange = {"type": "object", "required": ["id", "status"], "properties": {"id": {"type": "string"}, "status": {"enum": ["added", "removed"]}, "device": {"type": "object"}}}
TransportChange = {"type": "object", "required": ["name", "status"], "properties": {"name": {"type": "string"}, "status": {"const": "updated"}, "transport": {"type": "object"}}}

# ----------------------------------------------------------------- requests
NO_WHITESPACE = r"^[^\t\n\u000b\f\r\u001c-\u001f \u0085\u00a0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]+$"
"""No character Python's str.isspace() calls whitespace (what the device validator refuses in a host), spelled out
because `\\s` means fewer characters in the ECMA-262 regexes clients and fuzzers read the pattern with."""


def _forbidden(why: str) -> dict[str, Any]:
    """A property that must be absent in this alternative; `why` becomes the 400's message."""
    return {"not": {}, "description": why}


def _device_settings() -> dict[str, Any]:
    """The REST body of a device, with the device validator's rules (actors/device/specs.py
    `validate_device`) in the schema itself, so REST, the configuration file, generated
    clients and fuzzers agree on what a device is:

    * what it reads: a vendor `profile` (one of the profile files), or SunSpec (`sunspec = true`
      or profile "sunspec"), never both;
    * how it is reached: Modbus TCP (`host`, optional `port`) or Modbus RTU (`serial_port`, optional
      `baudrate`, `parity`, `stopbits`), never both.

    Numbers and the id rule come from the validator's constants. REST adds only length bounds
    on strings, which a request body needs and no real setting comes near.
    """
    try:
        from actors.device import specs
        from actors.device.profile import profile_names
    except ImportError:  # a build without the device family: POST /api/devices answers 501 anyway
        return {"type": "object", "required": ["id"], "properties": {"id": IdentifierSchema}}

    def number(key: str, **extra: Any) -> dict[str, Any]:
        low, high, _ = specs.NUMBERS[key]
        return {"type": "integer" if key in specs.INTEGERS else "number", "minimum": low, "maximum": high, **extra}

    not_both_profiles = "give either profile or sunspec = true, not both"
    not_both_links = "give either host (Modbus TCP) or serial_port (Modbus RTU), not both"
    rtu_only = "only for Modbus RTU (serial_port)"
    return {
        "type": "object",
        "additionalProperties": False,
        "required": ["id"],
        "description": "the same settings as a [[devices]] entry of the configuration file: a vendor profile or SunSpec (sunspec = true), "
                       "reached over Modbus TCP (host, port) or RTU (serial_port, baudrate, parity, stopbits)",
        "properties": {
            "id": {"type": "string", "pattern": specs.ID_PATTERN, "maxLength": specs.ID_MAX_LENGTH},
            "profile": {"enum": profile_names(), "description": "the profile file (actors/device/profiles/<name>.toml); \"sunspec\" is SunSpec discovery"},
            "sunspec": {"type": "boolean", "description": "discover the device's SunSpec models (at 40000, 0 or 50000) instead of a vendor profile"},
            "host": {"type": "string", "minLength": 1, "maxLength": 253, "pattern": NO_WHITESPACE, "description": "a host name or IP address (Modbus TCP)"},
            "port": number("port"),
            "unit_id": number("unit_id", description="the Modbus unit id; the profile's own by default (1 for SunSpec)"),
            "poll_interval": number("poll_interval"),
            "timeout": number("timeout", description="seconds one request may take"),
            "backoff_cap": number("backoff_cap"),
            "raw_interval": number("raw_interval", description="seconds between readings that carry their raw registers (0: all)"),
            "serial_port": {"type": "string", "minLength": 1, "maxLength": 255, "description": "the serial device (Modbus RTU), such as /dev/ttyUSB0"},
            "baudrate": {"enum": list(specs.BAUDRATES), "default": 9600},
            "parity": {"enum": list(specs.PARITIES), "default": "N"},
            "stopbits": {"enum": list(specs.STOPBITS), "default": 1},
        },
        "allOf": [
            {"description": "what the device reads", "oneOf": [
                {"title": "vendor profile", "required": ["profile"],
                 "properties": {"profile": {"not": {"const": "sunspec"}}, "sunspec": {"const": False, "description": not_both_profiles}}},
                {"title": "SunSpec",
                 "anyOf": [{"required": ["sunspec"], "properties": {"sunspec": {"const": True}}},
                           {"required": ["profile"], "properties": {"profile": {"const": "sunspec"}}}],
                 "properties": {"profile": {"const": "sunspec", "description": not_both_profiles}}},
            ]},
            {"description": "how the gateway reaches the device", "oneOf": [
                {"title": "Modbus TCP", "required": ["host"],
                 "properties": {"serial_port": _forbidden(not_both_links), "baudrate": _forbidden(rtu_only), "parity": _forbidden(rtu_only),
                                "stopbits": _forbidden(rtu_only)}},
                {"title": "Modbus RTU", "required": ["serial_port"], "properties": {"host": _forbidden(not_both_links)}},
            ]},
        ],
    }


DeviceSettings = _device_settings()

TransportSettings = {
    "type": "object",
    "additionalProperties": False,
    "minProperties": 1,
    "description": "settings of an [[uploads]] entry; the transport restarts with them and they are kept across gateway restarts",
    "properties": {
        "url": {"type": "string", "minLength": 1, "maxLength": 2048, "pattern": r"^https?://[!-~]+$"},
        "max_count": {"type": "integer", "minimum": 1, "maximum": 100000},
        "max_bytes": {"type": "integer", "minimum": 1024, "maximum": 64 * 1024 * 1024},
        "backoff_min_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 3600},
        "backoff_max_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 86400},
        "jitter": {"type": "number", "minimum": 0, "maximum": 1},
        "timeout_s": {"type": "number", "exclusiveMinimum": 0, "maximum": 600},
        "idle_poll_s": {"type": "number", "minimum": 0.05, "maximum": 3600},
        "linger_s": {"type": "number", "minimum": 0, "maximum": 3600},
    },
}

RemoteStart = {
    "type": "object",
    "additionalProperties": False,
    "required": ["idTag"],
    "properties": {"idTag": IdTagSchema, "connectorId": {"type": "integer", "minimum": 1, "maximum": 100}},
}
RemoteStop = {"type": "object", "additionalProperties": False, "required": ["transactionId"], "properties": {"transactionId": {"type": "integer", "minimum": -(2**31), "maximum": 2**31 - 1}}}
Reserve = {
    "type": "object",
    "additionalProperties": False,
    "required": ["connectorId", "expiryDate", "idTag"],
    "description": "the reservation id is assigned by the gateway and returned in the result",
    "properties": {
        "connectorId": ConnectorId,
        "expiryDate": DateTime,
        "idTag": IdTagSchema,
        "parentIdTag": IdTagSchema,
    },
}
CancelReservation = {"type": "object", "additionalProperties": False, "required": ["reservationId"], "properties": {"reservationId": {"type": "integer", "minimum": 0, "maximum": 2**31 - 1}}}
Availability = {
    "type": "object",
    "additionalProperties": False,
    "required": ["connectorId", "type"],
    "properties": {"connectorId": ConnectorId, "type": {"enum": ["Inoperative", "Operative"]}},
}
Reset = {"type": "object", "additionalProperties": False, "required": ["type"], "properties": {"type": {"enum": ["Hard", "Soft"]}}}
Trigger = {
    "type": "object",
    "additionalProperties": False,
    "required": ["requestedMessage"],
    "properties": {
        "requestedMessage": {"enum": ["BootNotification", "DiagnosticsStatusNotification", "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StatusNotification"]},
        "connectorId": ConnectorId,
    },
}
ChangeConfiguration = {
    "type": "object",
    "additionalProperties": False,
    "required": ["key", "value"],
    "properties": {"key": {"type": "string", "minLength": 1, "maxLength": 50}, "value": {"type": "string", "maxLength": 500}},
}



@cache
def _official_request(action: str) -> dict[str, Any]:
    import ocpp

    text = (Path(ocpp.__file__).parent / "v16" / "schemas" / f"{action}.json").read_text(encoding="utf-8-sig")
    return json.loads(text)


INT32 = {"minimum": -(2**31), "maximum": 2**31 - 1}


def _strip(node: Any) -> Any:
    """Draft-4 bookkeeping out, and `multipleOf` (a float like 3700.3 fails `multipleOf: 0.1` in
    binary; the gateway checks it with exact decimals before sending, `actors.ocpp.frames`).
    Integers are held to 32 bits, OCPP-J's integer, which chargers store in an int32."""
    if isinstance(node, dict):
        stripped = {k: (_strip(v) if k != "properties" else {name: _strip(sub) for name, sub in v.items()}) for k, v in node.items() if k != "multipleOf"}
        if stripped.get("type") == "integer":
            stripped = {**INT32, **stripped}
        return stripped
    if isinstance(node, list):
        return [_strip(v) for v in node]
    return node


def ocpp_request(action: str, description: str) -> dict[str, Any]:
    """The REST body of a command: OCPP 1.6's own request schema for `action`, read from the
    official JSON schema files (the `ocpp` package ships them), in the OCPP field names.

    REST then checks exactly the shape the charger will be sent (required fields, enums,
    lengths, nested objects, RFC 3339 dates, URIs), and the 400 names the field.
    """
    schema = {k: v for k, v in _strip(copy.deepcopy(_official_request(action))).items() if k not in ("$schema", "id", "title")}
    schema["description"] = f"the OCPP 1.6 {action}.req payload: {description}"
    return schema


SendLocalList = ocpp_request("SendLocalList", "listVersion, updateType Full (replaces the list; no entries clears it) or Differential, "
                                              "and the AuthorizationData entries (idTag, and idTagInfo to add or change; without it, to remove)")
GetLocalListVersion = ocpp_request("GetLocalListVersion", "no fields")
ClearCache = ocpp_request("ClearCache", "no fields")
UnlockConnector = ocpp_request("UnlockConnector", "the connector to unlock")
SetChargingProfile = ocpp_request("SetChargingProfile", "connectorId (0: the whole charge point) and csChargingProfiles")
ClearChargingProfile = ocpp_request("ClearChargingProfile", "the profiles to clear, by id or by connectorId, chargingProfilePurpose and stackLevel; none: all")
GetCompositeSchedule = ocpp_request("GetCompositeSchedule", "connectorId (0: the grid connection), duration in seconds, optional chargingRateUnit")
GetDiagnostics = ocpp_request("GetDiagnostics", "the upload location (a URI), retries, retryInterval and the time window")
UpdateFirmware = ocpp_request("UpdateFirmware", "the firmware location (a URI), retrieveDate, retries and retryInterval")
DataTransfer = ocpp_request("DataTransfer", "vendorId, optional messageId and data (vendor-specific text)")

# ------------------------------------------------------- provisioning (Wi-Fi, BLE)
PSK_PATTERN = r"^(?:[ -~]{8,63}|[0-9A-Fa-f]{64})$"
"""WPA pre-shared key: an 8-63 character printable ASCII passphrase or a 64-hex-digit raw key."""

WifiCredentials = {
    "type": "object",
    "additionalProperties": False,
    "required": ["ssid"],
    "properties": {
        "ssid": {"type": "string", "minLength": 1, "maxLength": 32, "description": "network name, 1 to 32 bytes as UTF-8"},
        "psk": {"type": ["string", "null"], "minLength": 8, "maxLength": 64, "pattern": PSK_PATTERN, "writeOnly": True,
                "description": "8 to 63 printable ASCII characters or 64 hex digits; null or absent for an open network. Never returned or logged"},
    },
}

WifiStatus = {
    "type": "object",
    "required": ["state", "provisioned"],
    "properties": {
        "state": {"enum": ["connected", "connecting", "disconnected", "unavailable"]},
        "ssid": NullableString,
        "signal": {"type": ["integer", "null"], "minimum": 0, "maximum": 100, "description": "percent"},
        "ip4": NullableString,
        "provisioned": {"type": "boolean", "description": "the gateway's own Wi-Fi profile exists"},
        "removed": {"type": "boolean", "description": "DELETE only: whether there was a profile to forget"},
    },
}

WifiScan = {
    "type": "object",
    "required": ["networks"],
    "properties": {
        "networks": {
            "type": "array",
            "maxItems": 50,
            "description": "visible networks, one entry per SSID (its strongest access point), strongest first",
            "items": {"type": "object", "required": ["ssid", "signal", "secured"],
                      "properties": {"ssid": {"type": "string"}, "signal": {"type": "integer", "minimum": 0, "maximum": 100}, "secured": {"type": "boolean"}}},
        },
    },
}

BleWindowRequest = {
    "type": "object",
    "additionalProperties": False,
    "properties": {"minutes": {"type": "number", "exclusiveMinimum": 0, "maximum": 1440, "description": "how long the window stays open; the configured ble_window_minutes when absent"}},
}

BleStatus = {
    "type": "object",
    "required": ["state", "advertising", "window_open", "window_remaining_s"],
    "properties": {
        "state": {"type": "string", "description": "starting, running or unavailable (no BlueZ, no adapter: see reason)"},
        "reason": NullableString,
        "advertising": {"type": "boolean"},
        "window_open": {"type": "boolean", "description": "whether BLE may change the gateway now (token handed out, writes passed on)"},
        "window_remaining_s": {"type": "number", "minimum": 0},
        "window_closes_at": NullableDateTime,
        "requests_served": Count,
    },
}

COMPONENTS: dict[str, dict[str, Any]] = {
    name: value
    for name, value in dict(globals()).items()
    if name[:1].isupper() and isinstance(value, dict) and name not in {"IdentifierSchema", "ChargerIdSchema", "IdTagSchema", "DateTime", "NullableDateTime", "Count", "NullableCount", "NullableNumber", "NullableString", "ConnectorId"}
}
"""Every named schema, as it appears under `components/schemas` in the OpenAPI document."""


def ref(name: str) -> dict[str, str]:
    """A `$ref` to a component schema; raises KeyError for a name that does not exist."""
    if name not in COMPONENTS:
        raise KeyError(name)
    return {"$ref": f"#/components/schemas/{name}"}
