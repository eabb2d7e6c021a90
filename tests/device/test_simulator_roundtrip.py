"""Every shipped profile against the simulator serving it, over real Modbus TCP on loopback."""

from __future__ import annotations

import pytest

from actors.device.codec import lsb
from actors.device.quantities import unit_factor
from actors.device.poller import EndpointPoller
from actors.device.link import ModbusLink
from actors.device.profile import profile_names
from simulators.inverter import InverterSimulator
from tests.device.conftest import MIDDAY


def _settings(profile: str, port: int, unit: int, device_id: str = "dev") -> dict:
    return {"id": device_id, "profile": profile, "host": "127.0.0.1", "port": port, "unit_id": unit, "poll_interval": 1.0, "timeout": 1.0}


def _tolerance(plan, quantity: str, expected: float, raw_sf: dict) -> float:
    """One LSB of the point; for a summed quantity, one LSB of each point it adds up."""
    total = next((s for s in plan.profile.sums if s.quantity == quantity), None)
    points = [plan.profile.point(n) for n in total.points] if total else [plan.profile.quantity_points()[quantity]]
    step = 0.0
    for point in points:
        sf = raw_sf.get(point.sf) if point.sf else None
        step += lsb(point, sf) * ((unit_factor(quantity, point.unit) or 1.0) if total else 1.0)
    return step if step else abs(expected) * 1e-6 + 1e-9  # float32: its own rounding


@pytest.mark.parametrize("profile", profile_names())
def test_profile_round_trips_against_the_simulator(profile):
    with InverterSimulator(profile, clock=lambda: MIDDAY) as sim:
        unit = next(iter(sim.units))
        settings = _settings(profile, sim.port, unit)
        poller = EndpointPoller([settings], ModbusLink(settings))
        try:
            [outcome] = poller.run_due()
        finally:
            poller.link.close()
        assert outcome.error is None, outcome.error
        reading = outcome.reading
        expected = sim.expected(unit)
        device = poller.devices[0]
        sim_unit = sim.units[unit]
        assert set(reading.values) == set(expected)
        for quantity, value in expected.items():
            if quantity == "status":
                assert reading.values[quantity] == round(value)
                continue
            tol = _tolerance(device.plan, quantity, value, sim_unit.sf_values)
            assert reading.values[quantity] == pytest.approx(value, abs=tol), quantity
        assert reading.flags == ()
        assert device.state.serial and device.state.serial in (sim_unit.serial, str(2_000_000_000 + unit))
        assert reading.raw, "raw registers are kept with the reading"
        assert device.state.polls == 1 and device.state.poll_latency_ms > 0  # shown in status and /metrics


def test_several_unit_ids_share_one_connection():
    with InverterSimulator("huawei_sun2000", units=(1, 2, 3), clock=lambda: MIDDAY) as sim:
        devices = [_settings("huawei_sun2000", sim.port, u, f"inv{u}") for u in (1, 2, 3)]
        poller = EndpointPoller(devices, ModbusLink(devices[0]))
        connects = []
        real_connect = poller.link.connect
        poller.link.connect = lambda: (connects.append(1), real_connect())[1]
        try:
            outcomes = poller.run_due()
        finally:
            poller.link.close()
        assert [o.device_id for o in outcomes] == ["inv1", "inv2", "inv3"]
        assert len(connects) == 1
        powers = [o.reading.values["ac_power_w"] for o in outcomes]
        # The simulated units have different peaks: each answer came from its own unit id.
        assert powers == pytest.approx([sim.expected(u)["ac_power_w"] for u in (1, 2, 3)], abs=1)
        assert len(set(powers)) == 3
