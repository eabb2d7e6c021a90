"""Charging sessions: transactions, meter values, reservations, and their export queue.

Why the details look the way they do:

* Transaction ids come from a counter persisted in SQLite, bumped in the same
  transaction that inserts the session, so ids stay unique across gateway restarts.
  Only the central system issues them, and only within 1..2^31-1 (OCPP's integer is
  32 bits for many chargers, and it is what the REST API accepts): an id a charger
  names that was never issued moves nothing, and a counter pushed past that range by
  an earlier version is ignored in favour of the highest id actually issued.
* A charger that lost its connection re-sends StartTransaction; the replay has the same
  connector, idTag, meterStart and timestamp, and gets the id already assigned (a unique
  index finds it) instead of a second session.
* Chargers that were offline replay old messages. Everything is stored under the
  charger's own timestamps, and queries order by timestamp, so the history reads in
  the order things happened, not the order they arrived.
* Finished sessions and meter samples are also queued in `ocpp_export` in the same
  SQLite transaction that stores them; the charger actor forwards that queue to the
  harvest actor and deletes rows only after the harvest actor acknowledged them. The
  queue is bounded: the oldest rows go first when it is full, and the count of dropped
  rows is kept so the gap is visible. Row ids never repeat (AUTOINCREMENT): the actor
  uses them as batch ids towards the harvest actor, which must stay unique per producer.
* Every field of an export row that the upload identifies it by is fixed when it is
  queued: its group (`batch_id`, the last row id of the rows queued together), the
  gateway's monotonic time of the sample (`mono_time`, derived from its age at that
  moment) and the boot it was taken in (`boot_id`). A batch re-sent after a lost ack or
  by a restarted charger actor is then the same batch, field for field, and the outbox
  answers it with the sequence numbers it already gave. A clock read at send time would
  make every re-send look like new data.
* Nothing non-finite is queued: JSON has no NaN or Infinity, and one such number makes
  the receiver refuse the whole upload. A number that slips through to here is stored
  as null and named in the record's `flags`.
* A group the harvest actor refuses is replaced, in one transaction, by one gap row in
  its place, so the loss reaches the upload as a gap record instead of vanishing.

Why one module: sessions, their meter values, reservations and the export queue change
together in one SQLite transaction (a StopTransaction closes the session, stores its samples
and queues its export), so their statements live in one module.
"""

from __future__ import annotations

import json
import math
import sqlite3
import time
from typing import Any

from storage.db import migrate, transaction
from supervisor.procs import boot_id

COMPONENT = "ocpp_transactions"

#: Reasons a reservation ends, plus ReserveNow's reply statuses while it is pending.
RESERVATION_STATUSES = ("Requested", "Accepted", "Faulted", "Occupied", "Rejected", "Unavailable", "Cancelled", "Used", "Expired")

#: Rows the export queue may hold before the oldest are dropped.
EXPORT_QUEUE_LIMIT = 50_000

