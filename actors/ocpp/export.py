"""Forwarding a charger's export queue to the harvest actor, one batch in flight at a time.

Finished sessions and meter samples are queued in `ocpp_export` in the same SQLite
transaction that stores them (see `storage.ocpp_transactions`), so nothing waits only in
memory. This module turns queued rows into a `ReadingBatch` for device
`charger:<chargePointId>` and deletes them once the harvest actor acknowledged the
batch. Batch ids are the last row id of the batch: increasing, and never reused, so
re-sends after a crash or a lost ack stay idempotent at the harvest actor.

Readings carry the charger's own timestamps as `wall_time`; their `mono_time` is derived
from the gateway's monotonic clock and the reading's age, since the charger's clock and
ours share no monotonic base.
"""

from __future__ import annotations

import sqlite3
import time
from dataclasses import dataclass
from pathlib import Path

from actors.harvest.messages import Reading, ReadingBatch
from storage import ocpp_transactions as tx_store

BATCH_ROWS = 100
ACK_TIMEOUT = 10.0


def boot_id() -> str:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def device_id(charge_point_id: str) -> str:
    return f"charger:{charge_point_id}"


@dataclass
class InFlight:
    batch_id: int
    deadline: float


class ExportForwarder:
    def __init__(self, conn: sqlite3.Connection, charge_point_id: str, producer: str) -> None:
        self.conn = conn
        self.charge_point_id = charge_point_id
        self.producer = producer
        self.boot_id = boot_id()
        self.in_flight: InFlight | None = None

    def next_batch(self, now_mono: float) -> ReadingBatch | None:
        """The batch to send now: a re-send after a timeout, the next rows, or None."""
        if self.in_flight is not None and now_mono < self.in_flight.deadline:
            return None
        rows = tx_store.pending_exports(self.conn, self.charge_point_id, BATCH_ROWS)
        if not rows:
            self.in_flight = None
            return None
        wall_now = time.time()
        readings = tuple(
            Reading(
                device_id=device_id(self.charge_point_id),
                wall_time=row["wall_time"],
                mono_time=now_mono - max(0.0, wall_now - row["wall_time"]),
                boot_id=self.boot_id,
                values=dict(row["record"].get("values", {})),
                raw=dict(row["record"].get("raw", {})),
            )
            for row in rows
        )
        batch_id = rows[-1]["id"]
        self.in_flight = InFlight(batch_id, now_mono + ACK_TIMEOUT)
        return ReadingBatch(producer=self.producer, batch_id=batch_id, readings=readings)

    def acked(self, batch_id: int) -> bool:
        """The harvest actor committed `batch_id`: forget its rows. False for a stale ack."""
        if self.in_flight is None or self.in_flight.batch_id != batch_id:
            return False
        tx_store.ack_exports(self.conn, self.charge_point_id, batch_id)
        self.in_flight = None
        return True

    def rejected(self, batch_id: int) -> bool:
        """The harvest actor refused the batch as malformed: re-sending cannot help, drop it."""
        return self.acked(batch_id)
