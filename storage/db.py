"""Opening the gateway's SQLite database, and versioned migrations per component.

Every part of the gateway that stores something (outbox, chargers, transactions,
settings, ...) owns its tables and declares them as an ordered list of migrations
under a component name. `migrate()` applies the ones a database has not seen yet,
each in its own transaction, and records the version in `schema_versions`.
Components never touch each other's tables, so adding one never renumbers another.

Durability settings are not negotiable here: WAL journal plus `synchronous=FULL`
keeps every committed row through a power cut, which is what "durable before
acknowledged" rests on.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from storage.files import make_private

Migration = str | Callable[[sqlite3.Connection], None]
DB_FILE = "egw.db"  # the one database file the outbox, the charger store and the settings share


def database_path(config: Mapping[str, Any]) -> Path:
    """Where the gateway's database is: `outbox_db` when set, else `<data_dir>/egw.db`."""
    data_dir = Path(str(config.get("data_dir", "data")))
    return Path(str(config.get("outbox_db") or data_dir / DB_FILE))


def connect(path: str | Path, *, readonly: bool = False) -> sqlite3.Connection:
    """Open the database at `path` with the gateway's durability settings.

    Autocommit mode (isolation_level=None): transactions are explicit, through
    `transaction()`, so that one batch is exactly one commit.
    """
    path = Path(path)
    if readonly:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True, isolation_level=None, timeout=30)
    else:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), isolation_level=None, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        for part in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
            make_private(part)  # readings, idTags and keys' hashes are nobody else's business on the box
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("PRAGMA foreign_keys=ON")
    conn.execute("PRAGMA busy_timeout=30000")
    conn.row_factory = sqlite3.Row
    return conn


@contextmanager
def transaction(conn: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One explicit transaction: committed on success, rolled back on any exception.

    BEGIN IMMEDIATE takes the write lock up front, so two writers never deadlock
    half-way through a batch.
    """
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield conn
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    conn.execute("COMMIT")


def migrate(conn: sqlite3.Connection, component: str, migrations: Sequence[Migration]) -> int:
    """Bring `component`'s tables up to date; return the version now in place.

    A migration is SQL (may hold several statements) or a callable taking the
    connection. Migrations are append-only: never edit one that has shipped.
    """
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_versions ("
        " component TEXT PRIMARY KEY, version INTEGER NOT NULL)"
    )
    row = conn.execute("SELECT version FROM schema_versions WHERE component = ?", (component,)).fetchone()
    current = row[0] if row else 0
    if current > len(migrations):
        raise RuntimeError(
            f"database has {component} schema version {current}, newer than this gateway knows ({len(migrations)}); refusing to downgrade"
        )
    for version in range(current + 1, len(migrations) + 1):
        step = migrations[version - 1]
        with transaction(conn):
            if callable(step):
                step(conn)
            else:
                for statement in _split_sql(step):
                    conn.execute(statement)
            conn.execute(
                "INSERT INTO schema_versions (component, version) VALUES (?, ?)"
                " ON CONFLICT(component) DO UPDATE SET version = excluded.version",
                (component, version),
            )
    return len(migrations)


def _split_sql(script: str) -> list[str]:
    """Split a migration script into statements (executescript would commit on its own)."""
    statements, buffer = [], ""
    for line in script.splitlines(keepends=True):
        buffer += line
        if sqlite3.complete_statement(buffer):
            if buffer.strip():
                statements.append(buffer.strip())
            buffer = ""
    if buffer.strip():
        statements.append(buffer.strip())
    return statements
