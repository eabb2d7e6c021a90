"""The charger export path into the outbox: re-sends are the same batch, poison numbers stay
out, and a batch the harvest refuses leaves a gap record. Real SQLite files throughout; the
outbox is the real `Outbox` on the same file the charger store uses."""

from __future__ import annotations

import json
import logging
import time

import pytest
from ocpp.v16 import call

from actors.harvest.messages import Gap
from actors.ocpp.export import ACK_TIMEOUT, ExportForwarder
from simulators.charger.chargepoint import iso
from storage import ocpp_transactions as tx_store
from storage.db import connect, migrate
from storage.outbox import Outbox
from tests.conftest import strict_loads

STREAM = "charger:CP1"
REJECTED_REASON = "rejected_by_harvest"  # the reason the gap record names


@pytest.fixture
def outbox(tmp_path, db):
    box = Outbox.open(tmp_path / "gw.db")
    yield box
    box.close()


def stream_rows(db, stream: str = STREAM) -> list[dict]:
    rows = db.execute("SELECT kind, seq, body FROM outbox_items WHERE stream = ? ORDER BY seq", (stream,)).fetchall()
    return [{"kind": r["kind"], "seq": r["seq"], "body": strict_loads(r["body"])} for r in rows]


def queue_samples(db, transaction_id: int, *energies: tuple[float, float]) -> None:
    """One stored MeterValues: samples (timestamp, Wh) and their export rows, one group."""
    samples = [{"timestamp": t, "measurand": "Energy.Active.Import.Register", "value": str(wh), "unit": "Wh"} for t, wh in energies]
    exports = [(t, {"values": {"transaction_id": transaction_id, "energy_wh": wh}, "raw": {"event": "meter_values"}}) for t, wh in energies]
    assert tx_store.add_meter_values(db, "CP1", 1, transaction_id, samples, received=time.time(), exports=exports)


def session(db) -> int:
    tid, _ = tx_store.start_transaction(db, "CP1", connector_id=1, id_tag="T", meter_start=0, start_time=time.time() - 100, received=time.time())
    return tid


# ------------------------------------------------------------ re-sends
def test_resend_after_a_lost_ack_is_recognised_by_the_outbox(db, outbox):
    tid = session(db)
    now = time.time()
    queue_samples(db, tid, (now - 30, 100.0), (now - 20, 200.0))
    forwarder = ExportForwarder(db, "CP1", "chargers/CP1")
    first = forwarder.next_batch(5.0)
    first_seq = outbox.ingest(first)  # committed, but the ack never reaches the charger actor
    again = forwarder.next_batch(5.0 + ACK_TIMEOUT + 60.0)  # the ack deadline passed: re-send
    assert again == first  # every field, mono_time included
    assert outbox.ingest(again) == first_seq
    assert forwarder.acked(again.batch_id)
    rows = stream_rows(db)
    assert [r["body"]["v"]["energy_wh"] for r in rows] == [100.0, 200.0]
    assert [r["seq"] for r in rows] == [1, 2]


def test_restarted_forwarder_resends_the_same_batch_even_with_newer_rows_queued(db, outbox):
    """A charger actor restart: a new forwarder, same producer name, rows queued meanwhile."""
    tid = session(db)
    now = time.time()
    queue_samples(db, tid, (now - 30, 100.0))
    before = ExportForwarder(db, "CP1", "chargers/CP1")
    first = before.next_batch(1.0)
    first_seq = outbox.ingest(first)  # the actor dies before the ack arrives
    queue_samples(db, tid, (now - 20, 200.0), (now - 10, 300.0))  # the charger keeps sending

    after = ExportForwarder(db, "CP1", "chargers/CP1")
    resent = after.next_batch(1000.0)
    assert resent == first
    assert outbox.ingest(resent) == first_seq
    assert after.acked(resent.batch_id)
    following = after.next_batch(1000.0)
    assert following.batch_id > first.batch_id and len(following.readings) == 2
    outbox.ingest(following)
    assert after.acked(following.batch_id)
    assert after.next_batch(1000.0) is None
    rows = stream_rows(db)
    assert [r["body"]["v"]["energy_wh"] for r in rows] == [100.0, 200.0, 300.0]
    assert len({r["body"]["m"] for r in rows}) == 3