MIGRATIONS = [
    """
    CREATE TABLE ocpp_counters (
        name  TEXT PRIMARY KEY,
        value INTEGER NOT NULL
    );
    CREATE TABLE transactions (
        transaction_id  INTEGER PRIMARY KEY,
        charge_point_id TEXT NOT NULL,
        connector_id    INTEGER NOT NULL,
        id_tag          TEXT NOT NULL,
        meter_start     INTEGER NOT NULL,
        start_time      REAL NOT NULL,
        reservation_id  INTEGER,
        meter_stop      INTEGER,
        stop_time       REAL,
        stop_reason     TEXT,
        stop_id_tag     TEXT,
        last_meter_wh   REAL,
        last_power_w    REAL,
        last_meter_time REAL,
        payment_ref     TEXT,
        status          TEXT NOT NULL,
        unknown_start   INTEGER NOT NULL DEFAULT 0,
        received        REAL NOT NULL
    );
    CREATE UNIQUE INDEX transactions_identity ON transactions(charge_point_id, connector_id, start_time, id_tag, meter_start);
    CREATE INDEX transactions_charger ON transactions(charge_point_id, start_time);
    CREATE INDEX transactions_id_tag ON transactions(id_tag, start_time);
    CREATE TABLE meter_values (
        id              INTEGER PRIMARY KEY,
        charge_point_id TEXT NOT NULL,
        connector_id    INTEGER NOT NULL,
        transaction_id  INTEGER,
        timestamp       REAL NOT NULL,
        measurand       TEXT NOT NULL,
        phase           TEXT NOT NULL DEFAULT '',
        location        TEXT NOT NULL DEFAULT '',
        context         TEXT NOT NULL DEFAULT '',
        unit            TEXT NOT NULL DEFAULT '',
        value           TEXT NOT NULL,
        received        REAL NOT NULL
    );
    CREATE UNIQUE INDEX meter_values_identity ON meter_values(charge_point_id, connector_id, timestamp, measurand, phase, location, context);
    CREATE INDEX meter_values_tx ON meter_values(transaction_id, timestamp);
    CREATE TABLE reservations (
        reservation_id  INTEGER PRIMARY KEY,
        charge_point_id TEXT NOT NULL,
        connector_id    INTEGER NOT NULL,
        id_tag          TEXT NOT NULL,
        parent_id_tag   TEXT,
        expiry          REAL NOT NULL,
        status          TEXT NOT NULL,
        created         REAL NOT NULL
    );
    CREATE TABLE ocpp_export (
        id              INTEGER PRIMARY KEY AUTOINCREMENT,
        charge_point_id TEXT NOT NULL,
        wall_time       REAL NOT NULL,
        values_json     TEXT NOT NULL
    );
    CREATE INDEX ocpp_export_charger ON ocpp_export(charge_point_id, id);
    """,
    lambda conn: _export_identity_columns(conn),
]


def read_boot_id() -> str:
    """This boot's id (`supervisor.procs.boot_id`): monotonic times compare only within one boot."""
    return boot_id() or "unknown"


BOOT_ID = read_boot_id()


def export_clock(wall_time: float) -> float:
    """The gateway's monotonic time of a sample taken at `wall_time` (the charger's clock).

    The charger's clock and ours share no monotonic base, so the sample's age on our wall
    clock is subtracted from our monotonic clock now. A timestamp in the future (a charger
    clock running ahead) is not clamped: wall minus monotonic then always equals the
    gateway's own offset, which the outbox compares to detect jumps of the gateway's
    clock, so a skewed charger clock never reads as one. Called once, when the row is
    queued, and stored with it.
    """
    return time.monotonic() - (time.time() - wall_time)


def _export_identity_columns(conn: sqlite3.Connection) -> None:
    """Migration 2: fix each export row's identity (group, monotonic time, boot) when queued.

    Rows queued before this migration are stamped once, here, each as its own group,
    so their re-sends are identical from now on. Idempotent: two processes opening the
    database at once may both get here, and the second finds the columns in place.
    """
    columns = {row[1] for row in conn.execute("PRAGMA table_info(ocpp_export)")}
    for name, kind in (("batch_id", "INTEGER"), ("mono_time", "REAL"), ("boot_id", "TEXT")):
        if name not in columns:
            conn.execute(f"ALTER TABLE ocpp_export ADD COLUMN {name} {kind}")
    rows = conn.execute("SELECT id, wall_time FROM ocpp_export WHERE batch_id IS NULL").fetchall()
    conn.executemany(
        "UPDATE ocpp_export SET batch_id = id, mono_time = ?, boot_id = ? WHERE id = ?",
        [(export_clock(wall_time), BOOT_ID, row_id) for row_id, wall_time in rows],
    )
    conn.execute("CREATE INDEX IF NOT EXISTS ocpp_export_batch ON ocpp_export(charge_point_id, batch_id)")


def init(conn: sqlite3.Connection) -> None:
    """Create or upgrade this component's tables.

    The listener and charger actors may open the database together; whoever lost the
    race to a migration finds it applied on a second look.
    """
    try:
        migrate(conn, COMPONENT, MIGRATIONS)
    except sqlite3.OperationalError:
        migrate(conn, COMPONENT, MIGRATIONS)


#: The largest transaction id the central system hands out (OCPP integer, REST path parameter).
MAX_TRANSACTION_ID = 2**31 - 1


