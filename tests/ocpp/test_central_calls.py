"""Central-initiated conversations, each waited on by events (the charger's record of
what arrived, and the outcome future), never by fixed sleeps."""

from __future__ import annotations

import asyncio
import json
import time

import aiohttp

from actors.ocpp.messages import (
    CancelReservation,
    ChangeAvailability,
    ChangeConfiguration,
    ClearCache,
    ClearChargingProfile,
    GetCompositeSchedule,
    GetConfiguration,
    RemoteStartTransaction,
    RemoteStopTransaction,
    Reset,
    ReserveNow,
    SetChargingProfile,
    TriggerMessage,
    UnlockConnector,
)
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store

from tests.conftest import wait_until_async

PROFILE = {
    "chargingProfileId": 1, "stackLevel": 0, "chargingProfilePurpose": "TxDefaultProfile", "chargingProfileKind": "Absolute",
    "chargingSchedule": {"chargingRateUnit": "W", "chargingSchedulePeriod": [{"startPeriod": 0, "limit": 3700.0}]},
}


async def test_remote_start_then_remote_stop(central):
    cp = await central.charger("CP1")
    outcome = await central.backend.request("CP1", RemoteStartTransaction(id_tag="ALICE", connector_id=1))
    assert (outcome.outcome, outcome.payload) == ("result", {"status": "Accepted"})
    assert (await cp.wait_for("RemoteStartTransaction"))["id_tag"] == "ALICE"
    active = await wait_until_async(lambda: tx_store.active_transactions(central.conn, "CP1"))
    transaction_id = active[0]["transaction_id"]
    assert active[0]["id_tag"] == "ALICE"
    await wait_until_async(lambda: transaction_id in cp.transactions.values())  # the charger has its reply too

    outcome = await central.backend.request("CP1", RemoteStopTransaction(transaction_id=transaction_id))
    assert outcome.payload == {"status": "Accepted"}
    await wait_until_async(lambda: tx_store.get_transaction(central.conn, transaction_id)["status"] == "Finished")
    assert tx_store.get_transaction(central.conn, transaction_id)["stop_reason"] == "Remote"


async def test_reserve_now_and_cancel_reservation_track_the_reservation(central):
    cp = await central.charger("CP1")
    outcome = await central.backend.request("CP1", ReserveNow(connector_id=1, id_tag="BOB", expiry=time.time() + 900))
    assert outcome.outcome == "result" and outcome.payload["status"] == "Accepted"
    reservation_id = outcome.payload["reservationId"]
    assert (await cp.wait_for("ReserveNow"))["reservation_id"] == reservation_id
    assert tx_store.get_reservation(central.conn, reservation_id)["status"] == "Accepted"

    outcome = await central.backend.request("CP1", CancelReservation(reservation_id=reservation_id))
    assert outcome.payload == {"status": "Accepted"}
    assert tx_store.get_reservation(central.conn, reservation_id)["status"] == "Cancelled"
    outcome = await central.backend.request("CP1", CancelReservation(reservation_id=reservation_id))
    assert outcome.payload == {"status": "Rejected"}


async def test_change_availability_trigger_message_and_charging_profiles(central):
    cp = await central.charger("CP1")
    outcome = await central.backend.request("CP1", ChangeAvailability(connector_id=1, type="Inoperative"))
    assert outcome.payload == {"status": "Accepted"}
    assert (await cp.wait_for("ChangeAvailability"))["type"] == "Inoperative"

    outcome = await central.backend.request("CP1", TriggerMessage(requested_message="StatusNotification", connector_id=1))
    assert outcome.payload == {"status": "Accepted"}
    await wait_until_async(lambda: charger_store.list_connectors(central.conn, "CP1"))
    assert charger_store.list_connectors(central.conn, "CP1")[0]["status"] == "Available"

    outcome = await central.backend.request("CP1", SetChargingProfile(connector_id=1, cs_charging_profiles=PROFILE))
    assert outcome.payload == {"status": "Accepted"}
    received = await cp.wait_for("SetChargingProfile")
    assert received["cs_charging_profiles"]["charging_schedule"]["charging_schedule_period"][0]["limit"] == 3700.0

    outcome = await central.backend.request("CP1", GetCompositeSchedule(connector_id=1, duration=3600, charging_rate_unit="W"))
    assert outcome.outcome == "result" and outcome.payload["chargingSchedule"]["duration"] == 3600
    outcome = await central.backend.request("CP1", ClearChargingProfile(id=1))
    assert outcome.payload == {"status": "Accepted"}


async def test_configuration_reset_unlock_and_cache(central):
    await central.charger("CP1")
    outcome = await central.backend.request("CP1", GetConfiguration(key=("HeartbeatInterval", "Nope")))
    assert outcome.payload["configurationKey"][0]["value"] == "300" and outcome.payload["unknownKey"] == ["Nope"]
    assert (await central.backend.request("CP1", ChangeConfiguration(key="HeartbeatInterval", value="60"))).payload == {"status": "Accepted"}
    assert (await central.backend.request("CP1", ChangeConfiguration(key="Bogus", value="1"))).payload == {"status": "NotSupported"}
    assert (await central.backend.request("CP1", ClearCache())).payload == {"status": "Accepted"}
    assert (await central.backend.request("CP1", UnlockConnector(connector_id=1))).payload == {"status": "Unlocked"}
    assert (await central.backend.request("CP1", Reset(type="Soft"))).payload == {"status": "Accepted"}


async def test_invalid_request_is_refused_before_sending(central):
    cp = await central.charger("CP1")
    outcome = await central.backend.request("CP1", ChangeAvailability(connector_id=1, type="Sideways"))  # type: ignore[arg-type]
    assert outcome.outcome == "invalid_request" and "Sideways" in outcome.description
    assert cp.received["ChangeAvailability"] == []


async def test_offline_charger_is_reported_at_once(central):
    outcome = await central.backend.request("NOBODY", Reset(type="Hard"))
    assert outcome.outcome == "offline"


async def test_silent_charger_times_out_and_queue_is_bounded(central):
    """A charger that never answers: one call outstanding, the rest queued up to the limit."""
    async with aiohttp.ClientSession() as session:
        async with session.ws_connect(central.url("MUTE"), protocols=("ocpp1.6",)) as ws:
            await ws.send_str(json.dumps([2, "b1", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
            assert json.loads((await ws.receive()).data)[0] == 3
            protocol = central.backend.protocol("MUTE")
            protocol.calls.limit, protocol.calls.timeout = 2, 0.3
            pending = [asyncio.create_task(central.backend.request("MUTE", Reset(type="Soft"))) for _ in range(4)]
            first_call = json.loads((await ws.receive()).data)
            assert first_call[0] == 2 and first_call[2] == "Reset"
            outcomes = [await p for p in pending]
            assert [o.outcome for o in outcomes].count("queue_full") == 1
            assert outcomes[0].outcome == "timeout"
            # after a timeout the next queued call goes out: still exactly one at a time
            second_call = json.loads((await ws.receive()).data)
            assert second_call[1] != first_call[1]
