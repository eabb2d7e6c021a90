"""The energy manager's tables: loadpoint modes set over REST, controller state, what charger models accept.

Three tables, three writers' concerns kept apart:

* `loadpoint_modes` -- the mode a person chose over REST (`PUT /api/loadpoints/{id}/mode`),
  written by the API, read by the energy actor on every loop and at start. It outranks
  the configuration file's `mode`, so a restart (of the actor or the gateway) keeps it.
* `loadpoint_state` -- the controller's memory (enabled, current, phases, the energy
  integrals, phase switches of the last hour), written by the energy actor after each
  decision, so a restarted actor resumes instead of starting a session from scratch.
* `charger_profile_variants` -- per charger model (vendor/model from BootNotification),
  the SetChargingProfile variant it accepted and whether it refuses 0 A.

Nothing here imports from `actors`: the rows are plain JSON.
"""

from __future__ import annotations

import json
import sqlite3
import time
from typing import Any

from storage.db import migrate, transaction

COMPONENT = "loadpoints"
MIGRATIONS = [
    """
    CREATE TABLE loadpoint_modes (
        loadpoint_id TEXT PRIMARY KEY,
        mode TEXT NOT NULL,
        changed REAL NOT NULL
    );
    CREATE TABLE loadpoint_state (
        loadpoint_id TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        updated REAL NOT NULL
    );
    CREATE TABLE charger_profile_variants (
        model_key TEXT PRIMARY KEY,
        variant TEXT,
        zero_refused INTEGER NOT NULL DEFAULT 0,
        updated REAL NOT NULL
    );
    """,
]


def init(conn: sqlite3.Connection) -> None:
    migrate(conn, COMPONENT, MIGRATIONS)


def set_mode(conn: sqlite3.Connection, loadpoint_id: str, mode: str, now: float | None = None) -> None:
    with transaction(conn):
        conn.execute("INSERT INTO loadpoint_modes (loadpoint_id, mode, changed) VALUES (?, ?, ?)"
                     " ON CONFLICT(loadpoint_id) DO UPDATE SET mode = excluded.mode, changed = excluded.changed",
                     (loadpoint_id, mode, time.time() if now is None else now))


def modes(conn: sqlite3.Connection) -> dict[str, str]:
    """Loadpoint id -> the mode set over REST (loadpoints never changed over REST are absent)."""
    return {row[0]: row[1] for row in conn.execute("SELECT loadpoint_id, mode FROM loadpoint_modes")}


def save_state(conn: sqlite3.Connection, loadpoint_id: str, state: dict[str, Any], now: float | None = None) -> None:
    with transaction(conn):
        conn.execute("INSERT INTO loadpoint_state (loadpoint_id, state, updated) VALUES (?, ?, ?)"
                     " ON CONFLICT(loadpoint_id) DO UPDATE SET state = excluded.state, updated = excluded.updated",
                     (loadpoint_id, json.dumps(state, allow_nan=False), time.time() if now is None else now))


def load_state(conn: sqlite3.Connection, loadpoint_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT state FROM loadpoint_state WHERE loadpoint_id = ?", (loadpoint_id,)).fetchone()
    if row is None:
        return None
    try:
        data = json.loads(row[0])
    except ValueError:
        return None  # unreadable state is no state: the controller starts fresh, it never crashes on it
    return data if isinstance(data, dict) else None


def remember_variant(conn: sqlite3.Connection, model_key: str, variant: str | None = None, *, zero_refused: bool | None = None) -> None:
    """Record what a charger model accepted (`variant`) and/or whether it refuses a 0 A limit."""
    with transaction(conn):
        row = conn.execute("SELECT variant, zero_refused FROM charger_profile_variants WHERE model_key = ?", (model_key,)).fetchone()
        old_variant, old_zero = (row[0], bool(row[1])) if row else (None, False)
        conn.execute("INSERT INTO charger_profile_variants (model_key, variant, zero_refused, updated) VALUES (?, ?, ?, ?)"
                     " ON CONFLICT(model_key) DO UPDATE SET variant = excluded.variant, zero_refused = excluded.zero_refused,"
                     " updated = excluded.updated",
                     (model_key, variant if variant is not None else old_variant,
                      int(zero_refused if zero_refused is not None else old_zero), time.time()))


def variant_for(conn: sqlite3.Connection, model_key: str) -> tuple[str | None, bool]:
    """(the variant this model accepted, whether it refuses 0 A); (None, False) for a model not seen yet."""
    row = conn.execute("SELECT variant, zero_refused FROM charger_profile_variants WHERE model_key = ?", (model_key,)).fetchone()
    return (row[0], bool(row[1])) if row else (None, False)
