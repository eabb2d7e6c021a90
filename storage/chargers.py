"""The charger registry: chargers, their connectors, status history and the local authorization list.

One row per charge point the gateway has ever accepted, keyed by its OCPP chargePointId
(the last path segment of its websocket URL). Connector and charger statuses are stored
exactly as OCPP 1.6 names them (`Available`, `Charging`, `SuspendedEV`, `Faulted`, ...) so
the REST API and the uploads never translate them.

The per-charger AuthorizationKey (security profile 1) is kept only as a salted hash: the
gateway must check it on every handshake but never needs to show it again.

Every function takes an open connection from `storage.db.connect()`; writers wrap their
statements in one `transaction()` so a crash never leaves half an update. Transactions,
meter values and reservations live in `storage.ocpp_transactions`.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import sqlite3
import time
from typing import Any

from storage.db import migrate, transaction

COMPONENT = "chargers"

#: The one rule for a charge point id, wherever one is accepted: the websocket handshake
#: (the last URL segment), REST paths and queries (URL-encoded there), the CLI. It is the
#: character set chargers use in the field, at most 48 characters (OCPP's CiString48).
CHARGE_POINT_ID_PATTERN = r"^[A-Za-z0-9._:*+|@-]{1,48}$"

#: Values a BootNotification reply may carry (OCPP 1.6 RegistrationStatus).
REGISTRATION_STATUSES = ("Accepted", "Pending", "Rejected")

#: OCPP 1.6 ChargePointStatus, as the spec spells them.
CONNECTOR_STATUSES = (
    "Available", "Preparing", "Charging", "SuspendedEVSE", "SuspendedEV",
    "Finishing", "Reserved", "Unavailable", "Faulted",
)

#: OCPP 1.6 AuthorizationStatus.
AUTHORIZATION_STATUSES = ("Accepted", "Blocked", "Expired", "Invalid", "ConcurrentTx")

MIGRATIONS = [
    """
    CREATE TABLE chargers (
        charge_point_id   TEXT PRIMARY KEY,
        serial_number     TEXT,
        vendor            TEXT,
        model             TEXT,
        firmware_version  TEXT,
        auth_key_hash     TEXT,
        registration_status TEXT NOT NULL DEFAULT 'Pending',
        status            TEXT NOT NULL DEFAULT 'Unavailable',
        connected         INTEGER NOT NULL DEFAULT 0,
        last_seen         REAL,
        last_boot         REAL,
        created           REAL NOT NULL
    );
    CREATE INDEX chargers_serial ON chargers(serial_number);
    CREATE TABLE connectors (
        charge_point_id   TEXT NOT NULL REFERENCES chargers(charge_point_id) ON DELETE CASCADE,
        connector_id      INTEGER NOT NULL,
        status            TEXT NOT NULL,
        error_code        TEXT NOT NULL DEFAULT 'NoError',
        info              TEXT,
        vendor_error_code TEXT,
        timestamp         REAL NOT NULL,
        PRIMARY KEY (charge_point_id, connector_id)
    );
    CREATE TABLE status_history (
        id                INTEGER PRIMARY KEY,
        charge_point_id   TEXT NOT NULL REFERENCES chargers(charge_point_id) ON DELETE CASCADE,
        connector_id      INTEGER NOT NULL,
        status            TEXT NOT NULL,
        error_code        TEXT NOT NULL,
        info              TEXT,
        vendor_error_code TEXT,
        timestamp         REAL NOT NULL,
        received          REAL NOT NULL
    );
    CREATE INDEX status_history_charger ON status_history(charge_point_id, timestamp);
    CREATE TABLE auth_list (
        id_tag            TEXT PRIMARY KEY,
        status            TEXT NOT NULL,
        expiry            REAL,
        parent_id_tag     TEXT
    );
    """,
    # the charger's own text of a timestamp too far in the future to order by (see FUTURE_SKEW)
    """
    ALTER TABLE connectors ADD COLUMN charger_timestamp TEXT;
    ALTER TABLE status_history ADD COLUMN charger_timestamp TEXT;
    """,
]

#: Seconds a charger's clock may run ahead of ours before its timestamp is not trusted for
#: ordering: such a status is recorded at the time it was received (its own text kept in
#: `charger_timestamp`), so it cannot outrank every correct notification after it.
FUTURE_SKEW = 300.0

#: Status history rows kept per charger; older rows are pruned on insert (bounded storage).
STATUS_HISTORY_LIMIT = 2000


def init(conn: sqlite3.Connection) -> None:
    """Create or upgrade this component's tables."""
    migrate(conn, COMPONENT, MIGRATIONS)


