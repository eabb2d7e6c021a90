"""The energy actor's shell, message by message (no actor system, a real SQLite store).

What a charger sees from the energy manager: its stack level asked first, then the
limit; a Rejected profile followed by the next variant in the documented order, the
accepted one remembered for that charger model (a restarted actor or the next charger of
the model starts with it); a model that refuses 0 A held at the minimum, never stopped
with RemoteStop; our profile cleared when the loadpoint leaves smart charging; the
composite schedule read back after an accepted limit.
"""

from __future__ import annotations

import time

from actors.energy.control import ControlState
from storage import loadpoints as store
from storage.db import connect
from tests.energy.shell import Shell

LOADPOINT = {"id": "lp", "charger": "CP", "grid_meter": "grid", "phases": "1", "mode": "off"}


def test_the_stack_level_is_asked_first_and_a_rejected_profile_falls_back_and_is_remembered(tmp_path):
    shell = Shell(tmp_path, LOADPOINT)
    tx = shell.charger_plugged_in()
    shell.meter(-3000.0, time.time())
    assert shell.requests("SetChargingProfile") == []  # no charger actor found yet
    shell.found(stack_level=8)
    first = shell.last("SetChargingProfile")
    assert first.request.cs_charging_profiles["stackLevel"] == 8 and shell.limits() == [0.0]
    shell.answer(first, {"status": "Rejected"})
    second = shell.last("SetChargingProfile")
    assert (second.request.cs_charging_profiles["stackLevel"], second.request.cs_charging_profiles["chargingProfileKind"]) == (0, "Absolute")
    shell.answer(second, {"status": "Rejected"})
    third = shell.last("SetChargingProfile")
    assert third.request.cs_charging_profiles["chargingProfileKind"] == "Relative" and "startSchedule" not in third.request.cs_charging_profiles["chargingSchedule"]
    shell.answer(third, {"status": "Rejected"})
    fourth = shell.last("SetChargingProfile")
    assert fourth.request.cs_charging_profiles["chargingSchedule"]["chargingRateUnit"] == "W"
    shell.answer(fourth, {"status": "Rejected"})
    fifth = shell.last("SetChargingProfile")
    assert (fifth.request.cs_charging_profiles["chargingProfilePurpose"], fifth.request.cs_charging_profiles["transactionId"]) == ("TxProfile", tx)
    shell.answer(fifth, {"status": "Accepted"})
    assert shell.last("GetCompositeSchedule").request.payload() == {"connectorId": 1, "duration": 3600, "chargingRateUnit": "A"}
    view = shell.actor.view(shell.actor.loadpoints[0])
    assert view["accepted"] and view["limit_sent"]["variant"] == "tx_profile" and view["limit_sent"]["answer"] == "Accepted"
    conn = connect(tmp_path / "egw.db")
    assert store.variant_for(conn, "egw-sim/SimCar") == ("tx_profile", False)
    conn.close()

    # a restarted actor starts where the model's chargers were accepted: one profile, no refusals
    shell.sent.clear()
    shell.start()
    shell.meter(-3000.0, time.time())
    shell.found(stack_level=8)
    assert [m.request.cs_charging_profiles["chargingProfilePurpose"] for m in shell.requests("SetChargingProfile")] == ["TxProfile"]


def test_a_model_that_refuses_zero_amps_is_held_at_the_minimum_never_remote_stopped(tmp_path):
    shell = Shell(tmp_path, LOADPOINT)
    shell.charger_plugged_in()
    shell.meter(-3000.0, time.time())
    shell.found()
    while len(shell.requests("SetChargingProfile")) < 5:
        shell.answer(shell.last("SetChargingProfile"), {"status": "Rejected"})
    shell.answer(shell.last("SetChargingProfile"), {"status": "Rejected"})  # every variant refused 0 A
    assert shell.limits()[-1] == 6.0
    shell.answer(shell.last("SetChargingProfile"), {"status": "Accepted"})
    decision = shell.actor.runtime["lp"].decision
    assert decision.limit_a == 6.0 and decision.reason == "mode off: 0 A limit; this charger model refuses 0 A, so it is held at the minimum 6 A"
    assert not shell.requests("RemoteStopTransaction")
    conn = connect(tmp_path / "egw.db")
    assert store.variant_for(conn, "egw-sim/SimCar")[1] is True
    conn.close()


def test_leaving_smart_charging_clears_our_profile(tmp_path):
    shell = Shell(tmp_path, {**LOADPOINT, "mode": "pv"})
    shell.charger_plugged_in()
    shell.meter(-3000.0, time.time())
    shell.found()
    shell.answer(shell.last("SetChargingProfile"), {"status": "Accepted"})
    conn = connect(tmp_path / "egw.db")
    store.set_mode(conn, "lp", "now")  # what PUT /api/loadpoints/lp/mode stores
    conn.close()
    from actors.energy.messages import LoadpointModeSet, SetLoadpointMode

    shell.actor.receiveMsg_SetLoadpointMode(SetLoadpointMode("lp"), "api")
    clear = shell.last("ClearChargingProfile")
    assert clear.request.payload() == {"id": 7101, "connectorId": 1}
    reply = next(msg for _, msg in reversed(shell.sent) if isinstance(msg, LoadpointModeSet))
    assert reply.view["mode"] == "now" and reply.view["decision"]["managed"] is False and reply.view["mode_source"] == "rest"
    shell.answer(clear, {"status": "Accepted"})
    assert shell.actor.view(shell.actor.loadpoints[0])["accepted"]


