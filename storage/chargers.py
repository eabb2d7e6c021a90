"""The charger registry: chargers, their connectors, status history and the local authorization list.

One row per charge point the gateway has ever accepted, keyed by its OCPP chargePointId
(the last path segment of its websocket URL). Connector and charger statuses are stored
exactly as OCPP 1.6 names them (`Available`, `Charging`, `SuspendedEV`, `Faulted`, ...) so
the REST API and the uploads never translate them.

The per-charger AuthorizationKey (security profile 1) is kept only as a salted hash: the
gateway must check it on every handshake but never needs to show it again. What an
operator sees instead is its fingerprint (`key_fingerprint`), which the CLI computes
from a key on the operator's side too, so a key offered by a charger can be recognised.

Who may connect is the operator's decision, recorded here (see actors/ocpp/auth.py for
the handshake): a row is `confirmed` once the operator added or accepted the charger,
`blocked` refuses it; a charger admitted on its own under the `accept` policy is an
unconfirmed row that expires (UNCONFIRMED_TTL) and whose number is bounded
(UNCONFIRMED_LIMIT). A key a charger presents while none is pinned becomes a candidate
(`key_candidates`, at most CANDIDATE_LIMIT per charger); only the operator pins one.

The local authorization list and what each charger last took of it live beside this, in
`storage.local_auth_list` (same database, same migrations).

Every function takes an open connection from `storage.db.connect()`; writers wrap their
statements in one `transaction()` so a crash never leaves half an update. Transactions,
meter values and reservations live in `storage.ocpp_transactions`.

Why one module: the registry's tables (chargers, connectors, status history, keys and their
candidates) are written together in one transaction by most calls (a boot, a status, an
admission); the local authorization list, which stands apart, has its own module
(storage/local_auth_list.py).
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
    # operator provisioning: confirmation, blocking, key fingerprints and candidates; a
    # versioned local authorization list and what each charger confirmed of it. Rows that
    # exist already were let in by the old rules and stay confirmed (nothing locks out).
    """
    ALTER TABLE chargers ADD COLUMN confirmed INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE chargers ADD COLUMN blocked INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE chargers ADD COLUMN auth_key_fingerprint TEXT;
    ALTER TABLE chargers ADD COLUMN key_changed REAL;
    CREATE INDEX chargers_unconfirmed ON chargers(confirmed, last_seen);
    CREATE TABLE key_candidates (
        charge_point_id   TEXT NOT NULL REFERENCES chargers(charge_point_id) ON DELETE CASCADE,
        fingerprint       TEXT NOT NULL,
        key_hash          TEXT NOT NULL,
        remote            TEXT,
        first_seen        REAL NOT NULL,
        last_seen         REAL NOT NULL,
        attempts          INTEGER NOT NULL DEFAULT 1,
        PRIMARY KEY (charge_point_id, fingerprint)
    );
    ALTER TABLE auth_list ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
    ALTER TABLE auth_list ADD COLUMN removed INTEGER NOT NULL DEFAULT 0;
    ALTER TABLE auth_list ADD COLUMN updated REAL;
    CREATE INDEX auth_list_version ON auth_list(version);
    CREATE TABLE local_list_state (
        name              TEXT PRIMARY KEY,
        value             INTEGER NOT NULL
    );
    INSERT INTO local_list_state (name, value) SELECT 'version', CASE WHEN count(*) > 0 THEN 1 ELSE 0 END FROM auth_list;
    INSERT INTO local_list_state (name, value) VALUES ('differential_from', 0);
    CREATE TABLE charger_local_list (
        charge_point_id   TEXT PRIMARY KEY REFERENCES chargers(charge_point_id) ON DELETE CASCADE,
        version           INTEGER NOT NULL,
        synced            REAL NOT NULL
    );
    """,
    # an operator's maintenance override of a connector's status; the connector's own last
    # report stays in `connectors`, so lifting the override shows what the charger said
    """
    CREATE TABLE connector_overrides (
        charge_point_id   TEXT NOT NULL REFERENCES chargers(charge_point_id) ON DELETE CASCADE,
        connector_id      INTEGER NOT NULL,
        status            TEXT NOT NULL,
        reason            TEXT,
        created           REAL NOT NULL,
        PRIMARY KEY (charge_point_id, connector_id)
    );
    """,
]

#: Statuses an operator may override a connector with (maintenance: out of order, or back in service).
OVERRIDE_STATUSES = ("Available", "Unavailable", "Faulted")

#: Unconfirmed chargers (admitted on their own under the `accept` policy) kept at most; at
#: the bound the least recently seen disconnected one makes room, or the handshake is refused.
#: Above the 200-charger sites the gateway is sized for, so a whole fleet of new ids fits.
UNCONFIRMED_LIMIT = 1024

#: Seconds a just-admitted charger cannot be made room from: its connection is still being
#: set up (not yet marked connected), and evicting it would reject its BootNotification.
UNCONFIRMED_GRACE = 60.0

#: Seconds an unconfirmed charger is kept after it was last seen (connected ones never expire).
UNCONFIRMED_TTL = 7 * 24 * 3600.0

#: Candidate keys kept per charger; the least recently presented one makes room.
CANDIDATE_LIMIT = 8

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


def key_fingerprint(key: str) -> str:
    """What an operator is shown of a key: 16 hex digits of a domain-separated SHA-256.

    Unsalted, so `egw chargers fingerprint` (or `printf 'egw-ocpp-key:%s' KEY | sha256sum`)
    gives the same digits on the operator's side; 64 bits identify a key among a few
    candidates without giving a profile 1 key (16-20 random bytes) away.
    """
    return hashlib.sha256(b"egw-ocpp-key:" + key.encode()).hexdigest()[:16]


# ------------------------------------------------------------------ chargers
class ChargerExistsError(ValueError):
    """An operator added a charge point id that is already confirmed."""


class UnknownCandidateError(KeyError):
    """The operator named a key fingerprint this charger never presented (or it expired)."""


def add_charger(
    conn: sqlite3.Connection,
    charge_point_id: str,
    *,
    auth_key: str | None = None,
    serial_number: str | None = None,
    registration_status: str = "Pending",
    now: float | None = None,
    confirmed: bool = True,
) -> dict[str, Any]:
    """Register a charger (idempotent: an existing row keeps its data, a given key replaces the old one).

    `confirmed` False is what the handshake records for a charger admitted on its own
    (the `accept` policy); such a row never becomes confirmed here, only by the operator.
    """
    if registration_status not in REGISTRATION_STATUSES:
        raise ValueError(f"registration status must be one of {REGISTRATION_STATUSES}, not {registration_status!r}")
    now = time.time() if now is None else now
    key_hash, fingerprint = (hash_auth_key(auth_key), key_fingerprint(auth_key)) if auth_key is not None else (None, None)
    with transaction(conn):
        conn.execute(
            "INSERT INTO chargers (charge_point_id, serial_number, auth_key_hash, auth_key_fingerprint, key_changed, registration_status, confirmed, created)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT(charge_point_id) DO UPDATE SET"
            " auth_key_hash = COALESCE(excluded.auth_key_hash, auth_key_hash),"
            " auth_key_fingerprint = COALESCE(excluded.auth_key_fingerprint, auth_key_fingerprint),"
            " key_changed = COALESCE(excluded.key_changed, key_changed),"
            " serial_number = COALESCE(excluded.serial_number, serial_number),"
            " confirmed = max(confirmed, excluded.confirmed)",
            (charge_point_id, serial_number, key_hash, fingerprint, now if key_hash else None, registration_status, int(confirmed), now),
        )
    return get_charger(conn, charge_point_id)  # type: ignore[return-value]


def provision_charger(
    conn: sqlite3.Connection, charge_point_id: str, *, auth_key: str | None, registration_status: str = "Accepted",
    serial_number: str | None = None, now: float | None = None,
) -> dict[str, Any]:
    """The operator adds a charger: a new row, or an unconfirmed one taken over as given.

    Raises ChargerExistsError for a charger the operator already has (changing its key or
    status has endpoints of its own, so a typo in an id never silently rewrites another).
    Taking over an unconfirmed row drops its candidates when a key is given: that key wins.
    """
    if registration_status not in REGISTRATION_STATUSES:
        raise ValueError(f"registration status must be one of {REGISTRATION_STATUSES}, not {registration_status!r}")
    now = time.time() if now is None else now
    key_hash, fingerprint = (hash_auth_key(auth_key), key_fingerprint(auth_key)) if auth_key is not None else (None, None)
    with transaction(conn):
        row = conn.execute("SELECT confirmed FROM chargers WHERE charge_point_id = ?", (charge_point_id,)).fetchone()
        if row is not None and row[0]:
            raise ChargerExistsError(f"charger {charge_point_id!r} exists")
        conn.execute(
            "INSERT INTO chargers (charge_point_id, serial_number, auth_key_hash, auth_key_fingerprint, key_changed, registration_status, confirmed, created)"
            " VALUES (?, ?, ?, ?, ?, ?, 1, ?) ON CONFLICT(charge_point_id) DO UPDATE SET"
            " auth_key_hash = excluded.auth_key_hash, auth_key_fingerprint = excluded.auth_key_fingerprint,"
            " key_changed = excluded.key_changed, registration_status = excluded.registration_status, confirmed = 1, blocked = 0,"
            " serial_number = COALESCE(excluded.serial_number, serial_number)",
            (charge_point_id, serial_number, key_hash, fingerprint, now if key_hash else None, registration_status, now),
        )
        if key_hash is not None:
            conn.execute("DELETE FROM key_candidates WHERE charge_point_id = ?", (charge_point_id,))
    return get_charger(conn, charge_point_id)  # type: ignore[return-value]


def set_auth_key(conn: sqlite3.Connection, charge_point_id: str, auth_key: str | None, *, now: float | None = None) -> bool:
    """Pin (or rotate to) `auth_key`, or with None forget the key; False for an unknown charger.

    The old key stops working at once: the next handshake is checked against this hash.
    Setting a key is an operator's act, so the charger counts as confirmed from then on.
    """
    now = time.time() if now is None else now
    key_hash, fingerprint = (hash_auth_key(auth_key), key_fingerprint(auth_key)) if auth_key is not None else (None, None)
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE chargers SET auth_key_hash = ?, auth_key_fingerprint = ?, key_changed = ?, confirmed = 1 WHERE charge_point_id = ?",
            (key_hash, fingerprint, now, charge_point_id),
        )
        if cursor.rowcount and key_hash is not None:
            conn.execute("DELETE FROM key_candidates WHERE charge_point_id = ?", (charge_point_id,))
    return cursor.rowcount > 0


def accept_charger(conn: sqlite3.Connection, charge_point_id: str, *, fingerprint: str | None = None, now: float | None = None) -> bool:
    """The operator accepts a charger: confirmed, registration Accepted, and with `fingerprint`
    the key it presented under that fingerprint pinned (the other candidates dropped).

    False for an unknown charger; UnknownCandidateError for a fingerprint it never presented.
    """
    now = time.time() if now is None else now
    with transaction(conn):
        if conn.execute("SELECT 1 FROM chargers WHERE charge_point_id = ?", (charge_point_id,)).fetchone() is None:
            return False
        if fingerprint is not None:
            candidate = conn.execute(
                "SELECT key_hash FROM key_candidates WHERE charge_point_id = ? AND fingerprint = ?", (charge_point_id, fingerprint.lower())
            ).fetchone()
            if candidate is None:
                raise UnknownCandidateError(fingerprint)
            conn.execute(
                "UPDATE chargers SET auth_key_hash = ?, auth_key_fingerprint = ?, key_changed = ? WHERE charge_point_id = ?",
                (candidate[0], fingerprint.lower(), now, charge_point_id),
            )
            conn.execute("DELETE FROM key_candidates WHERE charge_point_id = ?", (charge_point_id,))
        conn.execute("UPDATE chargers SET registration_status = 'Accepted', confirmed = 1 WHERE charge_point_id = ?", (charge_point_id,))
    return True


def set_blocked(conn: sqlite3.Connection, charge_point_id: str, blocked: bool) -> bool:
    """Block (handshakes refused, a BootNotification Rejected) or unblock; False for an unknown charger.

    Blocking confirms the row too: an operator's decision must not expire with it.
    """
    with transaction(conn):
        cursor = conn.execute("UPDATE chargers SET blocked = ?, confirmed = 1 WHERE charge_point_id = ?", (int(blocked), charge_point_id))
    return cursor.rowcount > 0


def admit_unconfirmed(
    conn: sqlite3.Connection, charge_point_id: str, *, registration_status: str, now: float,
    limit: int = UNCONFIRMED_LIMIT, ttl: float = UNCONFIRMED_TTL,
) -> bool:
    """Record a charger the `accept` policy lets in unasked; False when there is no room.

    Expired unconfirmed rows go first; at `limit`, the least recently seen disconnected
    one is dropped (never one admitted within UNCONFIRMED_GRACE: it may still be setting
    up its connection); if none can go, the newcomer is refused (False).
    """
    with transaction(conn):
        _expire_unconfirmed(conn, now, ttl)
        count = conn.execute("SELECT count(*) FROM chargers WHERE confirmed = 0").fetchone()[0]
        if count >= limit:
            oldest = conn.execute(
                "SELECT charge_point_id FROM chargers WHERE confirmed = 0 AND connected = 0 AND COALESCE(last_seen, created) < ?"
                " ORDER BY COALESCE(last_seen, created) LIMIT ?", (now - UNCONFIRMED_GRACE, count - limit + 1)
            ).fetchall()
            if len(oldest) < count - limit + 1:
                return False
            conn.executemany("DELETE FROM chargers WHERE charge_point_id = ?", [(r[0],) for r in oldest])
        conn.execute(
            "INSERT INTO chargers (charge_point_id, registration_status, confirmed, last_seen, created) VALUES (?, ?, 0, ?, ?)"
            " ON CONFLICT(charge_point_id) DO NOTHING",
            (charge_point_id, registration_status, now, now),
        )
    return True


def expire_unconfirmed(conn: sqlite3.Connection, now: float, ttl: float = UNCONFIRMED_TTL) -> int:
    """Drop unconfirmed chargers not seen for `ttl` seconds (never a connected one); how many went."""
    with transaction(conn):
        return _expire_unconfirmed(conn, now, ttl)


def _expire_unconfirmed(conn: sqlite3.Connection, now: float, ttl: float) -> int:
    cursor = conn.execute(
        "DELETE FROM chargers WHERE confirmed = 0 AND connected = 0 AND COALESCE(last_seen, created) < ?", (now - ttl,)
    )
    return cursor.rowcount


def record_candidate(conn: sqlite3.Connection, charge_point_id: str, key: str, *, remote: str | None, now: float) -> str:
    """Remember a key a charger without a pinned key presented; its fingerprint.

    The operator pins one later (`accept_charger`); until then none is trusted, so the
    first peer to connect cannot lock the real charger out. At most CANDIDATE_LIMIT per
    charger: the least recently presented one makes room.
    """
    fingerprint = key_fingerprint(key)
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE key_candidates SET last_seen = ?, remote = ?, attempts = attempts + 1 WHERE charge_point_id = ? AND fingerprint = ?",
            (now, remote, charge_point_id, fingerprint),
        )
        if cursor.rowcount == 0:
            conn.execute(
                "DELETE FROM key_candidates WHERE charge_point_id = ? AND fingerprint IN ("
                " SELECT fingerprint FROM key_candidates WHERE charge_point_id = ? ORDER BY last_seen DESC LIMIT -1 OFFSET ?)",
                (charge_point_id, charge_point_id, CANDIDATE_LIMIT - 1),
            )
            conn.execute(
                "INSERT INTO key_candidates (charge_point_id, fingerprint, key_hash, remote, first_seen, last_seen) VALUES (?, ?, ?, ?, ?, ?)",
                (charge_point_id, fingerprint, hash_auth_key(key), remote, now, now),
            )
    return fingerprint


def key_candidates(conn: sqlite3.Connection, charge_point_id: str) -> list[dict[str, Any]]:
    """Keys this charger presented while none was pinned, most recent first (no hashes)."""
    rows = conn.execute(
        "SELECT fingerprint, remote, first_seen, last_seen, attempts FROM key_candidates WHERE charge_point_id = ? ORDER BY last_seen DESC",
        (charge_point_id,),
    )
    return [dict(row) for row in rows]


def credentials(conn: sqlite3.Connection, charge_point_id: str | None = None) -> list[dict[str, Any]]:
    """What the operator decides on, per charger (one, or all by id): whether it is confirmed
    or blocked, the fingerprint of its pinned key, and the candidate keys it presented."""
    where, args = ("WHERE charge_point_id = ?", (charge_point_id,)) if charge_point_id is not None else ("", ())
    rows = conn.execute(
        "SELECT charge_point_id, registration_status, confirmed, blocked, connected, auth_key_hash IS NOT NULL AS key_set,"
        f" auth_key_fingerprint, key_changed, last_seen, created FROM chargers {where} ORDER BY charge_point_id", args,
    ).fetchall()
    found = []
    for row in rows:
        entry = dict(row)
        entry.update(confirmed=bool(entry["confirmed"]), blocked=bool(entry["blocked"]), connected=bool(entry["connected"]),
                     key_set=bool(entry["key_set"]), candidates=key_candidates(conn, entry["charge_point_id"]))
        found.append(entry)
    return found


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
    """Connected, accepted chargers with at least one connector `Available` (an operator's override wins over its report)."""
    rows = conn.execute(
        "SELECT * FROM chargers c WHERE c.connected = 1 AND c.registration_status = 'Accepted'"
        " AND EXISTS (SELECT 1 FROM connectors k LEFT JOIN connector_overrides o"
        "             ON o.charge_point_id = k.charge_point_id AND o.connector_id = k.connector_id"
        "             WHERE k.charge_point_id = c.charge_point_id AND k.connector_id > 0 AND COALESCE(o.status, k.status) = 'Available')"
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
            " registration_status, connected, last_seen, last_boot, created, confirmed)"
            " VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, 0) ON CONFLICT(charge_point_id) DO UPDATE SET"
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
    """A charger row without its key hash (whether one is set stays visible as `key_set`)."""
    data = dict(row)
    data["key_set"] = data.pop("auth_key_hash", None) is not None
    for flag in ("connected", "confirmed", "blocked"):
        if flag in data:
            data[flag] = bool(data[flag])
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


def set_connector_override(conn: sqlite3.Connection, charge_point_id: str, connector_id: int, status: str, *,
                           reason: str | None, now: float) -> dict[str, Any] | None:
    """Override a connector's status for maintenance (kept until cleared, across restarts).

    Only a connector the charger has reported can be overridden; None when the charger or
    that connector is unknown. Setting it again replaces the status and reason.
    """
    if status not in OVERRIDE_STATUSES:
        raise ValueError(f"override status must be one of {OVERRIDE_STATUSES}, not {status!r}")
    with transaction(conn):
        known = conn.execute("SELECT 1 FROM connectors WHERE charge_point_id = ? AND connector_id = ?", (charge_point_id, connector_id)).fetchone()
        if known is None:
            return None
        conn.execute(
            "INSERT INTO connector_overrides (charge_point_id, connector_id, status, reason, created) VALUES (?, ?, ?, ?, ?)"
            " ON CONFLICT(charge_point_id, connector_id) DO UPDATE SET status = excluded.status, reason = excluded.reason, created = excluded.created",
            (charge_point_id, connector_id, status, reason, now),
        )
    return connector_overrides(conn, charge_point_id)[(charge_point_id, connector_id)]


def clear_connector_override(conn: sqlite3.Connection, charge_point_id: str, connector_id: int) -> bool:
    """Lift an override: the connector shows what the charger last reported again. False when there was none."""
    with transaction(conn):
        cursor = conn.execute("DELETE FROM connector_overrides WHERE charge_point_id = ? AND connector_id = ?", (charge_point_id, connector_id))
    return cursor.rowcount > 0


def connector_overrides(conn: sqlite3.Connection, charge_point_id: str | None = None) -> dict[tuple[str, int], dict[str, Any]]:
    """Overrides in force, by (charger, connector); none on a read-only connection to a store not yet migrated to them."""
    where, params = ("WHERE charge_point_id = ?", (charge_point_id,)) if charge_point_id is not None else ("", ())
    try:
        rows = conn.execute(f"SELECT charge_point_id, connector_id, status, reason, created FROM connector_overrides {where}", params).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return {}
        raise
    return {(row["charge_point_id"], row["connector_id"]): {"status": row["status"], "reason": row["reason"], "created": row["created"]} for row in rows}


def status_history(conn: sqlite3.Connection, charge_point_id: str, limit: int = 100) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT connector_id, status, error_code, info, vendor_error_code, timestamp, received, charger_timestamp FROM status_history"
        " WHERE charge_point_id = ? ORDER BY timestamp DESC, id DESC LIMIT ?",
        (charge_point_id, limit),
    )
    return [dict(row) for row in rows]


# ------------------------------------------------------- read-only for the API
def list_chargers_with_connectors(conn: sqlite3.Connection) -> list[dict[str, Any]]:
    """Every charger with its connectors' current status: what the REST API shows.

    Each connector carries `override` (status, reason, created) when an operator overrode
    it, else None; `status` stays what the charger last reported.
    """
    chargers = list_chargers(conn)
    by_id = {c["charge_point_id"]: c for c in chargers}
    overrides = connector_overrides(conn)
    for charger in chargers:
        charger["connectors"] = []
    for row in conn.execute("SELECT * FROM connectors ORDER BY charge_point_id, connector_id"):
        entry = dict(row)
        charge_point_id = entry.pop("charge_point_id")
        owner = by_id.get(charge_point_id)
        if owner is not None:
            entry["override"] = overrides.get((charge_point_id, entry["connector_id"]))
            owner["connectors"].append(entry)
    return chargers