# ------------------------------------------------------------------ auth keys
def hash_auth_key(key: str, salt: bytes | None = None) -> str:
    """A salted SHA-256 of an AuthorizationKey (`sha256$<salt hex>$<digest hex>`).

    Profile 1 keys are 16-20 random bytes chosen by the operator, not passwords people
    reuse, so a fast salted hash is enough and keeps every handshake cheap.
    """
    salt = salt if salt is not None else os.urandom(16)
    digest = hashlib.sha256(salt + key.encode()).hexdigest()
    return f"sha256${salt.hex()}${digest}"


def check_auth_key(stored_hash: str | None, key: str) -> bool:
    """True when `key` matches the stored hash (constant-time compare)."""
    if not stored_hash:
        return False
    try:
        scheme, salt_hex, digest = stored_hash.split("$")
    except ValueError:
        return False
    if scheme != "sha256":
        return False
    candidate = hash_auth_key(key, bytes.fromhex(salt_hex)).split("$")[2]
    return hmac.compare_digest(candidate, digest)


# ------------------------------------------------------------------ chargers
def add_charger(
    conn: sqlite3.Connection,
    charge_point_id: str,
    *,
    auth_key: str | None = None,
    serial_number: str | None = None,
    registration_status: str = "Pending",
    now: float | None = None,
) -> dict[str, Any]:
    """Register a charger (idempotent: an existing row keeps its data, a given key replaces the old one)."""
    if registration_status not in REGISTRATION_STATUSES:
        raise ValueError(f"registration status must be one of {REGISTRATION_STATUSES}, not {registration_status!r}")
    now = time.time() if now is None else now
    key_hash = hash_auth_key(auth_key) if auth_key is not None else None
    with transaction(conn):
        conn.execute(
            "INSERT INTO chargers (charge_point_id, serial_number, auth_key_hash, registration_status, created)"
            " VALUES (?, ?, ?, ?, ?) ON CONFLICT(charge_point_id) DO UPDATE SET"
            " auth_key_hash = COALESCE(excluded.auth_key_hash, auth_key_hash),"
            " serial_number = COALESCE(excluded.serial_number, serial_number)",
            (charge_point_id, serial_number, key_hash, registration_status, now),
        )
    return get_charger(conn, charge_point_id)  # type: ignore[return-value]


