"""Storing one batch in PostgreSQL: one transaction, every item once, then the acknowledgement.

`FleetStore.ingest()` verifies the batch (fleet.verify), then in one transaction:

1. looks up the batch itself (a replay?) and its `prev` (is the chain unbroken?);
2. creates and locks the progress rows of the batch's streams, in stream order (two
   workers handling the same gateway's batches never deadlock, and one waits for the other);
3. refuses the batch as out of order when its `prev` is unknown and it would leave a hole
   in a stream the receiver already follows: an earlier batch has not arrived yet (a
   re-ordered delivery). Nothing is stored; the gateway sends it again later, after the
   one before it. An unknown `prev` without a hole (a gateway whose earlier batches went
   to another receiver, or a fresh database) is accepted and counted as a chain break;
4. inserts every item with `ON CONFLICT (gateway, stream, seq) DO NOTHING`, PostgreSQL
   walking the verified payload itself (no per-item round trip, no re-encoding);
5. advances each stream's `contiguous` seq (the acknowledgement) and the gateway's counters;
6. commits. Only the caller's acknowledgement, sent after this returns, releases rows on
   the gateway; a worker killed before it leaves nothing behind (the transaction rolls
   back) or a committed batch that the gateway's re-send finds as duplicates.

Refusals are recorded per gateway (count and last reason) in their own small transaction,
so `/v1/status` shows why a gateway is stuck.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from fleet.schema import migrate
from fleet.verify import Batch, KeyRing, BatchRefusedError, check_payload, check_signature, load_public_key, open_envelope
from storage.identity import serial_from_public_key

UNKNOWN_KEY_RECHECK_S = 2.0  # an unknown kid is looked up again at most this often (floods cost no queries)
MAX_UNKNOWN_REMEMBERED = 10_000
RETRIES = 3  # deadlocks / serialization failures: the transaction is tried again


async def _reset(conn: asyncpg.Connection) -> None:
    """Reset a connection back in the pool only when something was left open.

    asyncpg's default reset costs three statements per use (RESET ALL, unlock, CLOSE ALL);
    the store sets no session state, takes only transaction-scoped locks and closes its
    transactions, so a clean connection needs none of it.
    """
    if conn.is_in_transaction():
        await conn.reset()


class DatabaseUnavailableError(Exception):
    """The database cannot be reached or failed: try again later (HTTP 503)."""


@dataclass
class Outcome:
    """What happened to one batch, as the acknowledgement says it."""

    batch: str
    gateway: str
    acked: dict[str, int]
    stored: int
    duplicates: int
    chain_ok: bool
    replayed_batch: bool
    extra: dict[str, Any] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "status": 200,
            "acked": self.acked,
            "stored": self.stored,
            "duplicates": self.duplicates,
            "chain_ok": self.chain_ok,
            "replayed_batch": self.replayed_batch,
        }


class FleetStore:
    """The receiver's view of PostgreSQL: a bounded pool, parsed keys, the ingest transaction."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self.pool = pool
        self.keys = KeyRing()
        self._unknown: dict[str, float] = {}

    @classmethod
    async def open(cls, dsn: str, *, min_size: int = 1, max_size: int = 8, application_name: str = "egw-ingest") -> FleetStore:
        """Connect, migrate, and return a store; asyncpg errors become `DatabaseUnavailableError` with the reason."""
        try:
            pool = await asyncpg.create_pool(dsn, min_size=min_size, max_size=max_size, server_settings={"application_name": application_name}, reset=_reset)
            async with pool.acquire() as conn:
                await migrate(conn)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailableError(f"cannot use the database: {type(exc).__name__}: {exc}") from None
        return cls(pool)

    async def close(self) -> None:
        await self.pool.close()

    # ------------------------------------------------------------ registration
    async def register(self, pem: bytes | str, gateway: str | None = None) -> tuple[str, str, bool]:
        """Register a gateway key; return (kid, gateway, created). ValueError when the key or id clashes.

        The gateway id defaults to the kid (what a gateway uploads as when EGW_GATEWAY_ID is
        empty). A gateway id belongs to one key: another key claiming it is refused, so no
        key can write items under another gateway's name.
        """
        text = pem.decode("ascii") if isinstance(pem, bytes) else pem
        kid = serial_from_public_key(load_public_key(text))
        gateway = gateway or kid
        if not gateway or "/" in gateway or any(c in gateway for c in "+#\0") or len(gateway) > 200:
            raise ValueError(f"gateway id {gateway!r} must be 1-200 characters without '/', '+', '#' (it is an MQTT topic level)")
        async with self.pool.acquire() as conn, conn.transaction():
            row = await conn.fetchrow("SELECT kid, gateway FROM fleet_gateways WHERE kid = $1 OR gateway = $2", kid, gateway)
            if row is not None:
                if row["kid"] == kid and row["gateway"] == gateway:
                    return kid, gateway, False
                if row["kid"] == kid:
                    raise ValueError(f"key {kid} is already registered for gateway {row['gateway']!r}")
                raise ValueError(f"gateway {gateway!r} is already registered with another key ({row['kid']})")
            await conn.execute("INSERT INTO fleet_gateways (kid, gateway, public_key) VALUES ($1, $2, $3)", kid, gateway, text)
        self._unknown.pop(kid, None)
        return kid, gateway, True

    async def _key(self, kid: str) -> Any:
        found = self.keys.get(kid)
        if found is not None:
            return found
        now = time.monotonic()
        if now - self._unknown.get(kid, -UNKNOWN_KEY_RECHECK_S) < UNKNOWN_KEY_RECHECK_S:
            return None
        row = await self.pool.fetchrow("SELECT gateway, public_key FROM fleet_gateways WHERE kid = $1", kid)
        if row is None:
            if len(self._unknown) >= MAX_UNKNOWN_REMEMBERED:
                self._unknown.clear()
            self._unknown[kid] = now
            return None
        return self.keys.put(kid, row["gateway"], row["public_key"])

    # ------------------------------------------------------------ ingest
    async def verify(self, body: bytes, topic_gateway: str | None = None) -> Batch:
        """Everything that can be checked before the transaction; raises `BatchRefusedError` with the reason."""
        envelope = open_envelope(body)
        try:
            registered = await self._key(envelope.kid)
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError) as exc:
            raise DatabaseUnavailableError(f"database: {type(exc).__name__}: {exc}") from None
        if registered is None:
            raise BatchRefusedError(401, "unknown_key", f"unknown gateway key id {envelope.kid!r}: register its public key first (egw ingest register)")
        if topic_gateway is not None and topic_gateway != registered.gateway:
            raise BatchRefusedError(409, "gateway_mismatch", f"published on the topic of gateway {topic_gateway!r}, but key {envelope.kid} is registered for {registered.gateway!r}")
        try:
            text = check_signature(envelope, registered.key)
            return check_payload(text, envelope, registered.gateway)
        except BatchRefusedError as exc:
            exc.gateway = registered.gateway
            raise

    async def ingest(self, batch: Batch, via: str) -> Outcome:
        """Store a verified batch once (see the module docstring); `BatchRefusedError` when out of order."""
        for attempt in range(RETRIES):
            try:
                async with self.pool.acquire() as conn, conn.transaction():
                    return await self._ingest(conn, batch, via)
            except (asyncpg.DeadlockDetectedError, asyncpg.SerializationError):
                if attempt == RETRIES - 1:
                    raise DatabaseUnavailableError("database: too many lock conflicts, try again") from None
            except asyncpg.DataError as exc:  # a value PostgreSQL cannot hold (e.g. \u0000 in a text or JSON string)
                raise BatchRefusedError(400, "malformed", f"the database refused a value of the batch: {exc}", batch.gateway) from None
            except (OSError, asyncpg.PostgresConnectionError, asyncpg.InterfaceError, asyncpg.CannotConnectNowError) as exc:
                raise DatabaseUnavailableError(f"database: {type(exc).__name__}: {exc}") from None
        raise DatabaseUnavailableError("unreachable")

    async def _ingest(self, conn: asyncpg.Connection, batch: Batch, via: str) -> Outcome:
        gateway, runs = batch.gateway, batch.runs
        streams = sorted(runs)
        lowest = [runs[s][0][0] for s in streams]
        # One round trip: the batch and its prev (known?), the progress rows of the batch's streams
        # created where new and locked (FOR UPDATE, in stream order) where they exist.
        rows = await conn.fetch(
            "WITH created AS (INSERT INTO fleet_progress (gateway, stream, contiguous, max_seen)"
            "   SELECT $1, s, l - 1, l - 1 FROM unnest($2::text[], $3::bigint[]) AS t(s, l) ON CONFLICT (gateway, stream) DO NOTHING"
            "   RETURNING stream, contiguous, max_seen),"
            " locked AS (SELECT stream, contiguous, max_seen FROM fleet_progress WHERE gateway = $1 AND stream = ANY($2::text[]) ORDER BY stream FOR UPDATE)"
            " SELECT 'c' AS what, stream AS name, contiguous, max_seen, NULL AS owner FROM created"
            " UNION ALL SELECT 'l', stream, contiguous, max_seen, NULL FROM locked"
            " UNION ALL SELECT 'b', hash, NULL, NULL, gateway FROM fleet_batches WHERE hash = $4 OR hash = $5",
            gateway,
            streams,
            lowest,
            batch.digest,
            batch.prev,
        )
        known = {r["name"]: r["owner"] for r in rows if r["what"] == "b"}
        created = {r["name"] for r in rows if r["what"] == "c"}
        progress = {r["name"]: (r["contiguous"], r["max_seen"]) for r in rows if r["what"] != "b"}
        missing = [s for s in streams if s not in progress]
        if missing:  # created by another worker's transaction that committed while this statement ran
            for r in await conn.fetch(
                "SELECT stream, contiguous, max_seen FROM fleet_progress WHERE gateway = $1 AND stream = ANY($2::text[]) ORDER BY stream FOR UPDATE", gateway, missing
            ):
                progress[r["stream"]] = (r["contiguous"], r["max_seen"])
        seen = batch.digest in known
        prev_ok = batch.prev is None or known.get(batch.prev) == gateway
        if not seen and not prev_ok:
            holes = [(s, progress[s][0] + 1, low) for s, low in zip(streams, lowest, strict=True) if s not in created and low > progress[s][0] + 1]
            if holes:
                stream, expected, got = holes[0]
                raise BatchRefusedError(
                    409,
                    "out_of_order",
                    f"out of order: the previous batch {batch.prev[:12]}… has not been received, and stream {stream!r} would skip from seq {expected} to {got}; send the earlier batch first",
                    gateway,
                )
        status = await conn.execute(
            "INSERT INTO fleet_items (gateway, stream, seq, seq_last, kind, wall_time, body, batch)"
            " SELECT $1, i->>'s', (i->>'q')::bigint, (i->>'ql')::bigint, i->>'k', (i->>'w')::float8, i->'x', $2"
            " FROM jsonb_array_elements(($3::text)::jsonb -> 'items') AS i"
            " ON CONFLICT (gateway, stream, seq) DO NOTHING",
            gateway,
            batch.digest,
            batch.payload,
        )
        stored = int(status.rsplit(" ", 1)[1])
        acked, new_contiguous, new_max, counts = {}, [], [], []
        for stream in streams:
            contiguous, max_seen = progress[stream]
            had_hole = max_seen > contiguous
            for seq, seq_last in runs[stream]:
                if seq > contiguous + 1:
                    break
                contiguous = max(contiguous, seq_last)
            max_seen = max(max_seen, runs[stream][-1][1])
            if had_hole and contiguous < max_seen:  # earlier items stored past a hole: walk what is stored
                contiguous = await self._walk(conn, gateway, stream, contiguous)
            acked[stream] = contiguous
            new_contiguous.append(contiguous)
            new_max.append(max_seen)
            counts.append(len(runs[stream]))
        # One statement for the rest: the batch's record (unless a replay), the progress rows and
        # the gateway's counters. A copy that another worker committed meanwhile finds the batch
        # recorded (nothing inserted): it counts as a replay, never as a second new batch.
        inserted = await conn.fetchval(
            "WITH b AS (INSERT INTO fleet_batches (hash, gateway, prev, items, new_items, chain_ok, via)"
            "   SELECT $2, $1, $3, $4, $5, $6, $7 WHERE NOT $8::boolean ON CONFLICT (hash) DO NOTHING RETURNING 1),"
            " p AS (UPDATE fleet_progress AS p SET contiguous = v.c, max_seen = v.m, items = p.items + v.n, updated = now()"
            "   FROM unnest($9::text[], $10::bigint[], $11::bigint[], $12::bigint[]) AS v(s, c, m, n) WHERE p.gateway = $1 AND p.stream = v.s RETURNING 1),"
            " n AS (SELECT count(*)::int AS inserted FROM b)"
            " INSERT INTO fleet_gateway_stats AS g (gateway, batches, items, duplicates, replayed_batches, chain_breaks, last_seen)"
            "   SELECT $1, n.inserted, $5, $13, 1 - n.inserted, CASE WHEN n.inserted = 1 AND NOT $6::boolean THEN 1 ELSE 0 END, now() FROM n"
            " ON CONFLICT (gateway) DO UPDATE SET batches = g.batches + excluded.batches, items = g.items + excluded.items,"
            "   duplicates = g.duplicates + excluded.duplicates, replayed_batches = g.replayed_batches + excluded.replayed_batches,"
            "   chain_breaks = g.chain_breaks + excluded.chain_breaks, last_seen = now()"
            " RETURNING (SELECT inserted FROM n)",
            gateway,
            batch.digest,
            batch.prev,
            batch.items,
            stored,
            prev_ok,
            via,
            seen,
            streams,
            new_contiguous,
            new_max,
            counts,
            batch.items - stored,
        )
        seen = not inserted
        duplicates = batch.items - stored
        chain_break = not seen and not prev_ok
        return Outcome(batch.digest, gateway, acked, stored, duplicates, prev_ok or seen, seen, {"chain_break": chain_break})

    @staticmethod
    async def _walk(conn: asyncpg.Connection, gateway: str, stream: str, contiguous: int) -> int:
        """The contiguous seq after `contiguous`, from the items stored (after a hole was filled)."""
        async with conn.transaction():  # a savepoint: the cursor needs one
            async for row in conn.cursor(
                "SELECT seq, seq_last FROM fleet_items WHERE gateway = $1 AND stream = $2 AND seq_last > $3 ORDER BY seq", gateway, stream, contiguous
            ):
                if row["seq"] > contiguous + 1:
                    break
                contiguous = max(contiguous, row["seq_last"])
        return contiguous

    async def record_refusal(self, gateway: str, reason: str) -> None:
        """Count a refusal of a registered gateway's batch and keep its reason (for /v1/status)."""
        try:
            await self.pool.execute(
                "INSERT INTO fleet_gateway_stats (gateway, refused, last_refusal, last_seen) VALUES ($1, 1, $2, now())"
                " ON CONFLICT (gateway) DO UPDATE SET refused = fleet_gateway_stats.refused + 1, last_refusal = excluded.last_refusal, last_seen = now()",
                gateway,
                reason[:500],
            )
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            pass  # the refusal is answered anyway; only its count is lost

    # ------------------------------------------------------------ status
    async def status(self, gateway: str | None = None, limit: int = 1000) -> dict[str, Any]:
        """Per gateway: registration, counters, last refusal, per-stream progress; plus fleet totals."""
        async with self.pool.acquire() as conn:
            rows = await conn.fetch(
                "SELECT g.kid, g.gateway, g.registered, s.batches, s.items, s.duplicates, s.replayed_batches, s.chain_breaks, s.refused, s.last_refusal, s.last_seen"
                " FROM fleet_gateways g LEFT JOIN fleet_gateway_stats s USING (gateway) WHERE ($1::text IS NULL OR g.gateway = $1) ORDER BY g.gateway LIMIT $2",
                gateway,
                limit,
            )
            names = [r["gateway"] for r in rows]
            streams: dict[str, dict[str, Any]] = {}
            for r in await conn.fetch(
                "SELECT gateway, stream, contiguous, max_seen, items FROM fleet_progress WHERE gateway = ANY($1::text[]) ORDER BY gateway, stream", names
            ):
                streams.setdefault(r["gateway"], {})[r["stream"]] = {"acked": r["contiguous"], "max_seen": r["max_seen"], "items": r["items"], "missing": r["max_seen"] > r["contiguous"]}
            totals = await conn.fetchrow(
                "SELECT count(*) AS gateways, coalesce(sum(batches), 0) AS batches, coalesce(sum(items), 0) AS items, coalesce(sum(duplicates), 0) AS duplicates,"
                " coalesce(sum(chain_breaks), 0) AS chain_breaks, coalesce(sum(refused), 0) AS refused FROM fleet_gateway_stats"
            )
            registered = await conn.fetchval("SELECT count(*) FROM fleet_gateways")
        gateways = []
        for r in rows:
            gateways.append(
                {
                    "gateway": r["gateway"],
                    "kid": r["kid"],
                    "registered": r["registered"].isoformat(),
                    "batches": r["batches"] or 0,
                    "items": r["items"] or 0,
                    "duplicates": r["duplicates"] or 0,
                    "replayed_batches": r["replayed_batches"] or 0,
                    "chain_breaks": r["chain_breaks"] or 0,
                    "refused": r["refused"] or 0,
                    "last_refusal": r["last_refusal"],
                    "last_seen": r["last_seen"].isoformat() if r["last_seen"] else None,
                    "streams": streams.get(r["gateway"], {}),
                }
            )
        return {"registered": registered, "totals": {k: int(v) for k, v in dict(totals).items()}, "gateways": gateways, "truncated": len(rows) >= limit}