def _next_transaction_id(conn: sqlite3.Connection) -> int:
    """Bump and return the transaction id counter, kept within 1..MAX_TRANSACTION_ID; call inside a transaction.

    Rows recorded for stops of never-issued ids (`unknown_start`, written by earlier
    versions) do not raise the floor; an id they already hold is skipped.
    """
    row = conn.execute("SELECT value FROM ocpp_counters WHERE name = 'transaction_id'").fetchone()
    floor = conn.execute(
        "SELECT COALESCE(MAX(transaction_id), 0) FROM transactions WHERE unknown_start = 0 AND transaction_id BETWEEN 1 AND ?",
        (MAX_TRANSACTION_ID,),
    ).fetchone()[0]
    value = max(row[0] if row else 0, floor) + 1
    if value > MAX_TRANSACTION_ID:  # a counter moved out of range by a charger-chosen id (older versions)
        value = floor + 1
    while conn.execute("SELECT 1 FROM transactions WHERE transaction_id = ?", (value,)).fetchone():
        value += 1
    if value > MAX_TRANSACTION_ID:
        raise OverflowError(f"transaction ids exhausted (the last one, {MAX_TRANSACTION_ID}, is issued)")
    conn.execute(
        "INSERT INTO ocpp_counters (name, value) VALUES ('transaction_id', ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (value,),
    )
    return value


def _next(conn: sqlite3.Connection, name: str, floor: int = 0) -> int:
    """Bump and return a persisted counter; call inside a transaction."""
    row = conn.execute("SELECT value FROM ocpp_counters WHERE name = ?", (name,)).fetchone()
    value = max(row[0] if row else 0, floor) + 1
    conn.execute(
        "INSERT INTO ocpp_counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        (name, value),
    )
    return value


# --------------------------------------------------------------- transactions
def start_transaction(
    conn: sqlite3.Connection,
    charge_point_id: str,
    *,
    connector_id: int,
    id_tag: str,
    meter_start: int,
    start_time: float,
    received: float,
    reservation_id: int | None = None,
) -> tuple[int, bool]:
    """Store a StartTransaction; return (transaction id, True if new / False if a replay)."""
    with transaction(conn):
        row = conn.execute(
            "SELECT transaction_id FROM transactions WHERE charge_point_id = ? AND connector_id = ?"
            " AND start_time = ? AND id_tag = ? AND meter_start = ?",
            (charge_point_id, connector_id, start_time, id_tag, meter_start),
        ).fetchone()
        if row:
            return row[0], False
        transaction_id = _next_transaction_id(conn)
        conn.execute(
            "INSERT INTO transactions (transaction_id, charge_point_id, connector_id, id_tag, meter_start, start_time,"
            " reservation_id, last_meter_wh, last_meter_time, status, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, 'Active', ?)",
            (transaction_id, charge_point_id, connector_id, id_tag, meter_start, start_time, reservation_id, meter_start, start_time, received),
        )
        if reservation_id is not None:
            conn.execute(
                "UPDATE reservations SET status = 'Used' WHERE reservation_id = ? AND charge_point_id = ?",
                (reservation_id, charge_point_id),
            )
    return transaction_id, True


def stop_transaction(
    conn: sqlite3.Connection,
    charge_point_id: str,
    transaction_id: int,
    *,
    meter_stop: int,
    stop_time: float,
    received: float,
    reason: str | None = None,
    id_tag: str | None = None,
    export: dict[str, Any] | None = None,
) -> dict[str, Any] | None:
    """Finish one of this charger's sessions; None (nothing stored) when it has no session with that id.

    Transaction ids are the central system's to issue: a stop naming an id never issued,
    or another charger's, creates and changes no session and moves no counter (the caller
    decides what else to keep). A repeated StopTransaction for a finished session
    changes nothing. `export`, when given, is queued for upload in the same SQLite
    transaction.
    """
    with transaction(conn):
        row = conn.execute(
            "SELECT status FROM transactions WHERE transaction_id = ? AND charge_point_id = ?", (transaction_id, charge_point_id)
        ).fetchone()
        if row is None:
            return None
        if row[0] != "Active":
            return get_transaction(conn, transaction_id)
        conn.execute(
            "UPDATE transactions SET meter_stop = ?, stop_time = ?, stop_reason = ?, stop_id_tag = ?, status = 'Finished',"
            " last_meter_wh = CASE WHEN last_meter_time IS NULL OR last_meter_time <= ? THEN ? ELSE last_meter_wh END,"
            " last_meter_time = MAX(COALESCE(last_meter_time, 0), ?) WHERE transaction_id = ?",
            (meter_stop, stop_time, reason, id_tag, stop_time, meter_stop, stop_time, transaction_id),
        )
        if export is not None:
            _queue_exports(conn, charge_point_id, [(stop_time, export)])
    return get_transaction(conn, transaction_id)


