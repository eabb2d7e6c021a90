"""Charger administration over REST: provisioning, authorization keys, local idTag lists.

Its rows join the route table (`actors.api.routes.ROUTES`) and its handlers the app's
(`actors.api.app.build_app`), so the token check, validation, OpenAPI document and tests
cover them like every other endpoint. Its schemas (`charger_admin_schemas`) join
`schemas.COMPONENTS` when this module is imported.

    GET    /api/charger-credentials               every charger: confirmed, blocked, key fingerprint, candidate keys
    POST   /api/chargers                          add a charger {"id", "key"?, "registration"?}
    DELETE /api/chargers/{id}                     remove it (its next handshake is refused)
    GET    /api/chargers/{id}/credentials         one charger's credentials view
    PUT    /api/chargers/{id}/key                 set or rotate its key {"key"} (the old one stops working)
    POST   /api/chargers/{id}/accept              accept it {"fingerprint"?: pin a candidate key}
    POST   /api/chargers/{id}/block | unblock     refuse it at the handshake (and Reject its boot), or not
    GET    /api/id-tags                           the local authorization list and its version
    GET    /api/id-tags/{idTag}                   one entry
    PUT    /api/id-tags/{idTag}                   add or replace {"status"?, "expiry_date"?, "parent_id_tag"?}
    DELETE /api/id-tags/{idTag}                   remove it
    GET    /api/chargers/{id}/local-list/state    the version a charger confirmed vs the gateway's
    POST   /api/chargers/{id}/local-list/sync     send it what changed (Differential) or all (Full)

Everything here is protected (bearer token), reads too: candidate fingerprints and
idTags (RFID card numbers) are not for anyone on the LAN. Keys are write-only.

The API process writes the charger store directly (a short SQLite transaction in a
worker thread per request): the handshake and the charger actors read it on every
connection and message, so a change applies to the next handshake or Authorize without
telling any actor. A charger that is connected when it is removed or blocked has its
connection closed at once (1008, policy violation; `disconnected` in the answer says
whether one was open); its next handshake is refused.
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from actors.api import charger_admin_schemas, schemas
from actors.api.backend import BadInputError, ConflictError, NotFoundError, NotSupportedError
from actors.api.route_spec import CHARGER_ID, WRITE_ERRORS, Param, Route
from storage import chargers as charger_store
from storage import local_auth_list

schemas.COMPONENTS.update(charger_admin_schemas.COMPONENTS)

ID_TAG = Param("idTag", "path", {"type": "string", "minLength": 1, "maxLength": 20}, True, "the idTag (percent-encoded)")
UPDATE = Param("update", "query", {"type": "string", "enum": ["auto", "full"], "default": "auto"}, False,
               "auto: Differential since the version the charger confirmed, Full when that is unknown; full: always Full")

NO_STORE = (501, ("this gateway's API has no charger store", "Error"))
READ_ERRORS = {401: WRITE_ERRORS[401], 503: WRITE_ERRORS[503], 501: NO_STORE[1]}
ADMIN_ERRORS = {**WRITE_ERRORS, 501: NO_STORE[1]}
NO_CHARGER = (404, ("no such charger", "Error"))


def _route(method: str, path: str, operation: str, summary: str, responses: dict[int, tuple[str, str | None]], *,
           tag: str = "charger admin", params: tuple[Param, ...] = (), body: str | None = None) -> Route:
    """A row of this family: always protected, always with the errors every admin write can answer."""
    errors = READ_ERRORS if method == "GET" else ADMIN_ERRORS
    return Route(method, path, operation, summary, tag, params=params, body=body, protected=True, responses={**errors, **responses})


ROUTES: tuple[Route, ...] = (
    _route("GET", "/api/charger-credentials", "list_charger_credentials", "Every charger's credentials: confirmed, blocked, key fingerprint, candidate keys",
           {200: ("chargers", "ChargerCredentialsList")}),
    _route("POST", "/api/chargers", "provision_charger", "Add a charger (optionally with its AuthorizationKey); an unconfirmed one is taken over",
           {201: ("charger added", "ChargerCredentials"), 409: ("a charger with this id exists", "Error")}, body="ChargerProvision"),
    _route("DELETE", "/api/chargers/{id}", "remove_charger", "Remove a charger: its next handshake is refused (its transactions stay)",
           {200: ("removed", "ChargerRemoved"), 404: NO_CHARGER[1]}, params=(CHARGER_ID,)),
    _route("GET", "/api/chargers/{id}/credentials", "charger_credentials", "One charger's credentials view (no secrets)",
           {200: ("credentials", "ChargerCredentials"), 404: NO_CHARGER[1]}, params=(CHARGER_ID,)),
    _route("PUT", "/api/chargers/{id}/key", "set_charger_key", "Set or rotate the charger's AuthorizationKey (write-only; the old key stops working)",
           {200: ("key set", "ChargerCredentials"), 404: NO_CHARGER[1]}, params=(CHARGER_ID,), body="ChargerKey"),
    _route("POST", "/api/chargers/{id}/accept", "accept_charger", "Accept a charger (registration Accepted, confirmed), pinning the candidate key `fingerprint`",
           {200: ("accepted", "ChargerCredentials"), 404: ("no such charger, or no candidate key with this fingerprint (`field` says which)", "Error")},
           params=(CHARGER_ID,), body="ChargerAccept"),
    _route("POST", "/api/chargers/{id}/block", "block_charger", "Block a charger: handshakes refused (403), a BootNotification Rejected",
           {200: ("blocked", "ChargerCredentials"), 404: NO_CHARGER[1]}, params=(CHARGER_ID,)),
    _route("POST", "/api/chargers/{id}/unblock", "unblock_charger", "Unblock a charger",
           {200: ("unblocked", "ChargerCredentials"), 404: NO_CHARGER[1]}, params=(CHARGER_ID,)),
    _route("GET", "/api/id-tags", "list_id_tags", "The local authorization list and its version", {200: ("the list", "IdTagList")}, tag="id tags"),
    _route("GET", "/api/id-tags/{idTag}", "get_id_tag", "One idTag of the local list", {200: ("entry", "IdTag"), 404: ("not on the list", "Error")},
           tag="id tags", params=(ID_TAG,)),
    _route("PUT", "/api/id-tags/{idTag}", "set_id_tag", "Add or replace an idTag (status, expiry, parent); the list version increases",
           {200: ("stored", "IdTagChange")}, tag="id tags", params=(ID_TAG,), body="IdTagSettings"),
    _route("DELETE", "/api/id-tags/{idTag}", "remove_id_tag", "Remove an idTag; the list version increases",
           {200: ("removed", "IdTagChange"), 404: ("not on the list", "Error")}, tag="id tags", params=(ID_TAG,)),
    _route("GET", "/api/chargers/{id}/local-list/state", "charger_local_list_state", "The list version the charger last accepted, and the gateway's",
           {200: ("state", "LocalListState"), 404: NO_CHARGER[1]}, params=(CHARGER_ID,)),
    _route("POST", "/api/chargers/{id}/local-list/sync", "sync_local_list",
           "Send the charger the local list (Differential since what it confirmed, else Full) with SendLocalList; records what it accepts",
           {200: ("the charger accepted", "LocalListSyncResult"), 404: NO_CHARGER[1],
            409: ("the charger answered Failed, NotSupported or VersionMismatch (after one Full retry)", "LocalListSyncResult")},
           params=(CHARGER_ID, UPDATE)),
)


# ------------------------------------------------------------------ store access
def database(state: Any) -> Path:
    """The database of the gateway the API serves (the backend's `db_path`)."""
    path = getattr(state.backend, "db_path", None)
    if path is None:
        raise NotSupportedError("this gateway's API has no charger store")
    return Path(path)


async def in_store(path: Path, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    """Run `fn(conn, *args, **kwargs)` on a fresh connection to the charger store in a worker thread (SQLite blocks)."""
    from actors.api.stores import writable

    def run() -> Any:
        with writable(path, charger_store.init) as conn:
            return fn(conn, *args, **kwargs)

    return await asyncio.to_thread(run)


# ------------------------------------------------------------------------ views
def credentials_view(row: dict[str, Any]) -> dict[str, Any]:
    from actors.api.stores import iso

    return {
        "id": row["charge_point_id"], "registration": row["registration_status"], "confirmed": row["confirmed"], "blocked": row["blocked"],
        "connected": row["connected"], "key_set": row["key_set"], "key_fingerprint": row["auth_key_fingerprint"],
        "key_changed_at": iso(row["key_changed"]), "last_seen": iso(row["last_seen"]), "created_at": iso(row["created"]),
        "candidates": [{"fingerprint": c["fingerprint"], "remote": c["remote"], "first_seen": iso(c["first_seen"]), "last_seen": iso(c["last_seen"]),
                        "attempts": c["attempts"]} for c in row["candidates"]],
    }


def id_tag_view(entry: dict[str, Any]) -> dict[str, Any]:
    from actors.api.stores import iso

    return {"id_tag": entry["id_tag"], "status": entry["status"], "expiry_date": iso(entry["expiry"]), "parent_id_tag": entry["parent_id_tag"],
            "updated_at": iso(entry["updated"])}


def _one_credentials(conn: sqlite3.Connection, charge_point_id: str) -> dict[str, Any]:
    found = charger_store.credentials(conn, charge_point_id)
    if not found:
        raise NotFoundError(f"no charger {charge_point_id!r}", field="path.id")
    return credentials_view(found[0])


def _changed(change: Callable[..., bool], *args: Any, **kwargs: Any) -> Callable[[sqlite3.Connection, str], dict[str, Any]]:
    """A store change that answers False for an unknown charger, then the charger's credentials view."""

    def apply(conn: sqlite3.Connection, charge_point_id: str) -> dict[str, Any]:
        if not change(conn, charge_point_id, *args, **kwargs):
            raise NotFoundError(f"no charger {charge_point_id!r}", field="path.id")
        return _one_credentials(conn, charge_point_id)

    return apply


def _expiry(body: dict[str, Any]) -> float | None:
    from actors.api.validation import parse_datetime

    value = body.get("expiry_date")
    if value is None:
        return None
    try:
        return parse_datetime(value).timestamp()
    except ValueError as exc:
        raise BadInputError(str(exc), field="expiry_date") from None


def local_list_state(conn: sqlite3.Connection, charge_point_id: str) -> dict[str, Any]:
    from actors.api.stores import iso

    if charger_store.get_charger(conn, charge_point_id) is None:
        raise NotFoundError(f"no charger {charge_point_id!r}", field="path.id")
    version = local_auth_list.local_list_version(conn)
    synced = local_auth_list.charger_local_list(conn, charge_point_id)
    charger_version = synced["version"] if synced else None
    return {"charger": charge_point_id, "list_version": version, "charger_version": charger_version,
            "synced_at": iso(synced["synced"]) if synced else None, "in_sync": charger_version == version}


def local_list_payload(conn: sqlite3.Connection, charge_point_id: str, full: bool) -> dict[str, Any]:
    """The SendLocalList payload for this charger, or NotFoundError."""
    from actors.ocpp.frames import format_timestamp

    if charger_store.get_charger(conn, charge_point_id) is None:
        raise NotFoundError(f"no charger {charge_point_id!r}", field="path.id")
    return local_auth_list.local_list_update(conn, charge_point_id, format_timestamp, full=full)


# --------------------------------------------------------------------- handlers
def handlers() -> dict[str, Callable[..., Awaitable[Any]]]:
    """Handlers by operation name, merged into the app's."""
    from actors.api.app import ApiState, json_response

    async def list_charger_credentials(s: ApiState, p: dict, b: None) -> Any:
        rows = await in_store(database(s), charger_store.credentials)
        return json_response({"chargers": [credentials_view(r) for r in rows]})

    async def provision_charger(s: ApiState, p: dict, body: dict) -> Any:
        def add(conn: sqlite3.Connection) -> dict[str, Any]:
            try:
                charger_store.provision_charger(conn, body["id"], auth_key=body.get("key"), registration_status=body.get("registration", "Accepted"),
                                                serial_number=body.get("serial"))
            except charger_store.ChargerExistsError as exc:
                raise ConflictError(str(exc), field="id") from None
            return _one_credentials(conn, body["id"])

        return json_response(await in_store(database(s), add), status=201)

    async def remove_charger(s: ApiState, p: dict, b: None) -> Any:
        if not await in_store(database(s), charger_store.remove_charger, p["id"]):
            raise NotFoundError(f"no charger {p['id']!r}", field="path.id")
        disconnected = await s.backend.disconnect_charger(p["id"], "removed by the operator")
        return json_response({"id": p["id"], "status": "removed", "disconnected": disconnected})

    async def charger_credentials(s: ApiState, p: dict, b: None) -> Any:
        return json_response(await in_store(database(s), _one_credentials, p["id"]))

    async def set_charger_key(s: ApiState, p: dict, body: dict) -> Any:
        return json_response(await in_store(database(s), _changed(charger_store.set_auth_key, body["key"]), p["id"]))

    async def accept_charger(s: ApiState, p: dict, body: dict) -> Any:
        try:
            view = await in_store(database(s), _changed(charger_store.accept_charger, fingerprint=body.get("fingerprint")), p["id"])
        except charger_store.UnknownCandidateError:
            raise NotFoundError(f"charger {p['id']} presented no key with fingerprint {body['fingerprint']} (see its candidates)", field="fingerprint") from None
        return json_response(view)

    async def block_charger(s: ApiState, p: dict, b: None) -> Any:
        view = await in_store(database(s), _changed(charger_store.set_blocked, True), p["id"])
        return json_response({**view, "disconnected": await s.backend.disconnect_charger(p["id"], "blocked by the operator")})

    async def unblock_charger(s: ApiState, p: dict, b: None) -> Any:
        return json_response(await in_store(database(s), _changed(charger_store.set_blocked, False), p["id"]))

    async def list_id_tags(s: ApiState, p: dict, b: None) -> Any:
        def read(conn: sqlite3.Connection) -> dict[str, Any]:
            return {"list_version": local_auth_list.local_list_version(conn), "id_tags": [id_tag_view(e) for e in local_auth_list.list_authorizations(conn)]}

        return json_response(await in_store(database(s), read))

    async def get_id_tag(s: ApiState, p: dict, b: None) -> Any:
        entry = await in_store(database(s), local_auth_list.get_authorization, p["idTag"])
        if entry is None:
            raise NotFoundError(f"idTag {p['idTag']!r} is not on the local list", field="path.idTag")
        return json_response(id_tag_view(entry))

    async def set_id_tag(s: ApiState, p: dict, body: dict) -> Any:
        expiry = _expiry(body)

        def store(conn: sqlite3.Connection) -> dict[str, Any]:
            version = local_auth_list.set_authorization(conn, p["idTag"], body.get("status", "Accepted"), expiry=expiry,
                                                      parent_id_tag=body.get("parent_id_tag"), now=time.time())
            return {"id_tag": p["idTag"], "status": "set", "list_version": version,
                    "entry": id_tag_view(local_auth_list.get_authorization(conn, p["idTag"]))}  # type: ignore[arg-type]

        return json_response(await in_store(database(s), store))

    async def remove_id_tag(s: ApiState, p: dict, b: None) -> Any:
        def remove(conn: sqlite3.Connection) -> dict[str, Any]:
            if not local_auth_list.remove_authorization(conn, p["idTag"]):
                raise NotFoundError(f"idTag {p['idTag']!r} is not on the local list", field="path.idTag")
            return {"id_tag": p["idTag"], "status": "removed", "list_version": local_auth_list.local_list_version(conn), "entry": None}

        return json_response(await in_store(database(s), remove))

    async def charger_local_list_state(s: ApiState, p: dict, b: None) -> Any:
        return json_response(await in_store(database(s), local_list_state, p["id"]))

    async def sync_local_list(s: ApiState, p: dict, b: None) -> Any:
        """SendLocalList through the same backend call as every charger command; a Differential
        the charger refuses as VersionMismatch (its list is not what we think) is followed by one Full."""
        path, charger_id = database(s), p["id"]
        payload = await in_store(path, local_list_payload, charger_id, p["update"] == "full")
        answer = await s.call(f"charger {charger_id}", s.backend.charger_command(charger_id, "SendLocalList", payload), s.command_timeout)
        status = str(answer.get("status", ""))
        if status == "VersionMismatch" and payload["updateType"] == "Differential":
            await in_store(path, local_auth_list.forget_local_list_sync, charger_id)
            payload = await in_store(path, local_list_payload, charger_id, True)
            answer = await s.call(f"charger {charger_id}", s.backend.charger_command(charger_id, "SendLocalList", payload), s.command_timeout)
            status = str(answer.get("status", ""))
        if status == "Accepted":
            await in_store(path, local_auth_list.record_local_list_sync, charger_id, payload["listVersion"], time.time())
        state = await in_store(path, local_list_state, charger_id)
        result = {**state, "status": status, "update_type": payload["updateType"], "entries": len(payload["localAuthorizationList"])}
        return json_response(result, status=200 if status == "Accepted" else 409)

    return {  # every handler by its route's operation name (actors.api.routes)
        "list_charger_credentials": list_charger_credentials, "provision_charger": provision_charger,
        "remove_charger": remove_charger, "charger_credentials": charger_credentials, "set_charger_key": set_charger_key,
        "accept_charger": accept_charger, "block_charger": block_charger, "unblock_charger": unblock_charger,
        "list_id_tags": list_id_tags, "get_id_tag": get_id_tag, "set_id_tag": set_id_tag, "remove_id_tag": remove_id_tag,
        "charger_local_list_state": charger_local_list_state, "sync_local_list": sync_local_list,
    }
