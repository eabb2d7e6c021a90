"""Views of the gateway's SQLite stores, shaped as the API documents them.

The API never holds a connection open, and writes only what is the operator's own
record (a connector's maintenance override, a session's payment reference), each in
one short SQLite transaction (`writable`). Reads open the database read-only
(`mode=ro`, WAL lets it read while the harvest and charger actors write), read, and close. A database or table that does
not exist yet (a gateway that never saw a charger) reads as empty, not as an error.
The store modules own their queries (`storage.outbox.outbox_status`,
`storage.chargers.list_chargers_with_connectors`, `storage.ocpp_transactions.list_transactions`);
this module only renames fields into the API's vocabulary and converts epoch seconds
to RFC 3339.

These functions block (SQLite I/O); the API actor runs them in a small thread pool so
the event loop keeps serving.

Why one module: each view is a short read of one table shaped as the API documents it, and
they share the read-only connection handling and the missing-table rule; a module per view
would repeat both.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from actors.api.backend import NotFoundError
from supervisor.redaction import redact

from storage.db import DB_FILE, database_path  # noqa: F401 - the API's names for them


def iso(epoch: float | None) -> str | None:
    """Epoch seconds as RFC 3339 UTC with milliseconds, None stays None."""
    if epoch is None:
        return None
    try:
        return datetime.fromtimestamp(float(epoch), UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (OverflowError, OSError, ValueError):
        return None


@contextmanager
def read_only(path: Path) -> Iterator[sqlite3.Connection | None]:
    """A read-only connection, or None when the database does not exist yet."""
    if not path.exists():
        yield None
        return
    from storage.db import connect

    conn = connect(path, readonly=True)
    try:
        yield conn
    finally:
        conn.close()


def _missing_table(exc: sqlite3.OperationalError) -> bool:
    return "no such table" in str(exc)


# ------------------------------------------------------------------ outbox
def outbox_view(path: Path, uploads: list[Mapping[str, Any]]) -> dict[str, Any]:
    """Outbox counts, budget and per-transport state; `available` false before the first write."""
    configured = {str(u.get("name")): u for u in uploads if u.get("name")}
    status: dict[str, Any] | None = None
    if path.exists():
        from storage.outbox import outbox_status

        try:
            status = outbox_status(path)
        except sqlite3.OperationalError as exc:
            if not _missing_table(exc):
                raise
    if status is None:
        return {
            "available": False, "pending_items": None, "acknowledged_items": None, "bytes": None, "oldest_pending": None,
            "gaps": None, "budget_bytes": None, "budget_used": None,
            "transports": [_transport_view(name, None, configured[name]) for name in sorted(configured)],
        }
    kinds = status.get("items_by_kind") or {}
    stored = status.get("transports") or {}
    names = sorted(set(configured) | set(stored))
    return {
        "available": True,
        "pending_items": int(status.get("items") or 0),
        "acknowledged_items": int(status.get("items_acked") or 0),
        "bytes": int(status.get("bytes") or 0),
        "oldest_pending": iso(status.get("oldest_wall")),
        "gaps": int(kinds.get("gap", 0)),
        "budget_bytes": status.get("effective_budget_bytes") or status.get("budget_bytes"),
        "budget_used": status.get("budget_use"),
        "downsampled_rows": status.get("downsampled_rows"),
        "dropped_readings": status.get("dropped_readings"),
        "clock_events": status.get("clock_events"),
        "dead_letters": status.get("dead_letters"),
        "dead_letter_bytes": status.get("dead_letter_bytes"),
        "disk_full": status.get("disk_full"),
        "transports": [_transport_view(name, stored.get(name), configured.get(name, {})) for name in names],
    }


def dead_letters_view(path: Path) -> list[dict[str, Any]]:
    """Parked batches (permanently refused by a receiver), oldest first; empty before the first write."""
    if not path.exists():
        return []
    from storage.outbox import dead_letter_list

    try:
        letters = dead_letter_list(path)
    except sqlite3.OperationalError as exc:
        if not _missing_table(exc):
            raise
        return []
    return [
        {"id": d["id"], "transport": d["transport"], "parked_at": iso(d["created"]), "http_status": d["http_status"], "error": d["error"],
         "items": d["items"], "bytes": d["nbytes"], "queued_to_resend": d["requeued"]}
        for d in letters
    ]


def _transport_view(name: str, stored: Mapping[str, Any] | None, configured: Mapping[str, Any]) -> dict[str, Any]:
    stored = stored or {}
    failures = stored.get("failures")
    state = None if not stored else ("backoff" if failures else "ok")
    if stored.get("dead_letters"):
        state = "dead_letters"
    return {
        "name": name,
        "url": redact(configured.get("url")),  # credentials in a URL stay on the gateway
        "enabled": configured.get("enabled", True) if configured else None,
        "state": state,
        "pending": stored.get("pending"),
        "last_success": iso(stored.get("last_success")),
        "last_attempt": iso(stored.get("last_attempt")),
        "last_error": stored.get("last_error"),
        "backoff_s": stored.get("backoff_s"),
        "next_attempt": iso(stored.get("retry_at")),
        "acked_seq": stored.get("acked_seq"),
        "dead_letters": stored.get("dead_letters"),
        "last_dead_letter_error": stored.get("last_dead_letter_error"),
        "uploaded_readings": stored.get("acked_items"),
        "uploaded_batches": stored.get("acked_batches"),
        "upload_errors": failures,
    }


# ---------------------------------------------------------------- chargers
def charger_views(path: Path) -> list[dict[str, Any]]:
    from storage.chargers import list_chargers_with_connectors

    with read_only(path) as conn:
        if conn is None:
            return []
        try:
            rows = list_chargers_with_connectors(conn)
            active = _active_by_connector(conn)
        except sqlite3.OperationalError as exc:
            if _missing_table(exc):
                return []
            raise
    return [_charger_view(row, active) for row in rows]


def charger_view(path: Path, charger_id: str) -> dict[str, Any]:
    for charger in charger_views(path):
        if charger["id"] == charger_id:
            return charger
    raise NotFoundError(f"no charger {charger_id!r}", field="path.id")


def _active_by_connector(conn: sqlite3.Connection) -> dict[tuple[str, int], int]:
    try:
        rows = conn.execute("SELECT charge_point_id, connector_id, max(transaction_id) FROM transactions WHERE status = 'Active' GROUP BY 1, 2").fetchall()
    except sqlite3.OperationalError as exc:
        if _missing_table(exc):
            return {}
        raise
    return {(row[0], row[1]): row[2] for row in rows}


def _charger_view(row: Mapping[str, Any], active: Mapping[tuple[str, int], int]) -> dict[str, Any]:
    charger_id = row["charge_point_id"]
    return {
        "id": charger_id,
        "vendor": row.get("vendor"),
        "model": row.get("model"),
        "serial": row.get("serial_number"),
        "firmware": row.get("firmware_version"),
        "connected": bool(row.get("connected")),
        "registration": row.get("registration_status"),
        "status": row.get("status"),
        "last_seen": iso(row.get("last_seen")),
        "last_boot": iso(row.get("last_boot")),
        "connectors": [
            {
                "id": c["connector_id"],
                "status": (c.get("override") or c)["status"],
                "reported_status": c["status"],
                "override": _override_view(c.get("override")),
                "error_code": c.get("error_code"),
                "info": c.get("info"),
                "vendor_error_code": c.get("vendor_error_code"),
                "transaction_id": active.get((charger_id, c["connector_id"])),
                "updated_at": iso(c.get("timestamp")),
            }
            for c in row.get("connectors", [])
        ],
    }


def _override_view(override: Mapping[str, Any] | None) -> dict[str, Any] | None:
    if override is None:
        return None
    return {"status": override["status"], "reason": override.get("reason"), "since": iso(override.get("created"))}


def set_connector_override(path: Path, charger_id: str, connector_id: int, status: str, reason: str | None, now: float) -> None:
    """Store an operator's override (the API's own record: the charger store keeps it beside the charger's report)."""
    from storage import chargers as charger_store

    with writable(path, charger_store.init) as conn:
        if charger_store.set_connector_override(conn, charger_id, connector_id, status, reason=reason, now=now) is None:
            _no_connector(conn, charger_id, connector_id)