def queue_export(conn: sqlite3.Connection, charge_point_id: str, wall_time: float, record: dict[str, Any]) -> None:
    """Queue one record for upload on its own (e.g. the end of a session the gateway never saw start)."""
    with transaction(conn):
        _queue_exports(conn, charge_point_id, [(wall_time, record)])


def get_transaction(conn: sqlite3.Connection, transaction_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM transactions WHERE transaction_id = ?", (transaction_id,)).fetchone()
    return _tx(row) if row else None


def active_transactions(conn: sqlite3.Connection, charge_point_id: str) -> list[dict[str, Any]]:
    rows = conn.execute(
        "SELECT * FROM transactions WHERE charge_point_id = ? AND status = 'Active' ORDER BY start_time", (charge_point_id,)
    )
    return [_tx(row) for row in rows]


def transactions_for_id_tag(conn: sqlite3.Connection, id_tag: str, limit: int = 100) -> list[dict[str, Any]]:
    return list_transactions(conn, id_tag=id_tag, limit=limit)


def transactions_for_charger(conn: sqlite3.Connection, charge_point_id: str, limit: int = 100) -> list[dict[str, Any]]:
    return list_transactions(conn, charger=charge_point_id, limit=limit)


class PaymentReferenceConflictError(ValueError):
    """The session already carries another payment reference (and replacing it was not asked for)."""

    def __init__(self, transaction_id: int, current: str) -> None:
        super().__init__(f"transaction {transaction_id} already has payment reference {current!r}")
        self.current = current


def set_payment_reference(conn: sqlite3.Connection, transaction_id: int, payment_ref: str, *, replace: bool = False) -> str | None:
    """Attach a payment reference to a session; returns the reference now stored, None for an unknown session.

    Setting the reference it already has changes nothing (a client retrying is safe); a
    different one raises PaymentReferenceConflictError unless `replace`, so two payment flows
    cannot silently overwrite each other. Read and write are one SQLite transaction.
    """
    with transaction(conn):
        row = conn.execute("SELECT payment_ref FROM transactions WHERE transaction_id = ?", (transaction_id,)).fetchone()
        if row is None:
            return None
        current = row[0]
        if current is not None and current != payment_ref and not replace:
            raise PaymentReferenceConflictError(transaction_id, current)
        if current != payment_ref:
            conn.execute("UPDATE transactions SET payment_ref = ? WHERE transaction_id = ?", (payment_ref, transaction_id))
    return payment_ref


def attach_payment_reference(conn: sqlite3.Connection, transaction_id: int, payment_ref: str) -> bool:
    """Set a session's payment reference whatever it was (the operator's own correction)."""
    return set_payment_reference(conn, transaction_id, payment_ref, replace=True) is not None


def update_meter(
    conn: sqlite3.Connection, transaction_id: int, *, energy_wh: float | None, power_w: float | None, timestamp: float
) -> bool:
    """Update a session's live figures, unless a newer sample is already there (replays arrive late)."""
    with transaction(conn):
        cursor = conn.execute(
            "UPDATE transactions SET last_meter_wh = COALESCE(?, last_meter_wh), last_power_w = COALESCE(?, last_power_w),"
            " last_meter_time = ? WHERE transaction_id = ? AND (last_meter_time IS NULL OR last_meter_time <= ?)",
            (energy_wh, power_w, timestamp, transaction_id, timestamp),
        )
    return cursor.rowcount > 0


def _tx(row: sqlite3.Row) -> dict[str, Any]:
    data = dict(row)
    data["unknown_start"] = bool(data["unknown_start"])
    stop = data["meter_stop"] if data["meter_stop"] is not None else data["last_meter_wh"]
    data["energy_wh"] = None if stop is None else stop - data["meter_start"]
    return data


# --------------------------------------------------------------- meter values
def add_meter_values(
    conn: sqlite3.Connection,
    charge_point_id: str,
    connector_id: int,
    transaction_id: int | None,
    samples: list[dict[str, Any]],
    *,
    received: float,
    exports: list[tuple[float, dict[str, Any]]] = (),  # type: ignore[assignment]
) -> int:
    """Store sampled values (`timestamp`, `measurand`, `value`, optional phase/location/context/unit).

    Duplicates of an already stored sample (a charger re-sending after a lost reply)
    are ignored. Returns the number of new rows. `exports` are queued for upload in the
    same SQLite transaction.
    """
    inserted = 0
    with transaction(conn):
        for s in samples:
            cursor = conn.execute(
                "INSERT OR IGNORE INTO meter_values (charge_point_id, connector_id, transaction_id, timestamp, measurand,"
                " phase, location, context, unit, value, received) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    charge_point_id, connector_id, transaction_id, s["timestamp"], s.get("measurand") or "Energy.Active.Import.Register",
                    s.get("phase") or "", s.get("location") or "", s.get("context") or "", s.get("unit") or "", str(s["value"]), received,
                ),
            )
            inserted += cursor.rowcount
        if inserted and exports:
            _queue_exports(conn, charge_point_id, list(exports))
    return inserted


