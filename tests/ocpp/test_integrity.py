"""No charger can harm another through the ids and values it sends: transaction ids are
the central system's to issue, every message naming a transaction must be the sender's,
out-of-range values are refused with the right CALLERROR, and a charger clock running
ahead cannot freeze a connector's status. Real websockets, real SQLite files."""

from __future__ import annotations

import json
import time

import pytest
from jsonschema import Draft4Validator

from actors.api import schemas as api_schemas
from actors.api.routes import route_for
from actors.ocpp import frames
from actors.ocpp.messages import RemoteStopTransaction
from simulators.charger.connection import connect
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store

from tests.conftest import wait_until_async


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
    await wait_until_async(lambda: tx_store.get_transaction(central.conn, transaction_id)["status"] == "Finished")


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


# --------------------------------------------------- 2. another charger's session
async def test_meter_values_naming_another_chargers_session_do_not_reach_it(central):
    updates = []
    central.backend.live_listeners.append(updates.append)
    victim = await central.charger("VICTIM")
    attacker = await central.charger("ATTACKER")
    start = time.time() - 60
    victim_tx = await victim.start_transaction(1, "ALICE", meter_start=0, timestamp=start)
    await victim.meter(1, victim_tx, 500, 3000.0, timestamp=start + 10)
    await wait_until_async(lambda: tx_store.get_transaction(central.conn, victim_tx)["last_meter_wh"] == 500)

    await attacker.meter(1, victim_tx, 998_999, 50_000.0, timestamp=start + 20)
    assert (await attacker.heartbeat()).current_time  # the MeterValues was answered and processed before this
    tx = tx_store.transaction_with_meter_values(central.conn, victim_tx)
    assert tx["energy_wh"] == 500 and tx["last_power_w"] == 3000.0
    assert {m["charge_point_id"] for m in tx["meter_values"]} == {"VICTIM"}
    assert not any(getattr(u, "transaction_id", None) == victim_tx and getattr(u, "charge_point_id", None) == "ATTACKER" for u in updates)
    assert max(getattr(u, "energy_wh", 0) or 0 for u in updates) == 500
    kept = tx_store.meter_values(central.conn, charge_point_id="ATTACKER")
    assert kept and {m["transaction_id"] for m in kept} == {None}  # stored under the sender, without the id
    assert not [e for e in tx_store.pending_exports(central.conn, "ATTACKER") if e["record"]["values"].get("transaction_id") == victim_tx]

    await victim.meter(1, victim_tx, 700, 3000.0, timestamp=start + 30)  # the owner carries on normally
    await wait_until_async(lambda: tx_store.get_transaction(central.conn, victim_tx)["last_meter_wh"] == 700)


async def test_stop_naming_another_chargers_session_leaves_it_running(central):
    victim = await central.charger("VICTIM")
    attacker = await central.charger("ATTACKER")
    start = time.time() - 60
    victim_tx = await victim.start_transaction(1, "ALICE", meter_start=100, timestamp=start)
    reply = await attacker.stop_transaction(victim_tx, 5_000_000, reason="Other", timestamp=start + 30, id_tag="ALICE")
    assert reply.id_tag_info["status"] == "Accepted"  # answered per OCPP so the attacker's queue moves on
    tx = tx_store.get_transaction(central.conn, victim_tx)
    assert tx["status"] == "Active" and tx["meter_stop"] is None and tx["charge_point_id"] == "VICTIM"
    assert tx_store.pending_exports(central.conn, "ATTACKER") == []
    await victim.stop_transaction(victim_tx, 900, timestamp=start + 40)
    done = tx_store.get_transaction(central.conn, victim_tx)
    assert done["status"] == "Finished" and done["energy_wh"] == 800


