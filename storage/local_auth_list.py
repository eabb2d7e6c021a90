"""The local authorization list: idTags the gateway authorizes, and each charger's copy of it.

The list (`auth_list`) carries a version that increases on every change; removed idTags
stay as tombstones (bounded, TOMBSTONE_LIMIT) so a charger can be sent a Differential
update since the version it last confirmed (`charger_local_list`). The tables are created
by `storage.chargers.init` with the charger registry; every function takes an open
connection from `storage.db.connect()` and writes in one `transaction()`.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable, Mapping
from typing import Any

from storage.db import transaction

#: Removed idTags remembered for Differential updates; beyond that a charger older than
#: the oldest one kept gets a Full update.
TOMBSTONE_LIMIT = 1000

#: Statuses an idTag of the local list may have (ConcurrentTx is decided per request).
LIST_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid")


def set_authorization(
    conn: sqlite3.Connection, id_tag: str, status: str = "Accepted", *, expiry: float | None = None,
    parent_id_tag: str | None = None, now: float | None = None,
) -> int:
    """Add or replace an idTag of the local list; the list version after it.

    The version moves only when something changed, so re-sending the same entry costs
    no charger a sync.
    """
    if status not in LIST_STATUSES:
        raise ValueError(f"authorization status must be one of {LIST_STATUSES}, not {status!r}")
    now = time.time() if now is None else now
    with transaction(conn):
        row = conn.execute("SELECT status, expiry, parent_id_tag, removed FROM auth_list WHERE id_tag = ?", (id_tag,)).fetchone()
        if row is not None and not row["removed"] and (row["status"], row["expiry"], row["parent_id_tag"]) == (status, expiry, parent_id_tag):
            return _list_version(conn)
        version = _bump_version(conn)
        conn.execute(
            "INSERT INTO auth_list (id_tag, status, expiry, parent_id_tag, version, removed, updated) VALUES (?, ?, ?, ?, ?, 0, ?)"
            " ON CONFLICT(id_tag) DO UPDATE SET status = excluded.status, expiry = excluded.expiry,"
            " parent_id_tag = excluded.parent_id_tag, version = excluded.version, removed = 0, updated = excluded.updated",
            (id_tag, status, expiry, parent_id_tag, version, now),
        )
    return version


def remove_authorization(conn: sqlite3.Connection, id_tag: str, *, now: float | None = None) -> bool:
    """Take an idTag off the list (kept as a tombstone for Differential updates); False if it was not on it."""
    now = time.time() if now is None else now
    with transaction(conn):
        row = conn.execute("SELECT removed FROM auth_list WHERE id_tag = ?", (id_tag,)).fetchone()
        if row is None or row[0]:
            return False
        version = _bump_version(conn)
        conn.execute("UPDATE auth_list SET removed = 1, version = ?, updated = ? WHERE id_tag = ?", (version, now, id_tag))
        _prune_tombstones(conn)
    return True


def get_authorization(conn: sqlite3.Connection, id_tag: str) -> dict[str, Any] | None:
    row = conn.execute(
        "SELECT id_tag, status, expiry, parent_id_tag, version, updated FROM auth_list WHERE id_tag = ? AND removed = 0", (id_tag,)
    ).fetchone()
    return dict(row) if row else None


def list_authorizations(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every idTag on the local list, by idTag."""
    rows = conn.execute("SELECT id_tag, status, expiry, parent_id_tag, version, updated FROM auth_list WHERE removed = 0 ORDER BY id_tag")
    return [dict(row) for row in rows]


def local_list_version(conn: sqlite3.Connection) -> int:
    """The list's version: 0 for a list never written, +1 for every change since."""
    return _list_version(conn)


def _list_version(conn: sqlite3.Connection) -> int:
    row = conn.execute("SELECT value FROM local_list_state WHERE name = 'version'").fetchone()
    return int(row[0]) if row else 0


def _bump_version(conn: sqlite3.Connection) -> int:
    conn.execute(
        "INSERT INTO local_list_state (name, value) VALUES ('version', 1) ON CONFLICT(name) DO UPDATE SET value = value + 1"
    )
    return _list_version(conn)


