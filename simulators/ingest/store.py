"""The ingest receiver's own SQLite: registered gateways, accepted batches, de-duplicated items.

Exactly-once lives here: an item's identity is (gateway, stream, seq) and a second
copy is ignored. Each stream's acknowledgement is the highest seq up to which every
sequence number is covered (an aggregate or a budget gap covers seq..seq_last), so a
gateway releases rows only when nothing before them is missing. A stream seen for
the first time starts at the lowest seq of that batch (earlier rows may have been
released to this gateway's other endpoints); batch continuity is checked by the
hash chain instead.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.harvest.signing import JwsError, batch_hash, jws_key_id, parse_payload, verify_jws_payload
from storage.db import connect, migrate, transaction
from storage.identity import serial_from_public_key

COMPONENT = "ingest"
MIGRATIONS = [
    """
    CREATE TABLE ingest_gateways (
        kid TEXT PRIMARY KEY,
        public_key TEXT NOT NULL,
        gateway_id TEXT,
        chain_breaks INTEGER NOT NULL DEFAULT 0,
        duplicates INTEGER NOT NULL DEFAULT 0,
        replayed_batches INTEGER NOT NULL DEFAULT 0
    );
    CREATE TABLE ingest_batches (
        hash TEXT PRIMARY KEY,
        kid TEXT NOT NULL,
        prev TEXT,
        received REAL NOT NULL,
        items INTEGER NOT NULL,
        new_items INTEGER NOT NULL,
        chain_ok INTEGER NOT NULL
    );
    CREATE TABLE ingest_items (
        gateway TEXT NOT NULL,
        stream TEXT NOT NULL,
        seq INTEGER NOT NULL,
        seq_last INTEGER NOT NULL,
        kind TEXT NOT NULL,
        wall_time REAL NOT NULL,
        body TEXT NOT NULL,
        batch TEXT NOT NULL,
        PRIMARY KEY (gateway, stream, seq)
    );
    CREATE INDEX ingest_items_last ON ingest_items (gateway, stream, seq_last);
    CREATE TABLE ingest_progress (
        gateway TEXT NOT NULL,
        stream TEXT NOT NULL,
        contiguous INTEGER NOT NULL,
        PRIMARY KEY (gateway, stream)
    );
    """,
]


class BatchRejectedError(Exception):
    """A batch refused for good: `status` is the HTTP status to answer with."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass
class IngestResult:
    batch: str
    acked: dict[str, int]
    stored: int
    duplicates: int
    chain_ok: bool
    replayed_batch: bool = False
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "acked": self.acked,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "chain_ok": self.chain_ok,
            "replayed_batch": self.replayed_batch,
        }