def test_the_meter_reading_is_paired_with_the_car_power_of_its_own_moment(tmp_path):
    shell = Shell(tmp_path, {**LOADPOINT, "mode": "pv"})
    shell.charger_plugged_in()
    conn = connect(tmp_path / "egw.db")
    store.save_state(conn, "lp", ControlState(enabled=True, current_a=16.0, phases=1, plugged=True, starts=1).to_dict())
    conn.close()
    shell.start()
    now = time.time()
    # just restarted, no power sample from the car yet: a charging car keeps its limit rather than a guess at the surplus
    shell.meter(1180.0, now - 5)
    decision = shell.actor.runtime["lp"].decision
    assert (decision.limit_a, decision.reason) == (16.0, "mode pv: holding 16 A until the meter and the car's power are known for one moment")
    shell.car(3680.0, now - 10)  # 16 A until a cloud...
    shell.car(2300.0, now - 2)  # ...made it 10 A
    # the meter was read at now − 5: the car still drew 3680 W then; 3680 − 1180 = 2500 W of surplus, 10 A, not 2300 − 1180 = 1120 W
    shell.meter(1180.0, now - 5)
    decision = shell.actor.runtime["lp"].decision
    assert (decision.surplus_w, decision.limit_a) == (2500.0, 10.0)
    assert shell.actor.runtime["lp"].state.starts == 1  # resumed from the stored state: the same session


def test_a_charger_not_yet_accepted_is_asked_its_stack_level_again_before_any_limit(tmp_path):
    from datetime import timedelta

    from thespian.actors import WakeupMessage

    from actors.energy.actor import TICK
    from supervisor.messages import LookupResult

    shell = Shell(tmp_path, LOADPOINT)
    shell.charger_plugged_in()
    shell.meter(-3000.0, time.time())
    shell.actor.receiveMsg_LookupResult(LookupResult("chargers/CP", "address-of-CP"), "root")
    shell.answer(shell.last("GetConfiguration"), {}, outcome="not_accepted")  # its BootNotification was not answered yet
    assert shell.requests("SetChargingProfile") == [] and len(shell.requests("GetConfiguration")) == 1
    shell.actor.receiveMsg_WakeupMessage(WakeupMessage(timedelta(seconds=10), TICK), "self")
    assert len(shell.requests("GetConfiguration")) == 2
    shell.answer(shell.last("GetConfiguration"), {"configurationKey": [{"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": "5"}]})
    assert shell.last("SetChargingProfile").request.cs_charging_profiles["stackLevel"] == 5


def test_before_the_ocpp_listener_created_its_tables_no_charger_is_known(tmp_path):
    shell = Shell(tmp_path, {**LOADPOINT, "mode": "pv"})  # a fresh database: only the energy manager's own tables exist
    shell.meter(-3000.0, time.time())
    decision = shell.actor.runtime["lp"].decision
    assert (decision.limit_a, decision.reason) == (0.0, "mode pv: no car plugged in")
    conn = connect(tmp_path / "egw.db")
    assert conn.execute("SELECT name FROM sqlite_master WHERE name = 'chargers'").fetchone() is None  # never migrated by this actor
    conn.close()


def test_two_loadpoints_on_one_meter_share_the_surplus_instead_of_each_taking_all_of_it(tmp_path):
    garage = {"id": "garage", "charger": "CP1", "grid_meter": "grid", "phases": "1", "mode": "pv"}
    street = {"id": "street", "charger": "CP2", "grid_meter": "grid", "phases": "1", "mode": "pv"}
    shell = Shell(tmp_path, [garage, street])
    conn = connect(tmp_path / "egw.db")
    for lp in ("garage", "street"):
        store.save_state(conn, lp, ControlState(enabled=True, current_a=6.0, phases=1, plugged=True, starts=1).to_dict())
    conn.close()
    for cp in ("CP1", "CP2"):
        shell.charger_plugged_in(cp)
    shell.start()
    now = time.time()
    for cp in ("CP1", "CP2"):
        shell.car(1380.0, now - 3, cp)
    # both at 6 A, 300 W still exported: the first may take one more amp (230 W), the second then sees 70 W, not 300 W
    shell.meter(-300.0, now - 1)
    decisions = {lp: shell.actor.runtime[lp].decision for lp in ("garage", "street")}
    assert (decisions["garage"].surplus_w, decisions["garage"].limit_a) == (1680.0, 7.0)
    assert (decisions["street"].surplus_w, decisions["street"].limit_a) == (1450.0, 6.0)


def test_a_charger_whose_clock_runs_an_hour_ahead_is_still_followed(tmp_path):
    shell = Shell(tmp_path, {**LOADPOINT, "mode": "pv"})
    shell.charger_plugged_in()
    conn = connect(tmp_path / "egw.db")
    store.save_state(conn, "lp", ControlState(enabled=True, current_a=16.0, phases=1, plugged=True, starts=1).to_dict())
    conn.close()
    shell.start()
    now = time.time()
    shell.car(2300.0, now + 3600)  # its MeterValues say an hour from now
    shell.meter(1180.0, now + 1)  # read a second after the sample arrived: they belong together
    decision = shell.actor.runtime["lp"].decision
    assert (decision.surplus_w, decision.limit_a) == (1120.0, 6.0)  # 2300 − 1180 W: not held at 16 A
