"""The settings registry: devices (and upload transports) changed over the REST API, persisted so they survive a restart.

It lives in storage/ because both the tree builder (`supervisor.tree`) and the API read it.

The configuration file stays the installer's document; the API never rewrites it.
Instead, `POST /api/devices` and `DELETE /api/devices/{id}` record the change here (a
table of this component in the gateway database), and the gateway applies the
changes on top of the configured devices when it builds its tree:

    values["devices"] = effective_devices(values)      # before devices_part(values)

A device removed over the API stays removed even though the file still lists it;
adding it again over the API brings it back. Transport settings changed with
`PUT /api/transports/{name}` are kept the same way and applied by

    values["uploads"] = effective_uploads(values)       # before harvest_child_specs(values)

The schema is migrations (`storage.db.migrate`); the rows are read and written through
sqlite-utils (`Table.upsert`, `.count_where`, `.rows`, `.get`) on the gateway's own
connection, inside its `transaction()` (sqlite-utils nests a savepoint there, it never
commits on its own). Inspect them with `sqlite-utils rows egw.db api_devices` (docs/database.md).
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from sqlite_utils import Database
from sqlite_utils.db import NotFoundError, Table

from storage.db import connect, database_path, migrate, transaction

COMPONENT = "api_devices"
MIGRATIONS = [
    """
    CREATE TABLE api_devices (
        id        TEXT PRIMARY KEY,
        settings  TEXT,
        removed   INTEGER NOT NULL DEFAULT 0,
        changed   REAL NOT NULL
    );
    """,
    """
    CREATE TABLE api_transports (
        name      TEXT PRIMARY KEY,
        settings  TEXT NOT NULL,
        changed   REAL NOT NULL
    );
    """,
]
MAX_DEVICES = 256  # bounded: a misbehaving client cannot grow the table without limit


class RegistryFullError(Exception):
    pass


def _open(path: Path) -> sqlite3.Connection:
    conn = connect(path)
    migrate(conn, COMPONENT, MIGRATIONS)
    return conn


def _table(conn: sqlite3.Connection, name: str) -> Table:
    """One of this component's tables through sqlite-utils, on the gateway's connection as it is (no pragmas, no plugins)."""
    return Database(conn, recursive_triggers=False, execute_plugins=False).table(name)


def _stamp(now: float | None) -> float:
    return time.time() if now is None else now


def _check_room(devices: Table, device_id: str) -> None:
    if devices.count_where("id != ?", [device_id]) >= MAX_DEVICES:
        raise RegistryFullError(f"at most {MAX_DEVICES} devices can be changed over the API")


def _rows(path: Path, name: str) -> list[dict[str, Any]]:
    """Every row of one of this component's tables, read-only; none while the database or the table does not exist yet."""
    if not path.exists():
        return []
    conn = connect(path, readonly=True)
    try:
        table = _table(conn, name)
        return list(table.rows) if table.exists() else []
    finally:
        conn.close()


def record_added(path: str | Path, settings: Mapping[str, Any], now: float | None = None) -> None:
    """Persist a device added over the API (replacing an earlier removal of the same id)."""
    conn = _open(Path(path))
    try:
        with transaction(conn):
            devices = _table(conn, "api_devices")
            _check_room(devices, settings["id"])
            devices.upsert({"id": settings["id"], "settings": json.dumps(dict(settings), sort_keys=True), "removed": 0, "changed": _stamp(now)}, pk="id")
    finally:
        conn.close()


def record_removed(path: str | Path, device_id: str, now: float | None = None) -> None:
    """Persist the removal of a device (configured or added over the API)."""
    conn = _open(Path(path))
    try:
        with transaction(conn):
            devices = _table(conn, "api_devices")
            _check_room(devices, device_id)
            devices.upsert({"id": device_id, "settings": None, "removed": 1, "changed": _stamp(now)}, pk="id")
    finally:
        conn.close()


def changes(path: str | Path) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(added id -> settings, removed ids), read-only; empty when nothing was ever changed."""
    rows = _rows(Path(path), "api_devices")
    added = {row["id"]: json.loads(row["settings"]) for row in rows if not row["removed"] and row["settings"]}
    removed = {row["id"] for row in rows if row["removed"]}
    return added, removed


def apply_changes(configured: list[Mapping[str, Any]], path: str | Path) -> list[dict[str, Any]]:
    """The configured devices with the API's additions and removals applied (configuration order first)."""
    added, removed = changes(path)
    result = [dict(d) for d in configured if str(d.get("id")) not in removed and str(d.get("id")) not in added]
    result += [added[i] for i in sorted(added)]
    return result


def effective_devices(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For the tree builder: `values["devices"]` with the API's changes applied."""
    return apply_changes(list(values.get("devices") or []), database_path(values))


# ------------------------------------------------------------- transports
def record_transport(path: str | Path, name: str, changes_: Mapping[str, Any], now: float | None = None) -> None:
    """Persist setting changes of one transport (merged over earlier changes)."""
    conn = _open(Path(path))
    try:
        with transaction(conn):
            transports = _table(conn, "api_transports")
            try:
                earlier = json.loads(transports.get(name)["settings"])
            except NotFoundError:
                earlier = {}
            transports.upsert({"name": name, "settings": json.dumps({**earlier, **dict(changes_)}, sort_keys=True), "changed": _stamp(now)}, pk="name")
    finally:
        conn.close()


def transport_changes(path: str | Path) -> dict[str, dict[str, Any]]:
    """Transport name -> the settings changed over the API, read-only; empty when nothing was ever changed."""
    return {row["name"]: json.loads(row["settings"]) for row in _rows(Path(path), "api_transports")}


def apply_transport_changes(uploads: list[Mapping[str, Any]], path: str | Path) -> list[dict[str, Any]]:
    """The configured upload endpoints with the API's setting changes applied."""
    changed = transport_changes(path)
    return [{**dict(u), **changed.get(str(u.get("name")), {})} for u in uploads]


def effective_uploads(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For the tree builder: `values["uploads"]` with the API's changes applied."""
    return apply_transport_changes(list(values.get("uploads") or []), database_path(values))