def clear_connector_override(path: Path, charger_id: str, connector_id: int) -> dict[str, Any] | None:
    """Lift an override; the one lifted (as the API shows it), None when there was none."""
    from storage import chargers as charger_store

    with writable(path, charger_store.init) as conn:
        current = charger_store.connector_overrides(conn, charger_id).get((charger_id, connector_id))
        if current is None:
            _no_connector(conn, charger_id, connector_id)  # raises for an unknown one; a known one simply has no override
            return None
        charger_store.clear_connector_override(conn, charger_id, connector_id)
    return _override_view(current)


def _no_connector(conn: sqlite3.Connection, charger_id: str, connector_id: int) -> None:
    """NotFoundError naming what is unknown: the charger, or the connector (never reported by it)."""
    from storage import chargers as charger_store

    if charger_store.get_charger(conn, charger_id) is None:
        raise NotFoundError(f"no charger {charger_id!r}", field="path.id")
    if not any(c["connector_id"] == connector_id for c in charger_store.list_connectors(conn, charger_id)):
        raise NotFoundError(f"charger {charger_id} never reported connector {connector_id}", field="path.connectorId")


@contextmanager
def writable(path: Path, init: Any) -> Iterator[sqlite3.Connection]:
    """A writable connection with `init`'s tables in place, closed afterwards.

    The OCPP listener migrates the charger and transaction stores at start; should the API
    get here first, it migrates, and a listener racing it (the other process applied the
    step first) makes the second attempt a no-op.
    """
    from storage.db import connect

    conn = connect(path)
    try:
        try:
            init(conn)
        except sqlite3.OperationalError:
            init(conn)
        yield conn
    finally:
        conn.close()


