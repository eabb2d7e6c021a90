"""JSON Schemas of the charger administration endpoints (`actors.api.charger_admin`).

Kept apart from `actors.api.schemas` so this family can change without touching the
shared file; `charger_admin` adds them to `schemas.COMPONENTS` when it is imported,
which happens before the route table, the validator or the OpenAPI document read them.
Request schemas are closed and self-contained (the validator checks each on its own);
response schemas may refer to each other with `$ref`.

Keys are write-only: never echoed, never quoted in an error message (the validator
leaves a `writeOnly` value out of its messages).
"""

from __future__ import annotations

from typing import Any

from storage.chargers import CHARGE_POINT_ID_PATTERN, REGISTRATION_STATUSES
from storage.local_auth_list import LIST_STATUSES

#: A profile 1 AuthorizationKey: printable ASCII (it travels in an HTTP Basic header).
KEY_PATTERN = r"^[!-~]{16,64}$"
FINGERPRINT_PATTERN = r"^[0-9a-f]{16}$"

_charger_id = {"type": "string", "pattern": CHARGE_POINT_ID_PATTERN, "maxLength": 48, "description": "the chargePointId the charger connects with"}
_key = {"type": "string", "pattern": KEY_PATTERN, "writeOnly": True,
        "description": "the charger's AuthorizationKey: 16 to 64 printable ASCII characters; write-only"}
_fingerprint = {"type": "string", "pattern": FINGERPRINT_PATTERN, "description": "16 hex digits; `egw chargers fingerprint` computes it from a key"}
_id_tag = {"type": "string", "minLength": 1, "maxLength": 20, "description": "OCPP IdToken (CiString20)"}
_time = {"type": ["string", "null"], "format": "date-time"}

ChargerProvision: dict[str, Any] = {
    "type": "object", "additionalProperties": False, "required": ["id"],
    "properties": {
        "id": _charger_id,
        "key": _key,
        "registration": {"type": "string", "enum": ["Accepted", "Pending"], "default": "Accepted",
                         "description": "what its BootNotification is answered (Pending: it waits for `accept`)"},
        "serial": {"type": "string", "minLength": 1, "maxLength": 25, "description": "chargePointSerialNumber, for reference"},
    },
}

ChargerKey: dict[str, Any] = {"type": "object", "additionalProperties": False, "required": ["key"], "properties": {"key": _key}}

ChargerAccept: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {"fingerprint": {**_fingerprint, "description": "pin the candidate key with this fingerprint (see GET /api/charger-credentials)"}},
}

IdTagSettings: dict[str, Any] = {
    "type": "object", "additionalProperties": False,
    "properties": {
        "status": {"type": "string", "enum": list(LIST_STATUSES), "default": "Accepted"},
        "expiry_date": {**_time, "description": "after this an Accepted tag answers Expired; null or absent: never"},
        "parent_id_tag": {**_id_tag, "type": ["string", "null"], "description": "the group tag (OCPP parentIdTag)"},
    },
}

KeyCandidate: dict[str, Any] = {
    "type": "object", "required": ["fingerprint", "first_seen", "last_seen", "attempts"],
    "properties": {
        "fingerprint": _fingerprint,
        "remote": {"type": ["string", "null"], "description": "the address it last came from, when known"},
        "first_seen": _time, "last_seen": _time,
        "attempts": {"type": "integer", "minimum": 1},
    },
}

ChargerCredentials: dict[str, Any] = {
    "type": "object",
    "required": ["id", "registration", "confirmed", "blocked", "key_set", "candidates"],
    "properties": {
        "id": {"type": "string"},
        "registration": {"type": "string", "enum": list(REGISTRATION_STATUSES)},
        "confirmed": {"type": "boolean", "description": "added or accepted by the operator; unconfirmed chargers expire"},
        "blocked": {"type": "boolean"},
        "connected": {"type": "boolean"},
        "key_set": {"type": "boolean", "description": "a key is pinned: handshakes must present it"},
        "key_fingerprint": {"type": ["string", "null"]},
        "key_changed_at": _time,
        "last_seen": _time,
        "created_at": _time,
        "candidates": {"type": "array", "items": {"$ref": "#/components/schemas/KeyCandidate"},
                       "description": "keys it presented while none was pinned, most recent first"},
        "disconnected": {"type": "boolean", "description": "after a block: whether an open connection was closed"},
    },
}

ChargerCredentialsList: dict[str, Any] = {
    "type": "object", "required": ["chargers"],
    "properties": {"chargers": {"type": "array", "items": {"$ref": "#/components/schemas/ChargerCredentials"}}},
}

ChargerRemoved: dict[str, Any] = {
    "type": "object", "required": ["id", "status"],
    "properties": {"id": {"type": "string"}, "status": {"const": "removed"},
                   "disconnected": {"type": "boolean", "description": "whether an open connection was closed"}},
}

IdTag: dict[str, Any] = {
    "type": "object", "required": ["id_tag", "status"],
    "properties": {
        "id_tag": {"type": "string"},
        "status": {"type": "string", "enum": list(LIST_STATUSES)},
        "expiry_date": _time,
        "parent_id_tag": {"type": ["string", "null"]},
        "updated_at": _time,
    },
}

IdTagList: dict[str, Any] = {
    "type": "object", "required": ["list_version", "id_tags"],
    "properties": {"list_version": {"type": "integer", "minimum": 0}, "id_tags": {"type": "array", "items": {"$ref": "#/components/schemas/IdTag"}}},
}

IdTagChange: dict[str, Any] = {
    "type": "object", "required": ["id_tag", "status", "list_version"],
    "properties": {
        "id_tag": {"type": "string"},
        "status": {"type": "string", "enum": ["set", "removed"]},
        "list_version": {"type": "integer", "minimum": 0, "description": "the list's version after the change"},
        "entry": {"anyOf": [{"$ref": "#/components/schemas/IdTag"}, {"type": "null"}]},
    },
}

LocalListState: dict[str, Any] = {
    "type": "object", "required": ["charger", "list_version", "charger_version", "in_sync"],
    "properties": {
        "charger": {"type": "string"},
        "list_version": {"type": "integer", "minimum": 0, "description": "the gateway's list version"},
        "charger_version": {"type": ["integer", "null"], "description": "the version the charger last accepted from us; null: never synced"},
        "synced_at": _time,
        "in_sync": {"type": "boolean"},
    },
}

LocalListSyncResult: dict[str, Any] = {
    "type": "object", "required": ["charger", "status", "update_type", "list_version", "entries"],
    "properties": {
        **LocalListState["properties"],
        "status": {"type": "string", "description": "the charger's SendLocalList answer: Accepted, Failed, NotSupported or VersionMismatch"},
        "update_type": {"type": "string", "enum": ["Full", "Differential"], "description": "what was sent last (a VersionMismatch is followed by one Full)"},
        "entries": {"type": "integer", "minimum": 0, "description": "idTags in the update sent"},
    },
}

COMPONENTS: dict[str, dict[str, Any]] = {
    name: value for name, value in dict(globals()).items() if name[:1].isupper() and isinstance(value, dict) and name != "COMPONENTS"
}
"""This family's named schemas, added to `actors.api.schemas.COMPONENTS` by `charger_admin`."""
