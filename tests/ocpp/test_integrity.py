"""No charger can harm another through the ids and values it sends: transaction ids are
the central system's to issue, every message naming a transaction must be the sender's,
out-of-range values are refused with the right CALLERROR, and a charger clock running
ahead cannot freeze a connector's status. Real websockets, real SQLite files."""

from __future__ import annotations

import time

import pytest
from jsonschema import Draft4Validator

from actors.api import schemas as api_schemas
from actors.api.routes import route_for
from actors.ocpp import frames
from actors.ocpp.messages import RemoteStopTransaction
from storage import ocpp_transactions as tx_store

from .conftest import wait_until


def rest_accepts_transaction_id(transaction_id: int) -> bool:
    """Both REST places a transaction id goes: GET /api/transactions/{id} and the remote-stop body."""
    path = next(p for p in route_for("GET", "/api/transactions/{id}").params if p.name == "id")
    return Draft4Validator(path.schema).is_valid(transaction_id) and Draft4Validator(api_schemas.RemoteStop).is_valid({"transactionId": transaction_id})


def counter(conn) -> int | None:
    row = conn.execute("SELECT value FROM ocpp_counters WHERE name = 'transaction_id'").fetchone()
    return row[0] if row else None


# ------------------------------------------------------------ 1. never-issued ids
@pytest.mark.parametrize("bogus", [9223372036854775806, 2147483647, 424242])
async def test_stop_for_a_never_issued_id_moves_no_counter_and_later_ids_stay_small(central, bogus):
    rogue = await central.charger("ROGUE")
    before = counter(central.conn)
    reply = await rogue.stop_transaction(bogus, 900, reason="PowerLoss", id_tag="ALICE")
    assert reply.id_tag_info["status"] == "Accepted"  # accepted, so the charger frees its queue
    assert tx_store.get_transaction(central.conn, bogus) is None
    assert counter(central.conn) == before
    assert tx_store.list_transactions(central.conn) == []

    honest = await central.charger("HONEST")
    transaction_id = await honest.start_transaction(1, "BOB", meter_start=0)
    assert transaction_id == 1 and rest_accepts_transaction_id(transaction_id)
    assert tx_store.get_transaction(central.conn, transaction_id)["charge_point_id"] == "HONEST"
    outcome = await central.backend.request("HONEST", RemoteStopTransaction(transaction_id=transaction_id))
    assert outcome.payload == {"status": "Accepted"}
    await wait_until(lambda: tx_store.get_transaction(central.conn, transaction_id)["status"] == "Finished")


async def test_a_counter_pushed_out_of_range_by_an_older_version_is_repaired(central):
    honest = await central.charger("HONEST")
    first = await honest.start_transaction(1, "BOB", meter_start=0, timestamp=time.time() - 100)
    with central.conn:  # what an earlier version left behind after a stop for 2^63-2
        central.conn.execute("UPDATE ocpp_counters SET value = ? WHERE name = 'transaction_id'", (2**63 - 1,))
        central.conn.execute(
            "INSERT INTO transactions (transaction_id, charge_point_id, connector_id, id_tag, meter_start, start_time, status, unknown_start, received)"
            " VALUES (?, 'ROGUE', 0, '', 0, 0, 'Finished', 1, 0)", (2**63 - 2,))
    second = await honest.start_transaction(2, "BOB", meter_start=0)
    assert second == first + 1 and rest_accepts_transaction_id(second)


async def test_stop_for_a_never_issued_id_keeps_its_readings_without_the_id(central):
    rogue = await central.charger("ROGUE")
    data = [{"timestamp": frames.format_timestamp(time.time() - 5), "sampledValue": [{"value": "850"}]}]
    await rogue.call(__import__("ocpp.v16.call", fromlist=["StopTransaction"]).StopTransaction(
        meter_stop=900, timestamp=frames.format_timestamp(time.time()), transaction_id=77, transaction_data=data))
    rows = tx_store.meter_values(central.conn, charge_point_id="ROGUE")
    assert [(r["value"], r["transaction_id"]) for r in rows] == [("850", None)]
    ends = [e["record"] for e in tx_store.pending_exports(central.conn, "ROGUE") if e["record"]["raw"].get("event") == "session_end"]
    assert ends and ends[0]["values"]["transaction_id"] is None and ends[0]["raw"]["charger_transaction_id"] == 77
