"""The settings registry (devices and transports changed over REST), written through sqlite-utils.

What a user relies on: a change recorded is there for the next tree build (another
connection, after a restart), a re-add undoes a removal, transport changes merge, the
table is bounded, and a refused change leaves nothing behind.
"""

from __future__ import annotations

import pytest

from storage import registry
from storage.db import connect, migrate, transaction


def test_nothing_changed_reads_as_no_changes_before_the_database_or_the_tables_exist(tmp_path):
    db = tmp_path / "egw.db"
    assert registry.changes(db) == ({}, set()) and registry.transport_changes(db) == {}
    connect(db).close()  # a database of another component, without the registry's tables
    assert registry.changes(db) == ({}, set()) and registry.transport_changes(db) == {}


def test_added_removed_and_added_again_is_what_the_next_tree_build_sees(tmp_path):
    db = tmp_path / "egw.db"
    registry.record_added(db, {"id": "inv2", "host": "10.0.0.2", "port": 502}, now=10.0)
    registry.record_removed(db, "meter", now=11.0)
    configured = [{"id": "meter", "host": "10.0.0.9"}, {"id": "roof", "host": "10.0.0.1"}]
    assert registry.apply_changes(configured, db) == [{"id": "roof", "host": "10.0.0.1"}, {"id": "inv2", "host": "10.0.0.2", "port": 502}]
    registry.record_removed(db, "inv2", now=12.0)
    registry.record_added(db, {"id": "meter", "host": "10.0.0.10"}, now=13.0)  # added again over REST: back, with the new settings
    assert registry.apply_changes(configured, db) == [{"id": "roof", "host": "10.0.0.1"}, {"id": "meter", "host": "10.0.0.10"}]
    conn = connect(db, readonly=True)
    try:
        rows = {row["id"]: (row["removed"], row["changed"]) for row in conn.execute("SELECT * FROM api_devices")}
    finally:
        conn.close()
    assert rows == {"inv2": (1, 12.0), "meter": (0, 13.0)}  # one row per device, the latest change wins


def test_transport_changes_merge_over_earlier_ones(tmp_path):
    db = tmp_path / "egw.db"
    registry.record_transport(db, "fleet", {"batch_items": 200}, now=1.0)
    registry.record_transport(db, "fleet", {"url": "https://ingest.example.net/v2", "batch_items": 500}, now=2.0)
    registry.record_transport(db, "backup", {"enabled": False}, now=3.0)
    uploads = [{"name": "fleet", "url": "https://ingest.example.net/v1", "timeout": 10}, {"name": "backup", "url": "http://10.0.0.5/in"}]
    assert registry.apply_transport_changes(uploads, db) == [
        {"name": "fleet", "url": "https://ingest.example.net/v2", "timeout": 10, "batch_items": 500},
        {"name": "backup", "url": "http://10.0.0.5/in", "enabled": False},
    ]


def test_a_full_registry_refuses_new_ids_changes_nothing_and_still_takes_known_ones(tmp_path, monkeypatch):
    db = tmp_path / "egw.db"
    monkeypatch.setattr(registry, "MAX_DEVICES", 3)
    for n in range(3):
        registry.record_added(db, {"id": f"inv{n}"}, now=float(n))
    with pytest.raises(registry.RegistryFullError, match="at most 3 devices"):
        registry.record_added(db, {"id": "inv9"})
    with pytest.raises(registry.RegistryFullError):
        registry.record_removed(db, "meter")
    registry.record_removed(db, "inv1", now=5.0)  # a device already in the table can still change
    added, removed = registry.changes(db)
    assert sorted(added) == ["inv0", "inv2"] and removed == {"inv1"}


def test_a_change_is_one_commit_of_the_callers_transaction_never_one_of_its_own(tmp_path):
    """sqlite-utils nests a savepoint inside the gateway's transaction; a failure after its upsert rolls all back."""
    db = tmp_path / "egw.db"
    conn = connect(db)
    migrate(conn, registry.COMPONENT, registry.MIGRATIONS)
    with pytest.raises(RuntimeError), transaction(conn):
        registry._table(conn, "api_devices").upsert({"id": "inv1", "settings": "{}", "removed": 0, "changed": 1.0}, pk="id")
        raise RuntimeError("power cut before COMMIT")
    conn.close()
    assert registry.changes(db) == ({}, set())
