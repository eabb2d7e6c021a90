"""OCPP-J 1.6 frames: parsing, validation against the 1.6 JSON schemas, and encoding.

An OCPP-J frame is a JSON array: `[2, id, action, payload]` (CALL), `[3, id, payload]`
(CALLRESULT) or `[4, id, code, description, details]` (CALLERROR). Everything a charger
sends is checked here, and anything wrong becomes a `FrameError` carrying the OCPP-J 1.6
error code (section 4.2.3 and its errata), so the caller can always answer a CALL.

Error codes follow the OCPP-J 1.6 specification, not the `ocpp` package: the package's
`FormatViolation` is OCPP 2.0's name (1.6 says `FormationViolation`, and the errata keeps
the typo `OccurenceConstraintViolation`), and its descriptions of `NotImplemented` and
`NotSupported` are swapped. In 1.6:

* NotImplemented   the action is not known (not an OCPP 1.6 action at all);
* NotSupported     the action is known but not supported here (a central-system-to-charger
                   action sent the wrong way, or an optional feature the gateway lacks);
* FormationViolation  not JSON, not a proper frame, additional properties;
* ProtocolError    a required field is missing;
* TypeConstraintViolation  a field has the wrong JSON type or exceeds its length, an
                   integer exceeds 64 bits (a connector or reservation id: 32), a string is not Unicode text;
* PropertyConstraintViolation  a field's value is not allowed (enum, format, range).

When a frame is too broken to read its unique id, replies use the id "-1", as OCPP 2.0.1
(4.2.3) prescribes; 1.6 is silent on this, and a reply with "-1" tells the charger more
than silence.

Schemas are read from the `ocpp` package's 1.6 JSON files once and cached.
"""

from __future__ import annotations

import decimal
import json
import math
from dataclasses import dataclass, field
from datetime import datetime, timezone
from functools import cache
from pathlib import Path
from typing import Any

import ocpp
from jsonschema import Draft4Validator
from jsonschema.exceptions import ValidationError, best_match

CALL, CALLRESULT, CALLERROR = 2, 3, 4

#: Every OCPP 1.6 action (core, firmware, local list, reservation, smart charging, remote trigger).
CHARGER_TO_CENTRAL = frozenset({
    "Authorize", "BootNotification", "DataTransfer", "DiagnosticsStatusNotification",
    "FirmwareStatusNotification", "Heartbeat", "MeterValues", "StartTransaction",
    "StatusNotification", "StopTransaction",
})
CENTRAL_TO_CHARGER = frozenset({
    "CancelReservation", "ChangeAvailability", "ChangeConfiguration", "ClearCache",
    "ClearChargingProfile", "DataTransfer", "GetCompositeSchedule", "GetConfiguration",
    "GetDiagnostics", "GetLocalListVersion", "RemoteStartTransaction", "RemoteStopTransaction",
    "ReserveNow", "Reset", "SendLocalList", "SetChargingProfile", "TriggerMessage",
    "UnlockConnector", "UpdateFirmware",
})
#: Security-whitepaper extensions the schemas also cover; the gateway does not implement them.
SECURITY_EXTENSIONS = frozenset({
    "SecurityEventNotification", "SignCertificate", "SignedFirmwareStatusNotification",
    "LogStatusNotification", "CertificateSigned", "DeleteCertificate", "ExtendedTriggerMessage",
    "GetInstalledCertificateIds", "GetLog", "InstallCertificate", "SignedUpdateFirmware",
})
KNOWN_ACTIONS = CHARGER_TO_CENTRAL | CENTRAL_TO_CHARGER | SECURITY_EXTENSIONS

#: Actions whose schemas constrain decimals (`multipleOf: 0.1`): parsed as Decimal to validate.
_DECIMAL_ACTIONS = frozenset({"SetChargingProfile", "RemoteStartTransaction", "GetCompositeScheduleResponse"})

MAX_UNIQUE_ID = 36  # OCPP-J 1.6 4.1.4: the message id is at most 36 characters


class FrameError(Exception):
    """A frame the gateway cannot accept; `code` is the OCPP-J 1.6 CALLERROR code."""

    def __init__(self, code: str, description: str, unique_id: str = "-1", details: dict | None = None) -> None:
        super().__init__(f"{code}: {description}")
        self.code = code
        self.description = description
        self.unique_id = unique_id
        self.details = details or {}