# ------------------------------------------------------------ transactions
def _read(path: Path, fn: Any, *args: Any, empty: Any = None, **kwargs: Any) -> Any:
    """`fn(conn, *args, **kwargs)` on a read-only connection; `empty` while the database or its table does not exist yet."""
    with read_only(path) as conn:
        if conn is None:
            return empty
        try:
            return fn(conn, *args, **kwargs)
        except sqlite3.OperationalError as exc:
            if _missing_table(exc):
                return empty
            raise


def transaction_views(path: Path, *, charger: str | None, id_tag: str | None, since: float | None, limit: int) -> list[dict[str, Any]]:
    from storage.ocpp_transactions import list_transactions

    rows = _read(path, list_transactions, charger=charger, id_tag=id_tag, since=since, limit=limit, empty=[])
    return [_transaction_view(row) for row in rows]


def transaction_view(path: Path, transaction_id: int) -> dict[str, Any]:
    """One session with its meter samples (at most 1000, oldest first, by the charger's timestamps)."""
    from storage.ocpp_transactions import transaction_with_meter_values

    row = _read(path, transaction_with_meter_values, transaction_id)
    if row is None:
        raise NotFoundError(f"no transaction {transaction_id}", field="path.id")
    view = _transaction_view(row)
    from actors.ocpp.handlers import soc_and_current

    latest: dict[str, Any] = {}
    for _, figures in sorted(soc_and_current(row.get("latest_samples", [])).items()):
        latest.update(figures)
    view["soc_percent"] = latest.get("soc_percent")
    view["current_a"] = latest.get("current_a")
    view["meter_values"] = [
        {"timestamp": iso(m["timestamp"]), "measurand": m["measurand"], "value": m["value"], "unit": m.get("unit") or None,
         "phase": m.get("phase") or None, "context": m.get("context") or None, "connector": m.get("connector_id")}
        for m in row.get("meter_values", [])
    ]
    return view


