"""Forwarding a charger's export queue to the harvest actor, one batch in flight at a time.

Finished sessions and meter samples are queued in `ocpp_export` in the same SQLite
transaction that stores them (see `storage.ocpp_transactions`), so nothing waits only in
memory. This module turns the oldest queued group into a `ReadingBatch` for device
`charger:<chargePointId>` and deletes it once the harvest actor acknowledged the batch.

A batch is rebuilt from the queue alone, never from a clock read at send time: its id is
the group's batch id, and each reading's `mono_time` and `boot_id` are the ones stored
with its row when it was queued. A re-send after a lost ack, a slow harvest or a restart
of this actor (a new incarnation under the same producer name) is therefore the same
batch, item for item, and the outbox answers it with the sequence numbers it gave the
first time instead of storing the readings again.

A batch the harvest actor refuses is not simply deleted: its rows are replaced by a gap
row (reason "rejected_by_harvest"), which goes next, so the loss is visible upstream.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

from actors.harvest.messages import Gap, Reading, ReadingBatch
from storage import ocpp_transactions as tx_store

ACK_TIMEOUT = 10.0
REJECTED_REASON = "rejected_by_harvest"


def boot_id() -> str:
    """The current boot's id (see `storage.ocpp_transactions.read_boot_id`)."""
    return tx_store.read_boot_id()


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
        self.in_flight: InFlight | None = None

    def next_batch(self, now_mono: float) -> ReadingBatch | None:
        """The batch to send now: a re-send after a timeout, the next group, or None.

        `now_mono` only sets the ack deadline; nothing in the batch depends on it.
        """
        if self.in_flight is not None and now_mono < self.in_flight.deadline:
            return None
        rows = tx_store.next_export_batch(self.conn, self.charge_point_id)
        if not rows:
            self.in_flight = None
            return None
        device = device_id(self.charge_point_id)
        readings: list[Reading] = []
        gaps: list[Gap] = []
        for row in rows:
            record = row["record"]
            if "gap" in record:
                gap = record["gap"]
                gaps.append(Gap(device, gap["start"], gap["end"], gap["reason"], int(gap.get("missed", 0))))
                continue
            readings.append(Reading(
                device_id=device,
                wall_time=row["wall_time"],
                mono_time=row["mono_time"],
                boot_id=row["boot_id"],
                values=dict(record.get("values", {})),
                raw=dict(record.get("raw", {})),
                flags=tuple(record.get("flags", ())),
            ))
        batch_id = rows[-1]["batch_id"]
        self.in_flight = InFlight(batch_id, now_mono + ACK_TIMEOUT)
        return ReadingBatch(producer=self.producer, batch_id=batch_id, readings=tuple(readings), gaps=tuple(gaps))

    def acked(self, batch_id: int) -> bool:
        """The harvest actor committed `batch_id`: forget its rows. False for a stale ack."""
        if self.in_flight is None or self.in_flight.batch_id != batch_id:
            return False
        tx_store.ack_exports(self.conn, self.charge_point_id, batch_id)
        self.in_flight = None
        return True

    def rejected(self, batch_id: int) -> dict | None:
        """The harvest actor refused the batch: re-sending cannot help, so replace it by a gap.

        Returns the gap queued in its place (None for a stale answer, or when the refused
        batch was itself a gap and had to be dropped; `exports_dropped` counts that).
        """
        if self.in_flight is None or self.in_flight.batch_id != batch_id:
            return None
        gap = tx_store.reject_exports(self.conn, self.charge_point_id, batch_id, REJECTED_REASON)
        self.in_flight = None
        return gap