@dataclass(frozen=True)
class Call:
    unique_id: str
    action: str
    payload: dict


@dataclass(frozen=True)
class CallResult:
    unique_id: str
    payload: dict


@dataclass(frozen=True)
class CallError:
    unique_id: str
    code: str
    description: str
    details: dict = field(default_factory=dict)


Frame = Call | CallResult | CallError


def _not_json(constant: str) -> Any:
    """Python's json reads bare NaN and Infinity, which JSON (RFC 8259) does not have: refuse them."""
    raise ValueError(f"{constant} is not JSON")


def _finite_float(text: str) -> float:
    """A JSON number too large for a float (1e400) would read as infinity: refuse it like NaN."""
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"{text[:32]} overflows a float")
    return value


def parse(text: str | bytes) -> Frame:
    """Read one frame's envelope (not the payload schema: see `validate`). Raises FrameError."""
    try:
        data = json.loads(text, parse_constant=_not_json, parse_float=_finite_float)
    except (ValueError, UnicodeDecodeError, RecursionError) as exc:
        raise FrameError("FormationViolation", f"frame is not valid JSON: {type(exc).__name__}") from None
    if not isinstance(data, list) or not data:
        raise FrameError("FormationViolation", "frame must be a non-empty JSON array")
    type_id = data[0]
    unique_id = data[1] if len(data) > 1 and isinstance(data[1], str) and 0 < len(data[1]) <= MAX_UNIQUE_ID else None
    if type(type_id) is not int or type_id not in (CALL, CALLRESULT, CALLERROR):
        raise FrameError("FormationViolation", f"unknown message type id {type_id!r} (expected 2, 3 or 4)", unique_id or "-1")
    if unique_id is None:
        raise FrameError("FormationViolation", f"message id must be a string of 1 to {MAX_UNIQUE_ID} characters")
    if type_id == CALL:
        if len(data) != 4:
            raise FrameError("FormationViolation", f"a CALL has 4 elements, this one has {len(data)}", unique_id)
        action, payload = data[2], data[3]
        if not isinstance(action, str):
            raise FrameError("FormationViolation", "action must be a string", unique_id)
        if not isinstance(payload, dict):
            raise FrameError("FormationViolation", "payload must be a JSON object", unique_id)
        return Call(unique_id, action, payload)
    if type_id == CALLRESULT:
        if len(data) != 3 or not isinstance(data[2], dict):
            raise FrameError("FormationViolation", "a CALLRESULT is [3, id, {payload}]", unique_id)
        return CallResult(unique_id, data[2])
    if len(data) != 5 or not isinstance(data[2], str) or not isinstance(data[3], str) or not isinstance(data[4], dict):
        raise FrameError("FormationViolation", "a CALLERROR is [4, id, code, description, {details}]", unique_id)
    return CallError(unique_id, data[2], data[3], data[4])


def check_action(call: Call) -> None:
    """Raise the right error for actions the central system does not handle."""
    if call.action not in KNOWN_ACTIONS:
        raise FrameError("NotImplemented", f"unknown action {call.action[:64]!r}", call.unique_id)
    if call.action not in CHARGER_TO_CENTRAL:
        raise FrameError("NotSupported", f"{call.action} is not handled by this central system", call.unique_id)


@cache
def _validator(schema_name: str) -> Draft4Validator:
    path = Path(ocpp.__file__).parent / "v16" / "schemas" / f"{schema_name}.json"
    parse_float = decimal.Decimal if schema_name in _DECIMAL_ACTIONS else float
    return Draft4Validator(json.loads(path.read_text(encoding="utf-8-sig"), parse_float=parse_float))


def preload() -> None:
    """Build every validator now (in a parent process, so forked actors inherit them)."""
    for action in CHARGER_TO_CENTRAL | CENTRAL_TO_CHARGER:
        _validator(action)
        _validator(f"{action}Response")


def validate(action: str, payload: dict, *, response: bool = False, unique_id: str = "-1") -> None:
    """Check a payload against the 1.6 schema of `action` (request or response); raise FrameError."""
    name = f"{action}Response" if response else action
    subject = payload
    if name in _DECIMAL_ACTIONS:
        subject = json.loads(json.dumps(payload, default=str), parse_float=decimal.Decimal)
    error = best_match(_validator(name).iter_errors(subject))
    if error is not None:
        raise FrameError(_code_for(error), _describe(error), unique_id)
    _check_timestamps(_validator(name).schema, payload, unique_id)
    _check_values(payload, unique_id)


