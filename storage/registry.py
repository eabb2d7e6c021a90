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
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

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


def record_added(path: str | Path, settings: Mapping[str, Any], now: float | None = None) -> None:
    """Persist a device added over the API (replacing an earlier removal of the same id)."""
    conn = _open(Path(path))
    try:
        with transaction(conn):
            count = conn.execute("SELECT count(*) FROM api_devices WHERE id != ?", (settings["id"],)).fetchone()[0]
            if count >= MAX_DEVICES:
                raise RegistryFullError(f"at most {MAX_DEVICES} devices can be changed over the API")
            conn.execute(
                "INSERT INTO api_devices (id, settings, removed, changed) VALUES (?, ?, 0, ?)"
                " ON CONFLICT(id) DO UPDATE SET settings = excluded.settings, removed = 0, changed = excluded.changed",
                (settings["id"], json.dumps(dict(settings), sort_keys=True), time.time() if now is None else now),
            )
    finally:
        conn.close()


def record_removed(path: str | Path, device_id: str, now: float | None = None) -> None:
    """Persist the removal of a device (configured or added over the API)."""
    conn = _open(Path(path))
    try:
        with transaction(conn):
            count = conn.execute("SELECT count(*) FROM api_devices WHERE id != ?", (device_id,)).fetchone()[0]
            if count >= MAX_DEVICES:
                raise RegistryFullError(f"at most {MAX_DEVICES} devices can be changed over the API")
            conn.execute(
                "INSERT INTO api_devices (id, settings, removed, changed) VALUES (?, NULL, 1, ?)"
                " ON CONFLICT(id) DO UPDATE SET settings = NULL, removed = 1, changed = excluded.changed",
                (device_id, time.time() if now is None else now),
            )
    finally:
        conn.close()


def changes(path: str | Path) -> tuple[dict[str, dict[str, Any]], set[str]]:
    """(added id -> settings, removed ids), read-only; empty when nothing was ever changed."""
    path = Path(path)
    if not path.exists():
        return {}, set()
    conn = connect(path, readonly=True)
    try:
        rows = conn.execute("SELECT id, settings, removed FROM api_devices").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}, set()
        raise
    finally:
        conn.close()
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
            row = conn.execute("SELECT settings FROM api_transports WHERE name = ?", (name,)).fetchone()
            merged = {**(json.loads(row["settings"]) if row else {}), **dict(changes_)}
            conn.execute(
                "INSERT INTO api_transports (name, settings, changed) VALUES (?, ?, ?)"
                " ON CONFLICT(name) DO UPDATE SET settings = excluded.settings, changed = excluded.changed",
                (name, json.dumps(merged, sort_keys=True), time.time() if now is None else now),
            )
    finally:
        conn.close()


def transport_changes(path: str | Path) -> dict[str, dict[str, Any]]:
    path = Path(path)
    if not path.exists():
        return {}
    conn = connect(path, readonly=True)
    try:
        rows = conn.execute("SELECT name, settings FROM api_transports").fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise
    finally:
        conn.close()
    return {row["name"]: json.loads(row["settings"]) for row in rows}


def apply_transport_changes(uploads: list[Mapping[str, Any]], path: str | Path) -> list[dict[str, Any]]:
    """The configured upload endpoints with the API's setting changes applied."""
    changed = transport_changes(path)
    return [{**dict(u), **changed.get(str(u.get("name")), {})} for u in uploads]


def effective_uploads(values: Mapping[str, Any]) -> list[dict[str, Any]]:
    """For the tree builder: `values["uploads"]` with the API's changes applied."""
    return apply_transport_changes(list(values.get("uploads") or []), database_path(values))