def test_rows_queued_before_the_upgrade_get_a_fixed_identity(tmp_path):
    """The migration stamps old rows once, so their re-sends are identical from then on."""
    conn = connect(tmp_path / "old.db")
    migrate(conn, tx_store.COMPONENT, tx_store.MIGRATIONS[:1])
    conn.execute("INSERT INTO ocpp_export (charge_point_id, wall_time, values_json) VALUES ('CP1', ?, ?)",
                 (time.time() - 5, json.dumps({"values": {"energy_wh": 1.0}, "raw": {}})))
    tx_store.init(conn)
    tx_store.init(conn)  # a second opener changes nothing
    row = tx_store.pending_exports(conn, "CP1")[0]
    assert row["batch_id"] == row["id"] and row["boot_id"] and row["mono_time"] is not None
    forwarder = ExportForwarder(conn, "CP1", "chargers/CP1")
    assert forwarder.next_batch(0.0) == ExportForwarder(conn, "CP1", "chargers/CP1").next_batch(500.0)
    conn.close()


def test_monotonic_times_keep_the_gateways_clock_offset_whatever_the_chargers_clock(db):
    """A charger clock running ahead must not look like a jump of the gateway's own clock."""
    tid = session(db)
    now = time.time()
    queue_samples(db, tid, (now - 3600, 1.0), (now + 30, 2.0))
    offset = time.time() - time.monotonic()
    for row in tx_store.pending_exports(db, "CP1"):
        assert abs((row["wall_time"] - row["mono_time"]) - offset) < 1.0


# ------------------------------------------------------------ refusals
def test_a_batch_the_harvest_refuses_becomes_a_gap_record(db, outbox):
    tid = session(db)
    now = time.time()
    queue_samples(db, tid, (now - 30, 100.0), (now - 20, 200.0))
    queue_samples(db, tid, (now - 10, 300.0))
    forwarder = ExportForwarder(db, "CP1", "chargers/CP1")
    refused = forwarder.next_batch(0.0)
    assert len(refused.readings) == 2
    gap = forwarder.rejected(refused.batch_id)
    assert gap == {"start": now - 30, "end": now - 20, "reason": REJECTED_REASON, "missed": 2}

    batch = forwarder.next_batch(0.0)  # the gap goes next, before the newer readings
    assert batch.readings == () and batch.gaps == (Gap(STREAM, now - 30, now - 20, REJECTED_REASON, 2),)
    outbox.ingest(batch)
    assert forwarder.acked(batch.batch_id)
    rest = forwarder.next_batch(0.0)
    assert [r.values["energy_wh"] for r in rest.readings] == [300.0]
    outbox.ingest(rest)
    assert forwarder.acked(rest.batch_id)
    rows = stream_rows(db)
    assert [r["kind"] for r in rows] == ["gap", "reading"]
    assert rows[0]["body"] == {"start": now - 30, "end": now - 20, "reason": REJECTED_REASON, "missed": 2}
    assert tx_store.exports_dropped(db, "CP1") == 0


def test_a_refused_gap_is_dropped_and_counted_not_sent_forever(db):
    tid = session(db)
    now = time.time()
    queue_samples(db, tid, (now - 30, 100.0), (now - 20, 200.0))
    forwarder = ExportForwarder(db, "CP1", "chargers/CP1")
    assert forwarder.rejected(forwarder.next_batch(0.0).batch_id)
    assert forwarder.rejected(forwarder.next_batch(0.0).batch_id) is None  # the gap itself refused
    assert forwarder.next_batch(0.0) is None
    assert tx_store.exports_dropped(db, "CP1") == 2
    assert forwarder.rejected(12345) is None  # a stale answer changes nothing


# ------------------------------------------------------------ poison numbers
def test_a_non_finite_number_that_reaches_the_store_is_queued_as_null_and_flagged(db):
    tx_store.queue_export(db, "CP1", 1.0, {"values": {"energy_wh": float("nan"), "power_w": float("inf")}, "raw": {"x": float("-inf")}})
    (row,) = tx_store.pending_exports(db, "CP1")
    text = db.execute("SELECT values_json FROM ocpp_export").fetchone()[0]
    assert strict_loads(text) == row["record"]
    assert row["record"]["values"] == {"energy_wh": None, "power_w": None}
    assert row["record"]["flags"] == ["energy_wh", "power_w", "raw.x"]


POISON = [("NaN", "Wh"), ("Infinity", "Wh"), ("-inf", "Wh"), ("1e400", "Wh"), ("1e306", "kWh")]