def _prune_tombstones(conn: sqlite3.Connection) -> None:
    """Keep the newest TOMBSTONE_LIMIT removals; a charger older than what is forgotten gets a Full update."""
    row = conn.execute(
        "SELECT version FROM auth_list WHERE removed = 1 ORDER BY version DESC LIMIT 1 OFFSET ?", (TOMBSTONE_LIMIT,)
    ).fetchone()
    if row is None:
        return
    conn.execute("DELETE FROM auth_list WHERE removed = 1 AND version <= ?", (row[0],))
    conn.execute(
        "INSERT INTO local_list_state (name, value) VALUES ('differential_from', ?)"
        " ON CONFLICT(name) DO UPDATE SET value = max(value, excluded.value)", (row[0],)
    )


def _entry(row: Mapping[str, Any], format_time: Callable[[float], str]) -> dict[str, Any]:
    """An OCPP AuthorizationData object: idTag plus idTagInfo, or idTag alone for a removal."""
    if row["removed"]:
        return {"idTag": row["id_tag"]}
    info: dict[str, Any] = {"status": row["status"]}
    if row["expiry"] is not None:
        info["expiryDate"] = format_time(row["expiry"])
    if row["parent_id_tag"]:
        info["parentIdTag"] = row["parent_id_tag"]
    return {"idTag": row["id_tag"], "idTagInfo": info}


def local_list_update(
    conn: sqlite3.Connection, charge_point_id: str, format_time: Callable[[float], str], *, full: bool = False,
) -> dict[str, Any]:
    """The SendLocalList payload that brings this charger up to the current list.

    Differential (the entries changed since the version the charger last confirmed,
    removals as an idTag without idTagInfo) when that version is known, older than the
    list's and no removal since then was forgotten; Full otherwise (a charger already at
    the current version would answer a Differential VersionMismatch), or when `full` is
    asked for. A Full
    update of an empty list clears the charger's. `format_time` renders epoch seconds
    as OCPP timestamps (the OCPP family's, so this module needs no protocol code).
    """
    with transaction(conn):  # one snapshot: the version and the entries it covers
        version = _list_version(conn)
        confirmed = conn.execute("SELECT version FROM charger_local_list WHERE charge_point_id = ?", (charge_point_id,)).fetchone()
        since = int(confirmed[0]) if confirmed is not None else None
        floor_row = conn.execute("SELECT value FROM local_list_state WHERE name = 'differential_from'").fetchone()
        floor = int(floor_row[0]) if floor_row else 0
        differential = not full and since is not None and floor <= since < version
        if differential:
            rows = conn.execute("SELECT * FROM auth_list WHERE version > ? ORDER BY id_tag", (since,)).fetchall()
        else:
            rows = conn.execute("SELECT * FROM auth_list WHERE removed = 0 ORDER BY id_tag").fetchall()
    return {
        "listVersion": version,
        "updateType": "Differential" if differential else "Full",
        "localAuthorizationList": [_entry(row, format_time) for row in rows],
    }


def record_local_list_sync(conn: sqlite3.Connection, charge_point_id: str, version: int, now: float) -> None:
    """The charger accepted the list at `version`: the next update is a Differential from there."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO charger_local_list (charge_point_id, version, synced) VALUES (?, ?, ?)"
            " ON CONFLICT(charge_point_id) DO UPDATE SET version = excluded.version, synced = excluded.synced",
            (charge_point_id, version, now),
        )


def forget_local_list_sync(conn: sqlite3.Connection, charge_point_id: str) -> None:
    """The charger's list is not what we sent (VersionMismatch, a reset): the next update is Full."""
    with transaction(conn):
        conn.execute("DELETE FROM charger_local_list WHERE charge_point_id = ?", (charge_point_id,))


def charger_local_list(conn: sqlite3.Connection, charge_point_id: str) -> dict[str, Any] | None:
    """The version this charger last confirmed and when, or None if it never took a list from us."""
    row = conn.execute("SELECT version, synced FROM charger_local_list WHERE charge_point_id = ?", (charge_point_id,)).fetchone()
    return dict(row) if row else None