def get_charger(conn: sqlite3.Connection, charge_point_id: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM chargers WHERE charge_point_id = ?", (charge_point_id,)).fetchone()
    return _public(row) if row else None


def get_auth_key_hash(conn: sqlite3.Connection, charge_point_id: str) -> str | None:
    row = conn.execute("SELECT auth_key_hash FROM chargers WHERE charge_point_id = ?", (charge_point_id,)).fetchone()
    return row[0] if row else None


def get_charger_by_serial(conn: sqlite3.Connection, serial_number: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM chargers WHERE serial_number = ? ORDER BY created LIMIT 1", (serial_number,)).fetchone()
    return _public(row) if row else None


def remove_charger(conn: sqlite3.Connection, charge_point_id: str) -> bool:
    """Forget a charger with its connectors and status history (its transactions stay: they were billed)."""
    with transaction(conn):
        cursor = conn.execute("DELETE FROM chargers WHERE charge_point_id = ?", (charge_point_id,))
    return cursor.rowcount > 0


def list_chargers(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    return [_public(row) for row in conn.execute("SELECT * FROM chargers ORDER BY charge_point_id")]


def list_available_chargers(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Connected, accepted chargers with at least one connector reporting `Available`."""
    rows = conn.execute(
        "SELECT * FROM chargers c WHERE c.connected = 1 AND c.registration_status = 'Accepted'"
        " AND EXISTS (SELECT 1 FROM connectors k WHERE k.charge_point_id = c.charge_point_id"
        "             AND k.connector_id > 0 AND k.status = 'Available')"
        " ORDER BY c.charge_point_id"
    )
    return [_public(row) for row in rows]


def update_charger_status(conn: sqlite3.Connection, charge_point_id: str, status: str) -> None:
    """Set the charger-level status (connector 0's status in OCPP terms)."""
    if status not in CONNECTOR_STATUSES:
        raise ValueError(f"status must be one of {CONNECTOR_STATUSES}, not {status!r}")
    with transaction(conn):
        conn.execute("UPDATE chargers SET status = ? WHERE charge_point_id = ?", (status, charge_point_id))


def set_registration_status(conn: sqlite3.Connection, charge_point_id: str, status: str) -> bool:
    """Approve (Accepted), hold (Pending) or refuse (Rejected) a charger; its next BootNotification gets this answer."""
    if status not in REGISTRATION_STATUSES:
        raise ValueError(f"registration status must be one of {REGISTRATION_STATUSES}, not {status!r}")
    with transaction(conn):
        cursor = conn.execute("UPDATE chargers SET registration_status = ? WHERE charge_point_id = ?", (status, charge_point_id))
    return cursor.rowcount > 0


def record_boot(
    conn: sqlite3.Connection,
    charge_point_id: str,
    *,
    vendor: str,
    model: str,
    serial_number: str | None,
    firmware_version: str | None,
    registration_status: str,
    now: float,
) -> None:
    """Register or update a charger from its BootNotification."""
    with transaction(conn):
        conn.execute(
            "INSERT INTO chargers (charge_point_id, vendor, model, serial_number, firmware_version,"
            " registration_status, connected, last_seen, last_boot, created)"
            " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?) ON CONFLICT(charge_point_id) DO UPDATE SET"
            " vendor = excluded.vendor, model = excluded.model,"
            " serial_number = COALESCE(excluded.serial_number, serial_number),"
            " firmware_version = COALESCE(excluded.firmware_version, firmware_version),"
            " registration_status = excluded.registration_status, connected = 1,"
            " last_seen = excluded.last_seen, last_boot = excluded.last_boot",
            (charge_point_id, vendor, model, serial_number, firmware_version, registration_status, now, now, now),
        )


def set_connected(conn: sqlite3.Connection, charge_point_id: str, connected: bool, now: float) -> None:
    with transaction(conn):
        conn.execute(
            "UPDATE chargers SET connected = ?, last_seen = ? WHERE charge_point_id = ?",
            (1 if connected else 0, now, charge_point_id),
        )


def touch(conn: sqlite3.Connection, charge_point_id: str, now: float) -> None:
    """Note that the charger was heard from (Heartbeat and every other frame)."""
    conn.execute("UPDATE chargers SET last_seen = ? WHERE charge_point_id = ?", (now, charge_point_id))


def _public(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data.pop("auth_key_hash", None)
    data["connected"] = bool(data["connected"])
    return data


# ---------------------------------------------------------------- connectors
def record_status(
    conn: sqlite3.Connection,
    charge_point_id: str,
    connector_id: int,
    *,
    status: str,
    error_code: str,
    timestamp: float,
    received: float,
    info: str | None = None,
    vendor_error_code: str | None = None,
    charger_timestamp: str | None = None,
) -> bool:
    """Store a StatusNotification: always in the history, as current state only if newer.

    Returns True when it became the connector's current status. A replayed, older
    notification lands in the history at its own timestamp but does not overwrite
    what the connector reported since. `timestamp` is what orders it: the caller passes
    the receive time for a charger timestamp too far ahead, with the charger's text in
    `charger_timestamp`. A current status ordered that way is replaced by any notification
    received after it, whatever its own timestamp says: a charger stamping to the second
    must not lose to the millisecond it was received at. A current status dated more than
    FUTURE_SKEW past `received` (stored before that rule) is replaced by any newer notification.
    """
    with transaction(conn):
        conn.execute(
            "INSERT INTO status_history (charge_point_id, connector_id, status, error_code, info,"
            " vendor_error_code, timestamp, received, charger_timestamp) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (charge_point_id, connector_id, status, error_code, info, vendor_error_code, timestamp, received, charger_timestamp),
        )
        conn.execute(
            "DELETE FROM status_history WHERE charge_point_id = ? AND id <= ("
            " SELECT id FROM status_history WHERE charge_point_id = ? ORDER BY id DESC LIMIT 1 OFFSET ?)",
            (charge_point_id, charge_point_id, STATUS_HISTORY_LIMIT),
        )
        cursor = conn.execute(
            "INSERT INTO connectors (charge_point_id, connector_id, status, error_code, info, vendor_error_code, timestamp, charger_timestamp)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(charge_point_id, connector_id) DO UPDATE SET"
            " status = excluded.status, error_code = excluded.error_code, info = excluded.info,"
            " vendor_error_code = excluded.vendor_error_code, timestamp = excluded.timestamp, charger_timestamp = excluded.charger_timestamp"
            " WHERE excluded.timestamp >= connectors.timestamp OR connectors.timestamp > ?"
            " OR (connectors.charger_timestamp IS NOT NULL AND ? >= connectors.timestamp)",
            (charge_point_id, connector_id, status, error_code, info, vendor_error_code, timestamp, charger_timestamp, received + FUTURE_SKEW, received),
        )
        current = cursor.rowcount > 0
        if current and connector_id == 0:
            conn.execute("UPDATE chargers SET status = ? WHERE charge_point_id = ?", (status, charge_point_id))
    return current


def list_connectors(conn: sqlite3.Connection, charge_point_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT connector_id, status, error_code, info, vendor_error_code, timestamp, charger_timestamp FROM connectors"
        " WHERE charge_point_id = ? ORDER BY connector_id",
        (charge_point_id,),
    )
    return [dict(row) for row in rows]


def status_history(conn: sqlite3.Connection, charge_point_id: str, limit: int = 100) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT connector_id, status, error_code, info, vendor_error_code, timestamp, received, charger_timestamp FROM status_history"
        " WHERE charge_point_id = ? ORDER BY timestamp DESC, id DESC LIMIT ?",
        (charge_point_id, limit),
    )
    return [dict(row) for row in rows]


# --------------------------------------------------------- authorization list
def set_authorization(
    conn: sqlite3.Connection, id_tag: str, status: str = "Accepted", *, expiry: float | None = None, parent_id_tag: str | None = None
) -> None:
    if status not in AUTHORIZATION_STATUSES:
        raise ValueError(f"authorization status must be one of {AUTHORIZATION_STATUSES}, not {status!r}")
    with transaction(conn):
        conn.execute(
            "INSERT INTO auth_list (id_tag, status, expiry, parent_id_tag) VALUES (?, ?, ?, ?)"
            " ON CONFLICT(id_tag) DO UPDATE SET status = excluded.status, expiry = excluded.expiry,"
            " parent_id_tag = excluded.parent_id_tag",
            (id_tag, status, expiry, parent_id_tag),
        )


def remove_authorization(conn: sqlite3.Connection, id_tag: str) -> None:
    with transaction(conn):
        conn.execute("DELETE FROM auth_list WHERE id_tag = ?", (id_tag,))


def get_authorization(conn: sqlite3.Connection, id_tag: str) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM auth_list WHERE id_tag = ?", (id_tag,)).fetchone()
    return dict(row) if row else None


# ------------------------------------------------------- read-only for the API
def list_chargers_with_connectors(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every charger with its connectors' current status: what the REST API shows."""
    chargers = list_chargers(conn)
    by_id = {c["charge_point_id"]: c for c in chargers}
    for charger in chargers:
        charger["connectors"] = []
    for row in conn.execute("SELECT * FROM connectors ORDER BY charge_point_id, connector_id"):
        entry = dict(row)
        owner = by_id.get(entry.pop("charge_point_id"))
        if owner is not None:
            owner["connectors"].append(entry)
    return chargers