# ------------------------------------------------------ 5. values nothing can store
NOW = "2026-01-01T00:00:00Z"
OUT_OF_RANGE = [
    ("StatusNotification", {"connectorId": 2**64, "errorCode": "NoError", "status": "Available"}),
    ("MeterValues", {"connectorId": 2**64, "meterValue": [{"timestamp": NOW, "sampledValue": [{"value": "5"}]}]}),
    ("StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 2**70, "timestamp": NOW}),
    ("StartTransaction", {"connectorId": 2**31, "idTag": "TAG1", "meterStart": 0, "timestamp": NOW}),
    ("StartTransaction", {"connectorId": 1, "idTag": "\ud800", "meterStart": 0, "timestamp": NOW}),
    ("StartTransaction", {"connectorId": 1, "idTag": "TAG1", "meterStart": 0, "timestamp": NOW, "reservationId": -(2**40)}),
    ("Authorize", {"idTag": "A\udc00"}),
    ("StopTransaction", {"transactionId": 2**64, "meterStop": 10, "timestamp": NOW}),
    ("StopTransaction", {"transactionId": 1, "meterStop": 10, "timestamp": NOW, "idTag": "\udfff"}),
    ("BootNotification", {"chargePointVendor": "V\ud83d", "chargePointModel": "M"}),
]


def stored(conn) -> dict:
    return {
        "transactions": tx_store.list_transactions(conn), "meter_values": tx_store.meter_values(conn),
        "connectors": charger_store.list_connectors(conn, "ODD"), "history": charger_store.status_history(conn, "ODD"),
        "counter": counter(conn), "exports": tx_store.pending_exports(conn, "ODD"),
        "charger": {k: v for k, v in (charger_store.get_charger(conn, "ODD") or {}).items() if k not in ("last_seen", "connected")},
    }


async def test_values_beyond_what_can_be_stored_get_a_type_constraint_violation_and_store_nothing(central):
    ws = await connect(central.url("ODD"))
    await ws.send(json.dumps([2, "boot", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
    assert json.loads(await ws.recv())[0] == frames.CALLRESULT
    before = stored(central.conn)
    for n, (action, payload) in enumerate(OUT_OF_RANGE):
        await ws.send(json.dumps([2, f"m{n}", action, payload]))  # lone surrogates go out as \\uXXXX escapes
        reply = json.loads(await ws.recv())
        assert reply[:3] == [frames.CALLERROR, f"m{n}", "TypeConstraintViolation"], (action, payload, reply)
    assert stored(central.conn) == before
    await ws.send(json.dumps([2, "hb", "Heartbeat", {}]))  # the connection carries on
    assert json.loads(await ws.recv())[:2] == [frames.CALLRESULT, "hb"]
    await ws.close()


# ------------------------------------------------- 6. a charger clock running ahead
async def test_a_status_dated_a_day_ahead_does_not_freeze_the_connector(central):
    cp = await central.charger("CP1")
    await cp.status(1, "Faulted", error_code="GroundFailure", timestamp=time.time() + 86_400)
    (connector,) = charger_store.list_connectors(central.conn, "CP1")
    assert connector["status"] == "Faulted" and connector["timestamp"] <= time.time()  # ordered as received
    assert connector["charger_timestamp"].startswith(time.strftime("%Y-%m-%d", time.gmtime(time.time() + 86_400)))
    (record,) = charger_store.status_history(central.conn, "CP1")
    assert record["charger_timestamp"] == connector["charger_timestamp"]

    await cp.status(1, "Available")  # a correct notification afterwards wins
    (connector,) = charger_store.list_connectors(central.conn, "CP1")
    assert (connector["status"], connector["error_code"], connector["charger_timestamp"]) == ("Available", "NoError", None)


async def test_a_small_skew_is_trusted_and_a_status_frozen_by_an_earlier_version_is_released(central):
    cp = await central.charger("CP1")
    ahead = time.time() + 60  # within the allowed skew: the charger's own time orders it
    await cp.status(1, "Charging", timestamp=ahead)
    await cp.status(1, "Preparing", timestamp=ahead - 30)  # an older replay does not overwrite it
    assert charger_store.list_connectors(central.conn, "CP1")[0]["status"] == "Charging"

    with central.conn:  # what an earlier version stored for a StatusNotification dated a day ahead
        central.conn.execute("UPDATE connectors SET status = 'Faulted', timestamp = ? WHERE charge_point_id = 'CP1'", (time.time() + 86_400,))
    await cp.status(1, "Available", timestamp=ahead + 1)
    assert charger_store.list_connectors(central.conn, "CP1")[0]["status"] == "Available"