def _transaction_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["transaction_id"],
        "charger": row["charge_point_id"],
        "connector": row.get("connector_id"),
        "id_tag": row.get("id_tag"),
        "start": iso(row.get("start_time")),
        "stop": iso(row.get("stop_time")),
        "meter_start_wh": row.get("meter_start"),
        "meter_stop_wh": row.get("meter_stop"),
        "energy_wh": row.get("energy_wh"),
        "power_w": row.get("last_power_w"),
        "stop_reason": row.get("stop_reason"),
        "state": row.get("status"),
        "reservation_id": row.get("reservation_id"),
        "payment_ref": row.get("payment_ref"),
    }


def set_payment_reference(path: Path, transaction_id: int, reference: str, replace: bool) -> dict[str, Any]:
    """Store a session's payment reference (storage.ocpp_transactions.set_payment_reference's rule); the session as GET shows it."""
    from actors.api.backend import ConflictError
    from storage import ocpp_transactions as tx_store

    if not path.exists():
        raise NotFoundError(f"no transaction {transaction_id}", field="path.id")
    with writable(path, tx_store.init) as conn:
        try:
            stored = tx_store.set_payment_reference(conn, transaction_id, reference, replace=replace)
        except tx_store.PaymentReferenceConflictError as exc:
            raise ConflictError(f"{exc}; send \"replace\": true to replace it", field="reference", code="payment_reference_conflict",
                                details={"payment_ref": exc.current}) from None
    if stored is None:
        raise NotFoundError(f"no transaction {transaction_id}", field="path.id")
    return transaction_view(path, transaction_id)


# ------------------------------------------------------------ reservations
def reservation_views(path: Path, *, charger: str | None, status: str | None, limit: int, now: float) -> list[dict[str, Any]]:
    from storage.ocpp_transactions import list_reservations

    rows = _read(path, list_reservations, now=now, charger=charger, state=status, limit=limit, empty=[])
    return [_reservation_view(row) for row in rows]


def reservation_view(path: Path, reservation_id: int, now: float) -> dict[str, Any]:
    from storage.ocpp_transactions import reservation_with_state

    row = _read(path, reservation_with_state, reservation_id, now=now)
    if row is None:
        raise NotFoundError(f"no reservation {reservation_id}", field="path.id")
    return _reservation_view(row)


def _reservation_view(row: Mapping[str, Any]) -> dict[str, Any]:
    return {
        "id": row["reservation_id"], "charger": row["charge_point_id"], "connector": row["connector_id"], "id_tag": row["id_tag"],
        "parent_id_tag": row.get("parent_id_tag"), "expiry": iso(row["expiry"]), "created": iso(row.get("created")),
        "status": row["state"], "ocpp_status": row["status"], "transaction_id": row.get("transaction_id"),
    }


# ---------------------------------------------------------------- identity
def identity_view(data_dir: Path, gateway_name: str | None = None) -> dict[str, Any]:
    """The gateway's public identity from its public key file; never creates or reads the private key."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    from storage.identity import PUBLIC_KEY_FILE, serial_from_public_key

    path = data_dir / PUBLIC_KEY_FILE
    try:
        pem = path.read_bytes()
        public_key = serialization.load_pem_public_key(pem)
    except (FileNotFoundError, ValueError):
        return {"available": False, "serial": None, "public_key": None, "key_id": None, "algorithm": None, "device_name": gateway_name}
    if not isinstance(public_key, ec.EllipticCurvePublicKey):
        return {"available": False, "serial": None, "public_key": None, "key_id": None, "algorithm": None, "device_name": gateway_name}
    serial = serial_from_public_key(public_key)
    point = public_key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)
    return {
        "available": True,
        "serial": serial,
        "public_key": pem.decode(),
        "key_id": serial,
        "algorithm": "ES256",
        "public_key_hex": point.hex(),
        "device_name": gateway_name,
    }
