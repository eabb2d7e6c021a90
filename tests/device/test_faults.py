"""Simulator faults seen through the real Modbus link: drops, late answers, silence, exceptions."""

from __future__ import annotations

from actors.device.harvester import Backoff, EndpointPoller
from actors.device.link import ModbusLink
from simulators.inverter import InverterSimulator
from tests.conftest import wait_until
from tests.device.conftest import MIDDAY


def _poller(sim: InverterSimulator, interval: float = 0.02) -> EndpointPoller:
    settings = {"id": "inv1", "profile": sim.profile_name, "host": "127.0.0.1", "port": sim.port, "unit_id": next(iter(sim.units)), "poll_interval": interval, "timeout": 0.3}
    return EndpointPoller([settings], ModbusLink(settings), backoff=Backoff(initial=0.05, cap=0.2, jitter=0.0))


def _collect(poller: EndpointPoller, until, what: str) -> list:
    outcomes: list = []

    def step():
        outcomes.extend(poller.run_due())
        return until(outcomes)

    wait_until(step, timeout=10, interval=0.005, what=what)
    return outcomes


def test_dropped_connection_goes_offline_then_reconnects():
    with InverterSimulator("fronius", clock=lambda: MIDDAY) as sim:
        poller = _poller(sim)
        _collect(poller, lambda o: any(x.reading for x in o), "first reading")
        sim.drop_connections()
        outcomes = _collect(poller, lambda o: any(x.error for x in o) and o[-1].reading is not None, "error then recovery")
        errors = [o.error for o in outcomes if o.error]
        assert errors and all(e.startswith(("offline", "no_response")) for e in errors), errors
        gaps = [g for o in outcomes for g in o.gaps]
        assert gaps and gaps[-1].missed_polls >= 1
        assert poller.devices[0].state.online
    poller.link.close()


def test_late_answers_time_out_and_the_link_is_reopened():
    with InverterSimulator("sungrow", clock=lambda: MIDDAY) as sim:
        poller = _poller(sim)
        _collect(poller, lambda o: any(x.reading for x in o), "first reading")
        sim.faults.delay_s = 0.6  # longer than the 0.3 s timeout
        outcomes = _collect(poller, lambda o: any((x.error or "").startswith("no_response") for x in o), "a timeout")
        sim.faults.delay_s = 0.0
        outcomes += _collect(poller, lambda o: o and o[-1].reading is not None, "recovery")
        assert poller.devices[0].state.errors >= 1
        assert any(g.reason == "no_response" for o in outcomes for g in o.gaps)
        # A late answer to an old request must not be taken for the answer to a new one.
        reading = outcomes[-1].reading
        assert abs(reading.values["ac_power_w"] - sim.expected(1)["ac_power_w"]) <= 1  # one LSB
    poller.link.close()


def test_exception_codes_keep_the_device_online_and_count_errors():
    with InverterSimulator("sma", clock=lambda: MIDDAY) as sim:
        poller = _poller(sim)
        _collect(poller, lambda o: any(x.reading for x in o), "first reading")
        sim.faults.exception_code, sim.faults.exception_count = 6, 2  # device busy, twice
        outcomes = _collect(poller, lambda o: sum(1 for x in o if x.error) >= 1 and o[-1].reading is not None, "busy then fine")
        busy = [o for o in outcomes if o.error]
        assert all(o.error.startswith("device_error: exception code 6") for o in busy)
        assert poller.connected and poller.devices[0].state.online
    poller.link.close()
