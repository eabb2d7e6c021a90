"""The sqlite-utils commands docs/database.md gives for looking into a gateway's database, run as documented.

They run against a database the gateway holds open and writes to (WAL), print what an
operator asks for, and commit nothing: the writer's `PRAGMA data_version` (which moves
whenever another connection commits) stays where it was.
"""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass, field
from typing import Any

from storage import registry
from storage.outbox import Outbox


@dataclass(frozen=True)
class Reading:
    device_id: str
    wall_time: float
    mono_time: float
    boot_id: str
    values: dict[str, Any]
    raw: dict[str, Any] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Batch:
    producer: str
    batch_id: int
    readings: tuple[Reading, ...]
    gaps: tuple = ()
    events: tuple = ()


def sqlite_utils(*args: str) -> str:
    """`sqlite-utils ARGS`, the command the package installs (`python -m sqlite_utils` is the same entry point)."""
    result = subprocess.run([sys.executable, "-m", "sqlite_utils", *args], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_the_documented_commands_read_a_running_gateways_database_and_commit_nothing(tmp_path):
    db = tmp_path / "egw.db"
    outbox = Outbox.open(db)  # the gateway's writer, open for the whole test as in a running gateway
    try:
        outbox.ingest(Batch("devices/pv-roof", 1, tuple(
            Reading("pv-roof", 1_760_000_000.0 + n, 100.0 + n, "boot-1", {"ac_power_w": 1000.0 + n}) for n in range(3))))
        registry.record_added(db, {"id": "inv2", "host": "10.0.0.2"}, now=5.0)
        version = outbox.conn.execute("PRAGMA data_version").fetchone()[0]

        counts = {row["table"]: row["count"] for row in json.loads(sqlite_utils("tables", str(db), "--counts"))}
        assert counts["outbox_items"] == 3 and counts["outbox_sequences"] == 1 and counts["api_devices"] == 1

        rows = json.loads(sqlite_utils("rows", str(db), "outbox_items", "-c", "stream", "-c", "seq", "-c", "kind", "--limit", "2"))
        assert rows == [{"stream": "pv-roof", "seq": 1, "kind": "reading"}, {"stream": "pv-roof", "seq": 2, "kind": "reading"}]

        power = json.loads(sqlite_utils("query", str(db), "select seq, json_extract(body, '$.v.ac_power_w') as w from outbox_items order by id"))
        assert power == [{"seq": 1, "w": 1000.0}, {"seq": 2, "w": 1001.0}, {"seq": 3, "w": 1002.0}]

        table = sqlite_utils("rows", str(db), "api_devices", "-c", "id", "-c", "removed", "--table")
        assert table.split("\n")[2].split() == ["inv2", "0"]
        assert "CREATE TABLE outbox_cursors" in sqlite_utils("schema", str(db), "outbox_cursors")

        assert outbox.conn.execute("PRAGMA data_version").fetchone()[0] == version  # nobody else committed
        outbox.ingest(Batch("devices/pv-roof", 2, (Reading("pv-roof", 1_760_000_010.0, 110.0, "boot-1", {"ac_power_w": 7.0}),)))
        assert outbox.status()["items"] == 4  # and the gateway writes on as before
    finally:
        outbox.close()
