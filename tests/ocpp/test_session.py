"""A full charging session driven by the `ocpp` package's ChargePoint over a real websocket."""

from __future__ import annotations

import json
import time

from actors.ocpp import frames
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store

from tests.conftest import wait_until_async


class RecordingConnection:
    """Wraps the client connection to keep every frame the gateway sent."""

    def __init__(self, inner) -> None:
        self.inner = inner
        self.received: list[str] = []
        self.sent: list[str] = []

    async def send(self, text: str) -> None:
        self.sent.append(text)
        await self.inner.send(text)

    async def recv(self) -> str:
        text = await self.inner.recv()
        self.received.append(text)
        return text

    async def close(self) -> None:
        await self.inner.close()


async def test_full_session_every_reply_schema_valid(central):
    cp = await central.charger("CP1", boot=False)
    recorder = RecordingConnection(cp._connection)
    cp._connection = recorder

    boot = await cp.boot(serial="SN-77")
    assert boot.status == "Accepted" and boot.interval == 300
    await cp.status(0, "Available")
    await cp.status(1, "Available")
    assert (await cp.authorize("ALICE")).id_tag_info["status"] == "Accepted"
    await cp.status(1, "Preparing")
    start_time = time.time() - 60
    transaction_id = await cp.start_transaction(1, "ALICE", meter_start=1000, timestamp=start_time)
    await cp.status(1, "Charging")
    await cp.meter(1, transaction_id, 1500, 7200.0, timestamp=start_time + 30)
    await cp.meter(1, transaction_id, 2000, 7100.0, timestamp=start_time + 45)
    await cp.stop_transaction(transaction_id, 2100, reason="EVDisconnected", timestamp=start_time + 50, id_tag="ALICE")
    await cp.status(1, "Available")

    # every frame the gateway sent back is a CALLRESULT that passes the 1.6 response schema
    calls = {json.loads(t)[1]: json.loads(t)[2] for t in recorder.sent}
    assert len(recorder.received) == len(recorder.sent) == 11
    for text in recorder.received:
        kind, unique_id, payload = json.loads(text)
        assert kind == frames.CALLRESULT
        frames.validate(calls[unique_id], payload, response=True)

    tx = tx_store.transaction_with_meter_values(central.conn, transaction_id)
    assert tx["status"] == "Finished" and tx["energy_wh"] == 1100 and tx["stop_reason"] == "EVDisconnected"
    assert [m["value"] for m in tx["meter_values"] if m["measurand"] == "Energy.Active.Import.Register"] == ["1500", "2000"]
    charger = charger_store.get_charger(central.conn, "CP1")
    assert charger["serial_number"] == "SN-77" and charger["connected"] and charger["registration_status"] == "Accepted"
    assert charger_store.list_connectors(central.conn, "CP1")[1]["status"] == "Available"
    history = [h["status"] for h in charger_store.status_history(central.conn, "CP1")]
    assert history[:4] == ["Available", "Charging", "Preparing", "Available"]
    exports = tx_store.pending_exports(central.conn, "CP1")
    assert [e["record"]["values"].get("session_energy_wh") for e in exports][-1] == 1100


async def test_replayed_start_gets_the_same_transaction_id(central):
    cp = await central.charger("CP1")
    stamp = time.time() - 10
    first = await cp.start_transaction(1, "TAG", meter_start=5, timestamp=stamp)
    again = await cp.start_transaction(1, "TAG", meter_start=5, timestamp=stamp)
    assert again == first
    assert len(tx_store.list_transactions(central.conn, charger="CP1")) == 1


async def test_stop_for_unknown_transaction_is_accepted_and_stores_no_session(central):
    cp = await central.charger("CP1")
    reply = await cp.stop_transaction(424242, 900, reason="PowerLoss")
    assert reply is not None
    assert tx_store.get_transaction(central.conn, 424242) is None


async def test_requests_before_boot_get_security_error_then_work_after_accepted(central):
    cp = await central.charger("CP9", boot=False)
    try:
        await cp.call(__import__("ocpp.v16.call", fromlist=["Heartbeat"]).Heartbeat(), suppress=False)
    except Exception as exc:  # noqa: BLE001 - the ocpp package raises its SecurityError class
        assert type(exc).__name__ == "SecurityError"
    else:
        raise AssertionError("a Heartbeat before BootNotification must be refused")
    await cp.boot()
    assert (await cp.heartbeat()).current_time


async def test_pending_charger_is_told_to_retry_and_refused_until_accepted(central):
    charger_store.add_charger(central.conn, "CPP", registration_status="Pending")
    cp = await central.charger("CPP", boot=False)
    reply = await cp.boot()
    assert reply.status == "Pending" and reply.interval == 60
    assert await cp.call(__import__("ocpp.v16.call", fromlist=["Heartbeat"]).Heartbeat()) is None  # CALLERROR, suppressed


async def test_live_updates_are_pushed_for_each_meter_sample(central):
    updates = []
    central.backend.live_listeners.append(updates.append)
    cp = await central.charger("CP1")
    tid = await cp.start_transaction(1, "T", meter_start=0)
    await cp.meter(1, tid, 250, 3000.0)
    await wait_until_async(lambda: any(getattr(u, "energy_wh", None) == 250 for u in updates))
    live = [u for u in updates if getattr(u, "transaction_id", None) == tid][-1]
    assert live.power_w == 3000.0 and live.session_energy_wh == 250


async def test_pending_charger_approved_by_the_operator_is_accepted_on_its_next_boot(central):
    charger_store.add_charger(central.conn, "CPA", registration_status="Pending")
    cp = await central.charger("CPA", boot=False)
    assert (await cp.boot()).status == "Pending"
    assert charger_store.set_registration_status(central.conn, "CPA", "Accepted")
    assert (await cp.boot()).status == "Accepted"
    assert (await cp.heartbeat()).current_time


async def test_rejected_charger_is_told_so_and_refused(central):
    from ocpp.v16 import call

    charger_store.add_charger(central.conn, "CPR", registration_status="Rejected")
    cp = await central.charger("CPR", boot=False)
    reply = await cp.boot()
    assert reply.status == "Rejected" and reply.interval == 60
    try:
        await cp.call(call.StatusNotification(connector_id=1, error_code="NoError", status="Available"), suppress=False)
    except Exception as exc:  # noqa: BLE001 - the ocpp package raises its SecurityError class
        assert type(exc).__name__ == "SecurityError"
    else:
        raise AssertionError("a Rejected charger must not be served")
    assert charger_store.list_connectors(central.conn, "CPR") == []