def _is_text(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


#: Integer fields held to 32 bits (OCPP's integer for many chargers). Not `transactionId`: a
#: StopTransaction naming an id never issued is still answered (see the handler), up to 64 bits.
INT32_FIELDS = frozenset({"connectorId", "reservationId"})
INT32 = (-(2**31), 2**31 - 1)
INT64 = (-(2**63), 2**63 - 1)


def _check_values(value: Any, unique_id: str, where: str = "payload", key: str = "") -> None:
    """What the schemas leave open but nothing can store: integers beyond 64 bits (connector
    and reservation ids beyond 32), and strings that are not Unicode text (a lone surrogate, which JSON's \\u escapes can
    spell). Either is a `TypeConstraintViolation`, refused before anything is stored."""
    if isinstance(value, bool):
        return
    if isinstance(value, int):
        low, high = INT32 if key in INT32_FIELDS else INT64
        if not low <= value <= high:
            bits = 32 if key in INT32_FIELDS else 64
            raise FrameError("TypeConstraintViolation", f"{where}: a {value.bit_length()}-bit value does not fit a {bits}-bit integer", unique_id)
    elif isinstance(value, str):
        if not value.isascii() and not _is_text(value):
            raise FrameError("TypeConstraintViolation", f"{where}: string contains a lone surrogate (not Unicode text)", unique_id)
    elif isinstance(value, dict):
        for k, sub in value.items():
            _check_values(sub, unique_id, f"{where}/{str(k)[:40]}", str(k))
    elif isinstance(value, list):
        for i, item in enumerate(value):
            _check_values(item, unique_id, f"{where}/{i}", key)


def _code_for(error: ValidationError) -> str:
    if error.validator == "required":
        return "ProtocolError"
    if error.validator in ("type", "maxLength"):
        return "TypeConstraintViolation"
    if error.validator == "additionalProperties":
        return "FormationViolation"
    if error.validator in ("minItems", "maxItems"):
        return "OccurenceConstraintViolation"
    return "PropertyConstraintViolation"


def _describe(error: ValidationError) -> str:
    where = "/".join(str(p) for p in error.absolute_path) or "payload"
    message = error.message if len(error.message) <= 200 else error.message[:200] + "..."
    return f"{where}: {message}"


def _check_timestamps(schema: dict, value: Any, unique_id: str, where: str = "payload") -> None:
    """Draft-4 does not enforce `format: date-time`; wrong timestamps would corrupt the history."""
    if schema.get("format") == "date-time" and isinstance(value, str):
        try:
            parse_timestamp(value)
        except ValueError:
            raise FrameError("PropertyConstraintViolation", f"{where}: {value[:40]!r} is not an RFC 3339 date-time", unique_id) from None
    elif isinstance(value, dict):
        for key, sub in (schema.get("properties") or {}).items():
            if key in value:
                _check_timestamps(sub, value[key], unique_id, f"{where}/{key}")
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for i, item in enumerate(value):
            _check_timestamps(schema["items"], item, unique_id, f"{where}/{i}")


def parse_timestamp(text: str) -> float:
    """An OCPP date-time (RFC 3339, `Z` or an offset) as epoch seconds; naive times are UTC."""
    if "T" not in text and "t" not in text:
        raise ValueError("no time part")
    moment = datetime.fromisoformat(text.replace("z", "Z"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def format_timestamp(epoch: float) -> str:
    """Epoch seconds as the UTC date-time OCPP expects (millisecond precision, `Z`)."""
    moment = datetime.fromtimestamp(epoch, tz=timezone.utc)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def encode_call(unique_id: str, action: str, payload: dict) -> str:
    return json.dumps([CALL, unique_id, action, payload], separators=(",", ":"), default=_json_default)


def encode_result(unique_id: str, payload: dict) -> str:
    return json.dumps([CALLRESULT, unique_id, payload], separators=(",", ":"), default=_json_default)


def encode_error(unique_id: str, code: str, description: str, details: dict | None = None) -> str:
    return json.dumps([CALLERROR, unique_id, code, description, details or {}], separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, decimal.Decimal):
        return float(value)
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")