async def test_poison_meter_values_over_a_real_connection_never_reach_storage(central, caplog):
    caplog.set_level(logging.WARNING)
    cp1 = await central.charger("CP1")
    cp2 = await central.charger("CP2")
    start = time.time() - 600
    tid1 = await cp1.start_transaction(1, "ALICE", meter_start=1000, timestamp=start)
    tid2 = await cp2.start_transaction(1, "BOB", meter_start=50, timestamp=start)
    await cp1.meter(1, tid1, 1500, 7000.0, timestamp=start + 10)
    for i, (value, unit) in enumerate(POISON):
        reply = await cp1.call(call.MeterValues(connector_id=1, transaction_id=tid1, meter_value=[{
            "timestamp": iso(start + 20 + i),
            "sampledValue": [
                {"value": value, "measurand": "Energy.Active.Import.Register", "unit": unit},
                {"value": value, "measurand": "Power.Active.Import", "unit": "W"},
                {"value": value, "measurand": "Voltage", "unit": "V", "phase": "L1"},
            ],
        }]))
        assert reply is not None  # MeterValues.conf: the message was schema-valid
        await cp2.meter(1, tid2, 100 + i, 3000.0, timestamp=start + 20 + i)
    assert central.conn.execute("SELECT last_meter_wh FROM transactions WHERE transaction_id = ?", (tid1,)).fetchone()[0] == 1500
    assert tx_store.get_transaction(central.conn, tid1)["energy_wh"] == 500  # untouched by the bad samples

    stop = await cp1.call(call.StopTransaction(meter_stop=2000, timestamp=iso(start + 60), transaction_id=tid1, reason="Local",
                                               transaction_data=[{"timestamp": iso(start + 59), "sampledValue": [
                                                   {"value": "NaN", "measurand": "Energy.Active.Import.Register", "unit": "Wh"}]}]))
    assert stop is not None
    await cp2.stop_transaction(tid2, 200, timestamp=start + 60)
    assert tx_store.get_transaction(central.conn, tid1)["energy_wh"] == 1000
    assert tx_store.get_transaction(central.conn, tid2)["energy_wh"] == 150

    # the charger's own text is kept in meter_values; nothing stored is anything but strict JSON
    for (text,) in central.conn.execute("SELECT values_json FROM ocpp_export"):
        strict_loads(text)
    flagged = [e for e in tx_store.pending_exports(central.conn, "CP1", 1000) if e["record"].get("flags")]
    assert len(flagged) == len(POISON) + 1
    for e in flagged:
        assert e["record"]["values"]["energy_wh"] is None and "energy_wh" in e["record"]["flags"]
        assert e["record"]["raw"]["non_finite"]["energy_wh"] in {v for v, _ in POISON}
    warnings = [r for r in caplog.records if r.getMessage() == "non-finite sampled values stored as null"]
    assert len(warnings) == len(POISON) + 1 and all(r.fields["charge_point_id"] == "CP1" for r in warnings)

    # through the forwarder into the real outbox: strict JSON, flags kept, CP2 complete
    outbox = Outbox(central.conn)
    for charger in ("CP1", "CP2"):
        forwarder = ExportForwarder(central.conn, charger, f"chargers/{charger}")
        while (batch := forwarder.next_batch(0.0)) is not None:
            outbox.ingest(batch)
            assert forwarder.acked(batch.batch_id)
    cp1_rows = stream_rows(central.conn, "charger:CP1")
    assert sum(1 for r in cp1_rows if "energy_wh" in r["body"].get("f", [])) == len(POISON) + 1
    assert [r["body"]["v"].get("session_energy_wh") for r in cp1_rows][-1] == 1000
    cp2_rows = stream_rows(central.conn, "charger:CP2")
    assert [r["body"]["v"]["energy_wh"] for r in cp2_rows] == [100 + i for i in range(len(POISON))] + [200]
    assert not any(r["body"].get("f") for r in cp2_rows)


async def test_bare_nan_in_a_frame_is_not_json_and_is_refused(central):
    cp = await central.charger("CP1")
    tid = await cp.start_transaction(1, "ALICE", meter_start=0)
    replies = []
    original = cp.route_message

    async def keep(raw):
        replies.append(raw)
        return await original(raw)

    cp.route_message = keep
    await cp._connection.send(f'[2,"nan-1","StopTransaction",{{"transactionId":{tid},"meterStop":NaN,"timestamp":"{iso(time.time())}"}}]')
    await cp._connection.send(f'[2,"inf-1","StopTransaction",{{"transactionId":{tid},"meterStop":1e400,"timestamp":"{iso(time.time())}"}}]')
    from tests.conftest import wait_until_async

    await wait_until_async(lambda: len(replies) >= 2)
    for raw in replies:
        frame = json.loads(raw)
        assert frame[0] == 4 and frame[2] == "FormationViolation", frame
    assert tx_store.get_transaction(central.conn, tid)["status"] == "Active"
