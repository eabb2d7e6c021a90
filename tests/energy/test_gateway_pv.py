"""End to end in pv mode: a real Modbus meter polled by a real device actor, a car on a real OCPP websocket.

The meter at the house connection (a Modbus TCP simulator of an Eastron SDM630) shows
the PV export minus what the simulated car draws, like a real one. The energy manager
reads it where the device actor publishes it, enables the car once enough surplus
energy gathered, ramps it up to 16 A, follows a cloud down at once, and when its actor
is SIGKILLed the restarted one resumes (the same session, the same count of starts) and
tells the charger its limit again.
"""

from __future__ import annotations

import asyncio
import os
import signal

from actors.api.actor import api_child_spec
from actors.device.specs import devices_part
from actors.energy.specs import energy_children
from actors.harvest.specs import harvest_child_specs
from actors.ocpp.specs import ocpp_child_specs
from simulators.charger.demo_site import CarAwareMeter
from simulators.charger.scenarios import Options, ScenarioResult, Session, plug_in_and_charge
from simulators.inverter.server import InverterSimulator
from supervisor.embedded import start_root
from supervisor.spec import Heartbeat, SupervisorSpec
from tests.api.test_charger_commands import LoopThread, http_ok, port_open
from tests.conftest import free_port, wait_until
from tests.energy.test_gateway import api

CHARGER = "CP-PV"
NOON = 12 * 3600.0


def energy_record(api_port: int) -> dict:
    return next((r for r in api(api_port, "GET", "/api/actors")[1]["actors"] if r["name"] == "energy"), {})


def test_pv_mode_follows_the_meter_through_a_cloud_and_an_actor_restart(multiproc_system, tmp_path):
    loop = LoopThread()
    session = Session(Options(url="", samples=100_000, interval=0.5))
    meter = InverterSimulator("eastron_sdm630", port=0, clock=lambda: NOON, peak_w=20_000.0)
    unit = meter.units[1]
    unit.model = model = CarAwareMeter(unit.model, lambda: session.cp.car_power_w() if session.cp is not None else 0.0,
                                       lambda: session.cp.car.phases_used if session.cp is not None and session.cp.car else 1)
    meter.start()
    data_dir = tmp_path / "data"
    api_port, ocpp_port = free_port(), free_port()
    config = {"data_dir": str(data_dir), "api_host": "127.0.0.1", "api_port": api_port, "ocpp_host": "127.0.0.1", "ocpp_port": ocpp_port,
              "ocpp_unknown_chargers": "accept", "ocpp_call_timeout": 5.0, "energy_interval": 1.0,
              "devices": [{"id": "grid", "profile": "eastron_sdm630", "host": "127.0.0.1", "port": meter.port, "unit_id": 1, "poll_interval": 1.0}],
              "loadpoints": [{"id": "carport", "charger": CHARGER, "grid_meter": "grid", "mode": "pv", "phases": "1"}]}
    spec = SupervisorSpec(children=(*harvest_child_specs(config), *devices_part(config), *ocpp_child_specs(config), *energy_children(config),
                                    api_child_spec(config)), heartbeat=Heartbeat(0.5, 5.0))
    stop = asyncio.Event()
    charging = None
    try:
        start_root(multiproc_system, spec)
        wait_until(lambda: http_ok(api_port, "/api/hello"), timeout=15, what="the API serving")
        wait_until(lambda: port_open(ocpp_port), timeout=15, what="the OCPP listener")
        session.options.url = f"ws://127.0.0.1:{ocpp_port}/ocpp/{CHARGER}"

        async def plug_in():
            cp = await session.open()
            assert (await cp.boot(model="SimCar")).status == "Accepted"
            await cp.status(1, "Available")
            return cp

        cp = loop.run(plug_in())
        charging = asyncio.run_coroutine_threadsafe(plug_in_and_charge(cp, session.options, ScenarioResult("car", CHARGER), stop), loop.loop)

        # 20 kW of PV at noon, 1.2 kW of house: about 18 kW exported; enabled once 23 Wh above 1380 W gathered, then +1 A a second
        wait_until(lambda: cp.effective_limit(1) == (16.0, 1), timeout=30, what="the car ramped up to 16 A on one phase")
        limits = [float(p["cs_charging_profiles"]["charging_schedule"]["charging_schedule_period"][0]["limit"]) for p in cp.received["SetChargingProfile"]]
        # paused until enabled, then from the 6 A minimum up by 1 A a loop (0.3 A/s, whole amps); a loop whose limit
        # could not be sent while the previous one was in flight (a slow machine) folds into the next, so steps may be 2 A
        steps = [b - a for a, b in zip(limits[1:-1], limits[2:], strict=True)]
        assert limits[:2] == [0.0, 7.0] and limits[-1] == 16.0 and all(1.0 <= s <= 2.0 for s in steps), limits
        wait_until(lambda: cp.car_power_w() == 16 * 230.0, timeout=10, what="the car drawing 16 A")
        view = api(api_port, "GET", "/api/loadpoints/carport")[1]
        assert view["decision"]["enabled"] and view["starts"] == 1 and view["decision"]["reason"].startswith("mode pv: surplus ")

        # a cloud: 2.5 kW of surplus left, 10 A on one phase, at once (no ramp down)
        model.peak_w = (2500.0 + model.house_load_w) / 0.97
        wait_until(lambda: cp.effective_limit(1) == (10.0, 1), timeout=15, what="the limit following the cloud down")

        wait_until(lambda: 2300 <= (api(api_port, "GET", "/api/loadpoints/carport")[1]["decision"]["surplus_w"] or 0) <= 2700, timeout=15,
                   what="the meter's readings from after the change")  # the device actor publishes every few seconds

        # SIGKILL the energy actor: the restarted one carries on with the same session and tells the charger again
        sent, before = len(cp.received["SetChargingProfile"]), energy_record(api_port)
        os.kill(before["pid"], signal.SIGKILL)
        wait_until(lambda: (r := energy_record(api_port)).get("restarts") == before["restarts"] + 1 and r.get("state") == "running", timeout=20,
                   what="the energy actor back")
        wait_until(lambda: len(cp.received["SetChargingProfile"]) > sent, timeout=15, what="the limit sent again after the restart")
        assert cp.effective_limit(1) == (10.0, 1)
        view = wait_until(lambda: (v := api(api_port, "GET", "/api/loadpoints/carport")[1])["accepted"] and v, timeout=10, what="accepted again")
        assert view["starts"] == 1 and view["stops"] == 0 and view["decision"]["limit_a"] == 10.0
    finally:
        loop.loop.call_soon_threadsafe(stop.set)
        if charging is not None:
            charging.result(20)
        loop.run(session.close())
        loop.stop()
        meter.stop()