def meter_values(
    conn: sqlite3.Connection, *, transaction_id: int | None = None, charge_point_id: str | None = None, limit: int = 1000
) -> list[dict[str, Any]]:
    """Samples in the order they were taken (the charger's timestamps), oldest first."""
    clauses, params = [], []
    if transaction_id is not None:
        clauses.append("transaction_id = ?")
        params.append(transaction_id)
    if charge_point_id is not None:
        clauses.append("charge_point_id = ?")
        params.append(charge_point_id)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(f"SELECT * FROM meter_values {where} ORDER BY timestamp, id LIMIT ?", (*params, limit))
    return [dict(row) for row in rows]


# --------------------------------------------------------------- reservations
def create_reservation(
    conn: sqlite3.Connection,
    charge_point_id: str,
    *,
    connector_id: int,
    id_tag: str,
    expiry: float,
    now: float,
    parent_id_tag: str | None = None,
) -> int:
    """Record a reservation about to be requested with ReserveNow; returns its new id."""
    with transaction(conn):
        floor = conn.execute("SELECT COALESCE(MAX(reservation_id), 0) FROM reservations").fetchone()[0]
        reservation_id = _next(conn, "reservation_id", floor)
        conn.execute(
            "INSERT INTO reservations (reservation_id, charge_point_id, connector_id, id_tag, parent_id_tag, expiry, status, created)"
            " VALUES (?, ?, ?, ?, ?, ?, 'Requested', ?)",
            (reservation_id, charge_point_id, connector_id, id_tag, parent_id_tag, expiry, now),
        )
    return reservation_id


def set_reservation_status(conn: sqlite3.Connection, reservation_id: int, status: str) -> None:
    if status not in RESERVATION_STATUSES:
        raise ValueError(f"reservation status must be one of {RESERVATION_STATUSES}, not {status!r}")
    with transaction(conn):
        conn.execute("UPDATE reservations SET status = ? WHERE reservation_id = ?", (status, reservation_id))


def expire_reservations(conn: sqlite3.Connection, charge_point_id: str, now: float) -> list[int]:
    """Mark this charger's pending or accepted reservations past their expiry as `Expired`."""
    rows = conn.execute(
        "SELECT reservation_id FROM reservations WHERE charge_point_id = ? AND status IN ('Requested', 'Accepted') AND expiry < ?",
        (charge_point_id, now),
    ).fetchall()
    if rows:
        with transaction(conn):
            conn.executemany("UPDATE reservations SET status = 'Expired' WHERE reservation_id = ?", [(r[0],) for r in rows])
    return [r[0] for r in rows]


