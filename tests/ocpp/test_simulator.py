"""Every simulator scenario runs to completion against the central system, and its
command line works as documented."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time

import pytest

from actors.ocpp.messages import RemoteStartTransaction, RemoteStopTransaction, ReserveNow
from simulators.charger.scenarios import Options, run_scenario
from storage import ocpp_transactions as tx_store
from tests.conftest import ROOT

from tests.conftest import wait_until_async


def options(central, cp_id: str, **kw) -> Options:
    return Options(url=central.url(cp_id), interval=0.01, samples=2, wait=5.0, **kw)


@pytest.mark.parametrize("scenario", ["normal", "offline", "reboot"])
async def test_self_driven_scenarios_leave_finished_sessions(central, scenario):
    result = await run_scenario(scenario, options(central, f"SIM-{scenario}"))
    [tx_id] = result.transaction_ids
    tx = tx_store.get_transaction(central.conn, tx_id)
    assert tx["status"] == "Finished" and tx["energy_wh"] > 0
    if scenario == "offline":
        assert tx["start_time"] < time.time() - 3 * 3600 + 60
    if scenario == "reboot":
        assert tx["stop_reason"] == "Reboot"


async def test_remote_scenario_follows_the_central_system(central):
    task = asyncio.create_task(run_scenario("remote", options(central, "SIM-R")))
    await wait_until_async(lambda: central.backend.protocol("SIM-R").accepted and central.backend.protocol("SIM-R").connection_id)
    assert (await central.backend.request("SIM-R", RemoteStartTransaction(id_tag="EVE", connector_id=1))).payload == {"status": "Accepted"}
    [active] = await wait_until_async(lambda: tx_store.active_transactions(central.conn, "SIM-R"))
    await wait_until_async(lambda: tx_store.meter_values(central.conn, transaction_id=active["transaction_id"]))
    assert (await central.backend.request("SIM-R", RemoteStopTransaction(active["transaction_id"]))).payload == {"status": "Accepted"}
    result = await task
    assert result.transaction_ids == [active["transaction_id"]]
    await wait_until_async(lambda: tx_store.get_transaction(central.conn, active["transaction_id"])["status"] == "Finished")


async def test_reservation_scenario_charges_on_the_reservation(central):
    task = asyncio.create_task(run_scenario("reservation", options(central, "SIM-RES")))
    await wait_until_async(lambda: central.backend.protocol("SIM-RES").accepted and central.backend.protocol("SIM-RES").connection_id)
    outcome = await central.backend.request("SIM-RES", ReserveNow(connector_id=1, id_tag="BOB", expiry=time.time() + 600))
    result = await task
    tx = tx_store.get_transaction(central.conn, result.transaction_ids[0])
    assert tx["reservation_id"] == outcome.payload["reservationId"] and tx["id_tag"] == "BOB"
    assert tx_store.get_reservation(central.conn, tx["reservation_id"])["status"] == "Used"


async def test_garbage_scenario_gets_a_callerror_for_every_frame(central):
    result = await run_scenario("garbage", options(central, "SIM-G"))
    codes = [e[2] for e in result.errors]
    assert all(e[0] == 4 for e in result.errors)
    assert codes == ["FormationViolation", "FormationViolation", "FormationViolation", "NotImplemented", "NotSupported",
                     "TypeConstraintViolation", "ProtocolError", "PropertyConstraintViolation", "FormationViolation"]
    assert result.steps[-1] == "heartbeat afterwards: answered"


async def test_command_line_runs_a_scenario(central):
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "simulators.charger", "--url", central.url("CLI1"), "--scenario", "normal", "--interval", "0.01",
        cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, err.decode()
    assert b"stopped at" in out
    assert tx_store.list_transactions(central.conn, charger="CLI1")[0]["status"] == "Finished"
