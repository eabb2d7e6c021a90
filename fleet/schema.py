"""The receiver's PostgreSQL tables and their migrations.

Migrations run in order, each once, in one transaction under an advisory lock, so two
workers starting together never race; `fleet_schema` records the version reached. A
database migrated by a newer receiver is refused with a clear error rather than misread
(roll back the receiver only across releases without a migration).

    fleet_gateways       registered keys: kid (the serial derived from the key) -> gateway id
    fleet_batches        every accepted batch by its hash (the hash chain's memory)
    fleet_items          every item once: PRIMARY KEY (gateway, stream, seq)
    fleet_progress       per stream: the highest seq up to which nothing is missing
                         (`contiguous`, what acknowledgements carry) and the highest seen
    fleet_gateway_stats  per gateway: batches, items, duplicates, chain breaks, refusals
"""

from __future__ import annotations

from typing import Any

SCHEMA_LOCK = 0x65677766  # pg_advisory_xact_lock key ("egwf")

MIGRATIONS: list[str] = [
    """
    CREATE TABLE fleet_gateways (
        kid TEXT PRIMARY KEY,
        gateway TEXT NOT NULL UNIQUE,
        public_key TEXT NOT NULL,
        registered TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE fleet_batches (
        hash TEXT PRIMARY KEY,
        gateway TEXT NOT NULL,
        prev TEXT,
        items INTEGER NOT NULL,
        new_items INTEGER NOT NULL,
        chain_ok BOOLEAN NOT NULL,
        via TEXT NOT NULL,
        received TIMESTAMPTZ NOT NULL DEFAULT now()
    );
    CREATE TABLE fleet_items (
        gateway TEXT NOT NULL,
        stream TEXT NOT NULL,
        seq BIGINT NOT NULL,
        seq_last BIGINT NOT NULL,
        kind TEXT NOT NULL,
        wall_time DOUBLE PRECISION NOT NULL,
        body JSONB NOT NULL,
        batch TEXT NOT NULL,
        PRIMARY KEY (gateway, stream, seq)
    );
    CREATE TABLE fleet_progress (
        gateway TEXT NOT NULL,
        stream TEXT NOT NULL,
        contiguous BIGINT NOT NULL,
        max_seen BIGINT NOT NULL,
        items BIGINT NOT NULL DEFAULT 0,
        updated TIMESTAMPTZ NOT NULL DEFAULT now(),
        PRIMARY KEY (gateway, stream)
    );
    CREATE TABLE fleet_gateway_stats (
        gateway TEXT PRIMARY KEY,
        batches BIGINT NOT NULL DEFAULT 0,
        items BIGINT NOT NULL DEFAULT 0,
        duplicates BIGINT NOT NULL DEFAULT 0,
        replayed_batches BIGINT NOT NULL DEFAULT 0,
        chain_breaks BIGINT NOT NULL DEFAULT 0,
        refused BIGINT NOT NULL DEFAULT 0,
        last_refusal TEXT,
        last_seen TIMESTAMPTZ
    );
    """,
]


class SchemaError(RuntimeError):
    """The database cannot be used by this receiver (e.g. migrated by a newer one)."""


async def migrate(conn: Any) -> int:
    """Bring the schema up to date on an asyncpg connection; return the version now in place."""
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", SCHEMA_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS fleet_schema (component TEXT PRIMARY KEY, version INTEGER NOT NULL)")
        version = await conn.fetchval("SELECT version FROM fleet_schema WHERE component = 'fleet'") or 0
        if version > len(MIGRATIONS):
            raise SchemaError(
                f"database schema version {version} is newer than this receiver knows ({len(MIGRATIONS)}): upgrade the receiver, never downgrade a migrated database"
            )
        for number in range(version, len(MIGRATIONS)):
            await conn.execute(MIGRATIONS[number])
        if version < len(MIGRATIONS):
            await conn.execute(
                "INSERT INTO fleet_schema (component, version) VALUES ('fleet', $1) ON CONFLICT (component) DO UPDATE SET version = excluded.version",
                len(MIGRATIONS),
            )
    return len(MIGRATIONS)