def get_reservation(conn: sqlite3.Connection, reservation_id: int) -> dict[str, Any] | None:
    row = conn.execute("SELECT * FROM reservations WHERE reservation_id = ?", (reservation_id,)).fetchone()
    return dict(row) if row else None


def reservations_for_charger(conn: sqlite3.Connection, charge_point_id: str) -> list[dict[str, Any]]:
    rows = conn.execute("SELECT * FROM reservations WHERE charge_point_id = ? ORDER BY reservation_id", (charge_point_id,))
    return [dict(row) for row in rows]


#: How a reservation reads to a driver, by its stored status. Requested and Accepted are
#: `active` until their expiry passes, then `expired` (the charger actor marks them Expired
#: on its next message, which may be long after: a reader must not wait for that).
RESERVATION_STATES = {"Requested": "active", "Accepted": "active", "Expired": "expired", "Cancelled": "cancelled", "Used": "used",
                      "Faulted": "refused", "Occupied": "refused", "Rejected": "refused", "Unavailable": "refused"}

_STATE_WHERE = {
    "active": "(status IN ('Requested', 'Accepted') AND expiry >= :now)",
    "expired": "(status = 'Expired' OR (status IN ('Requested', 'Accepted') AND expiry < :now))",
    "cancelled": "status = 'Cancelled'",
    "used": "status = 'Used'",
    "refused": "status IN ('Faulted', 'Occupied', 'Rejected', 'Unavailable')",
}


def reservation_state(reservation: dict[str, Any], now: float) -> str:
    """active, expired, cancelled, used or refused (ReserveNow answered Faulted/Occupied/Rejected/Unavailable)."""
    state = RESERVATION_STATES.get(reservation["status"], "refused")
    return "expired" if state == "active" and reservation["expiry"] < now else state


def list_reservations(conn: sqlite3.Connection, *, now: float, charger: str | None = None, state: str | None = None,
                      limit: int = 100) -> list[dict[str, Any]]:
    """Reservations, newest first, each with its `state` and the `transaction_id` that used it (if any)."""
    clauses, params = [], {"now": now, "limit": max(1, min(limit, 1000))}
    if charger is not None:
        clauses.append("charge_point_id = :charger")
        params["charger"] = charger
    if state is not None:
        clauses.append(_STATE_WHERE[state])
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(f"SELECT * FROM reservations {where} ORDER BY reservation_id DESC LIMIT :limit", params).fetchall()
    return [_reservation(conn, row, now) for row in rows]


def reservation_with_state(conn: sqlite3.Connection, reservation_id: int, *, now: float) -> dict[str, Any] | None:
    """One reservation with its `state` and `transaction_id`, or None."""
    row = conn.execute("SELECT * FROM reservations WHERE reservation_id = ?", (reservation_id,)).fetchone()
    return _reservation(conn, row, now) if row else None


def _reservation(conn: sqlite3.Connection, row: sqlite3.Row, now: float) -> dict[str, Any]:
    data = dict(row)
    data["state"] = reservation_state(data, now)
    used = conn.execute("SELECT min(transaction_id) FROM transactions WHERE reservation_id = ? AND charge_point_id = ?",
                        (data["reservation_id"], data["charge_point_id"])).fetchone()
    data["transaction_id"] = used[0] if used else None
    return data


# -------------------------------------------------------------- export queue
def _finite_or_none(value: Any, where: str, found: list[str]) -> Any:
    """`value` with every non-finite float replaced by None; the places are added to `found`."""
    if isinstance(value, float) and not math.isfinite(value):
        found.append(where)
        return None
    if isinstance(value, dict):
        return {k: _finite_or_none(v, k if where in ("", "values") else f"{where}.{k}", found) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_finite_or_none(v, where, found) for v in value]
    return value


def _record_json(record: dict[str, Any]) -> str:
    """Strict JSON for a queued record: a non-finite number becomes null and is flagged."""
    try:
        return json.dumps(record, sort_keys=True, allow_nan=False)
    except ValueError:
        found: list[str] = []
        clean = _finite_or_none(record, "", found)
        if isinstance(clean, dict):
            clean["flags"] = sorted({*clean.get("flags", ()), *found})
        return json.dumps(clean, sort_keys=True, allow_nan=False)