class IngestStore:
    def __init__(self, path: str | Path) -> None:
        self.conn = connect(path)
        migrate(self.conn, COMPONENT, MIGRATIONS)

    def close(self) -> None:
        self.conn.close()

    def register(self, public_key_pem: bytes) -> str:
        """Register a gateway by its public key; return its key id (the gateway serial)."""
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import ec

        key = serialization.load_pem_public_key(public_key_pem)
        if not isinstance(key, ec.EllipticCurvePublicKey) or not isinstance(key.curve, ec.SECP256R1):
            raise ValueError("gateway keys must be P-256 public keys")
        kid = serial_from_public_key(key)
        with transaction(self.conn):
            self.conn.execute(
                "INSERT INTO ingest_gateways (kid, public_key) VALUES (?, ?) ON CONFLICT(kid) DO NOTHING",
                (kid, public_key_pem.decode("ascii")),
            )
        return kid

    def ingest(self, jws: str, now: float | None = None) -> IngestResult:
        """Verify, chain-check, de-duplicate and store one batch in one transaction."""
        now = time.time() if now is None else now
        try:
            kid = jws_key_id(jws)
        except JwsError as exc:
            raise BatchRejectedError(400, str(exc)) from None
        row = self.conn.execute("SELECT public_key, gateway_id FROM ingest_gateways WHERE kid = ?", (kid,)).fetchone()
        if row is None:
            raise BatchRejectedError(401, f"unknown gateway key id {kid!r}: register its public key first")
        try:
            raw = verify_jws_payload(jws, row["public_key"].encode("ascii"))
            payload = parse_payload(raw)
        except JwsError as exc:
            raise BatchRejectedError(401 if "verify" in str(exc) else 400, str(exc)) from None
        items = _validate(payload, kid)
        gateway = payload["gateway"]
        if row["gateway_id"] not in (None, gateway):
            raise BatchRejectedError(409, f"key {kid} belongs to gateway {row['gateway_id']!r}, batch claims {gateway!r}")
        digest = batch_hash(jws)
        with transaction(self.conn):
            if row["gateway_id"] is None:
                self.conn.execute("UPDATE ingest_gateways SET gateway_id = ? WHERE kid = ?", (gateway, kid))
            seen = self.conn.execute("SELECT chain_ok FROM ingest_batches WHERE hash = ?", (digest,)).fetchone()
            prev = payload.get("prev")
            if seen is not None:
                chain_ok = bool(seen[0])
            else:
                chain_ok = prev is None or self.conn.execute(
                    "SELECT 1 FROM ingest_batches WHERE hash = ? AND kid = ?", (prev, kid)
                ).fetchone() is not None
                if not chain_ok:
                    self.conn.execute("UPDATE ingest_gateways SET chain_breaks = chain_breaks + 1 WHERE kid = ?", (kid,))
            before = self.conn.total_changes
            # SQLite walks the (already validated) payload itself: no per-item re-encoding in Python
            self.conn.execute(
                "INSERT OR IGNORE INTO ingest_items (gateway, stream, seq, seq_last, kind, wall_time, body, batch)"
                " SELECT ?, json_extract(value, '$.s'), json_extract(value, '$.q'), json_extract(value, '$.ql'),"
                " json_extract(value, '$.k'), json_extract(value, '$.w'), json_extract(value, '$.x'), ?"
                " FROM json_each(?, '$.items') ORDER BY key",
                (gateway, digest, raw.decode("utf-8")),
            )
            stored = self.conn.total_changes - before
            self.conn.execute(
                "UPDATE ingest_gateways SET duplicates = duplicates + ?, replayed_batches = replayed_batches + ? WHERE kid = ?",
                (len(items) - stored, int(seen is not None), kid),
            )
            if seen is None:
                self.conn.execute(
                    "INSERT INTO ingest_batches (hash, kid, prev, received, items, new_items, chain_ok) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (digest, kid, prev, now, len(items), stored, int(chain_ok)),
                )
            acked = {}
            lowest: dict[str, int] = {}
            for it in items:
                lowest[it["s"]] = min(lowest.get(it["s"], it["q"]), it["q"])
            for stream, low in lowest.items():
                acked[stream] = self._advance(gateway, stream, low)
        return IngestResult(digest, acked, stored, len(items) - stored, chain_ok, replayed_batch=seen is not None)

    def _advance(self, gateway: str, stream: str, lowest_in_batch: int) -> int:
        row = self.conn.execute("SELECT contiguous FROM ingest_progress WHERE gateway = ? AND stream = ?", (gateway, stream)).fetchone()
        contiguous = row[0] if row else lowest_in_batch - 1
        start = contiguous
        for seq, seq_last in self.conn.execute(
            "SELECT seq, seq_last FROM ingest_items WHERE gateway = ? AND stream = ? AND seq_last > ? ORDER BY seq",
            (gateway, stream, contiguous),
        ):
            if seq > contiguous + 1:
                break
            contiguous = max(contiguous, seq_last)
        if row is None or contiguous != start:
            self.conn.execute(
                "INSERT INTO ingest_progress (gateway, stream, contiguous) VALUES (?, ?, ?)"
                " ON CONFLICT(gateway, stream) DO UPDATE SET contiguous = excluded.contiguous",
                (gateway, stream, contiguous),
            )
        return contiguous

    # ------------------------------------------------------------ queries
    def items(self, gateway: str | None = None, stream: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT gateway, stream, seq, seq_last, kind, wall_time, body FROM ingest_items"
        clauses, args = [], []
        if gateway is not None:
            clauses.append("gateway = ?")
            args.append(gateway)
        if stream is not None:
            clauses.append("stream = ?")
            args.append(stream)
        if clauses:
            sql += " WHERE " + " AND ".join(clauses)
        sql += " ORDER BY gateway, stream, seq"
        return [dict(r) | {"body": json.loads(r["body"])} for r in self.conn.execute(sql, args)]

    def summary(self) -> dict[str, Any]:
        progress = {f"{r['gateway']}/{r['stream']}": r["contiguous"] for r in self.conn.execute("SELECT * FROM ingest_progress")}
        return {
            "gateways": [dict(r) | {"public_key": None} for r in self.conn.execute("SELECT kid, gateway_id, chain_breaks, duplicates FROM ingest_gateways")],
            "batches": self.conn.execute("SELECT count(*) FROM ingest_batches").fetchone()[0],
            "items": self.conn.execute("SELECT count(*) FROM ingest_items").fetchone()[0],
            "duplicates_ignored": self.conn.execute("SELECT coalesce(sum(duplicates), 0) FROM ingest_gateways").fetchone()[0],
            "replayed_batches": self.conn.execute("SELECT coalesce(sum(replayed_batches), 0) FROM ingest_gateways").fetchone()[0],
            "chain_breaks": self.conn.execute("SELECT coalesce(sum(chain_breaks), 0) FROM ingest_gateways").fetchone()[0],
            "acked": progress,
        }


_KINDS = {"reading", "aggregate", "gap", "event", "clock"}


def _validate(payload: dict, kid: str) -> list[dict]:
    """Check the payload's shape; a precise reason names the first offending field."""
    if payload.get("v") != 1:
        raise BatchRejectedError(400, f"unsupported payload version {payload.get('v')!r}")
    if payload.get("kid") != kid:
        raise BatchRejectedError(400, "payload kid does not match the JWS header kid")
    if not isinstance(payload.get("gateway"), str) or not payload["gateway"]:
        raise BatchRejectedError(400, "payload.gateway must be a non-empty string")
    prev = payload.get("prev")
    if prev is not None and not (isinstance(prev, str) and len(prev) == 64):
        raise BatchRejectedError(400, "payload.prev must be null or a 64-hex-digit hash")
    items = payload.get("items")
    if not isinstance(items, list) or not items:
        raise BatchRejectedError(400, "payload.items must be a non-empty list")
    for index, it in enumerate(items):
        where = f"payload.items[{index}]"
        if not isinstance(it, dict):
            raise BatchRejectedError(400, f"{where} must be an object")
        if not isinstance(it.get("s"), str) or not it["s"]:
            raise BatchRejectedError(400, f"{where}.s (stream) must be a non-empty string")
        q, ql = it.get("q"), it.get("ql")
        if not isinstance(q, int) or not isinstance(ql, int) or isinstance(q, bool) or q < 1 or ql < q:
            raise BatchRejectedError(400, f"{where}: seq must be integers with 1 <= q <= ql")
        if it.get("k") not in _KINDS:
            raise BatchRejectedError(400, f"{where}.k must be one of {sorted(_KINDS)}")
        if not isinstance(it.get("w"), int | float):
            raise BatchRejectedError(400, f"{where}.w (wall time) must be a number")
        if not isinstance(it.get("x"), dict):
            raise BatchRejectedError(400, f"{where}.x must be an object")
    return items