def _queue_exports(conn: sqlite3.Connection, charge_point_id: str, records: list[tuple[float, dict[str, Any]]]) -> None:
    """Queue rows stored together as one group (one batch towards the harvest actor); call inside a transaction."""
    ids = []
    for wall_time, record in records:
        cursor = conn.execute(
            "INSERT INTO ocpp_export (charge_point_id, wall_time, values_json, mono_time, boot_id) VALUES (?, ?, ?, ?, ?)",
            (charge_point_id, wall_time, _record_json(record), export_clock(wall_time), BOOT_ID),
        )
        ids.append(cursor.lastrowid)
    if not ids:
        return
    conn.execute("UPDATE ocpp_export SET batch_id = ? WHERE id BETWEEN ? AND ?", (ids[-1], ids[0], ids[-1]))
    count = conn.execute("SELECT COUNT(*) FROM ocpp_export WHERE charge_point_id = ?", (charge_point_id,)).fetchone()[0]
    if count > EXPORT_QUEUE_LIMIT:
        dropped = count - EXPORT_QUEUE_LIMIT
        conn.execute(
            "DELETE FROM ocpp_export WHERE id IN (SELECT id FROM ocpp_export WHERE charge_point_id = ? ORDER BY id LIMIT ?)",
            (charge_point_id, dropped),
        )
        conn.execute(
            "INSERT INTO ocpp_counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
            (f"export_dropped:{charge_point_id}", dropped),
        )


def _export_row(r: sqlite3.Row) -> dict[str, Any]:
    return {
        "id": r["id"], "batch_id": r["batch_id"], "wall_time": r["wall_time"], "mono_time": r["mono_time"],
        "boot_id": r["boot_id"], "record": json.loads(r["values_json"]),
    }


def pending_exports(conn: sqlite3.Connection, charge_point_id: str, limit: int = 100) -> list[dict[str, Any]]:
    """The oldest queued rows for one charger: `id`, `batch_id`, `wall_time`, `mono_time`, `boot_id`, `record`."""
    rows = conn.execute(
        "SELECT id, batch_id, wall_time, mono_time, boot_id, values_json FROM ocpp_export WHERE charge_point_id = ? ORDER BY id LIMIT ?",
        (charge_point_id, limit),
    )
    return [_export_row(r) for r in rows]


def next_export_batch(conn: sqlite3.Connection, charge_point_id: str) -> list[dict[str, Any]]:
    """The oldest group of queued rows for one charger (as `pending_exports` shows them), or [].

    A group is what one stored message queued, fixed at that moment, so whoever sends it
    (a re-send, a restarted actor) sends exactly the same rows under the same batch id.
    """
    rows = conn.execute(
        "SELECT id, batch_id, wall_time, mono_time, boot_id, values_json FROM ocpp_export"
        " WHERE charge_point_id = ? AND batch_id = (SELECT MIN(batch_id) FROM ocpp_export WHERE charge_point_id = ?) ORDER BY id",
        (charge_point_id, charge_point_id),
    )
    return [_export_row(r) for r in rows]


def has_pending_exports(conn: sqlite3.Connection, charge_point_id: str) -> bool:
    """Whether any row waits in the charger's export queue (one indexed lookup)."""
    return conn.execute("SELECT 1 FROM ocpp_export WHERE charge_point_id = ? LIMIT 1", (charge_point_id,)).fetchone() is not None


def ack_exports(conn: sqlite3.Connection, charge_point_id: str, up_to_id: int) -> int:
    """Delete rows the harvest actor has committed (all ids up to and including `up_to_id`)."""
    with transaction(conn):
        cursor = conn.execute("DELETE FROM ocpp_export WHERE charge_point_id = ? AND id <= ?", (charge_point_id, up_to_id))
    return cursor.rowcount


def reject_exports(conn: sqlite3.Connection, charge_point_id: str, batch_id: int, reason: str) -> dict[str, Any] | None:
    """The harvest actor refused group `batch_id`: replace its rows by one gap row in their place.

    The gap (`start`, `end` wall times, `missed` rows, `reason`) keeps the group's batch
    id, free again because the harvest actor stored nothing of the refused batch, and its
    place in the queue, so it goes next. A refused group that is itself a gap cannot be
    sent in any other form: it is dropped and counted in `exports_dropped`. Returns the
    gap queued, or None.
    """
    with transaction(conn):
        rows = conn.execute(
            "SELECT id, batch_id, wall_time, mono_time, boot_id, values_json FROM ocpp_export WHERE charge_point_id = ? AND batch_id = ? ORDER BY id",
            (charge_point_id, batch_id),
        ).fetchall()
        if not rows:
            return None
        records = [json.loads(r["values_json"]) for r in rows]
        conn.execute("DELETE FROM ocpp_export WHERE charge_point_id = ? AND batch_id = ?", (charge_point_id, batch_id))
        readings = [(r, rec) for r, rec in zip(rows, records, strict=True) if "gap" not in rec]
        if not readings:
            conn.execute(
                "INSERT INTO ocpp_counters (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = value + excluded.value",
                (f"export_dropped:{charge_point_id}", sum(rec["gap"].get("missed", 0) for rec in records)),
            )
            return None
        walls = [r["wall_time"] for r, _ in readings]
        gap = {"start": min(walls), "end": max(walls), "reason": reason, "missed": len(readings)}
        conn.execute(
            "INSERT INTO ocpp_export (id, charge_point_id, wall_time, values_json, batch_id, mono_time, boot_id) VALUES (?, ?, ?, ?, ?, ?, ?)",
            (batch_id, charge_point_id, gap["start"], _record_json({"gap": gap}), batch_id, export_clock(gap["start"]), BOOT_ID),
        )
    return gap


def exports_dropped(conn: sqlite3.Connection, charge_point_id: str) -> int:
    row = conn.execute("SELECT value FROM ocpp_counters WHERE name = ?", (f"export_dropped:{charge_point_id}",)).fetchone()
    return row[0] if row else 0


# ------------------------------------------------------- read-only for the API
def list_transactions(
    conn: sqlite3.Connection,
    *,
    charger: str | None = None,
    id_tag: str | None = None,
    since: float | None = None,
    limit: int = 100,
) -> list[dict[str, Any]]:
    """Sessions, newest first, filtered by charger, idTag and start time (epoch seconds)."""
    clauses, params = [], []
    if charger is not None:
        clauses.append("charge_point_id = ?")
        params.append(charger)
    if id_tag is not None:
        clauses.append("id_tag = ?")
        params.append(id_tag)
    if since is not None:
        clauses.append("start_time >= ?")
        params.append(since)
    where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
    rows = conn.execute(f"SELECT * FROM transactions {where} ORDER BY start_time DESC, transaction_id DESC LIMIT ?", (*params, max(1, min(limit, 1000))))
    return [_tx(row) for row in rows]


def transaction_with_meter_values(conn: sqlite3.Connection, transaction_id: int) -> dict[str, Any] | None:
    """One session with its samples in timestamp order, and its latest samples of each measurand (`latest_samples`)."""
    tx = get_transaction(conn, transaction_id)
    if tx is not None:
        tx["meter_values"] = meter_values(conn, transaction_id=transaction_id)
        tx["latest_samples"] = latest_samples(conn, transaction_id)
    return tx


def latest_samples(conn: sqlite3.Connection, transaction_id: int) -> list[dict[str, Any]]:
    """Each measurand's samples (every phase) at the latest timestamp it was sampled in this session.

    A long session has more samples than a read returns; its current state of charge and
    current are in the newest ones.
    """
    rows = conn.execute(
        "SELECT m.* FROM meter_values m JOIN (SELECT measurand, max(timestamp) AS latest FROM meter_values WHERE transaction_id = ? GROUP BY measurand) l"
        " ON m.measurand = l.measurand AND m.timestamp = l.latest WHERE m.transaction_id = ? ORDER BY m.measurand, m.phase",
        (transaction_id, transaction_id),
    )
    return [dict(row) for row in rows]
