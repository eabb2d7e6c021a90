"""Simulator faults seen through the real Modbus link: drops, late answers, silence, exceptions."""

from __future__ import annotations

from supervisor.backoff import RetryBackoff as Backoff
from actors.device.poller import EndpointPoller
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
        blocks = len(poller.devices[0].plan.blocks)
        sim.faults.exception_code, sim.faults.exception_count = 6, 2 * blocks  # device busy: every block of two polls refused
        outcomes = _collect(poller, lambda o: sum(1 for x in o if x.error) >= 1 and o[-1].reading is not None, "busy then fine")
        busy = [o for o in outcomes if o.error]
        assert all(o.error.startswith("device_error: exception code 6") for o in busy)
        assert poller.connected and poller.devices[0].state.online
    poller.link.close()


def test_a_refused_block_leaves_a_partial_reading_with_the_other_blocks_values():
    with InverterSimulator("huawei_sun2000", clock=lambda: MIDDAY) as sim:
        poller = _poller(sim)
        _collect(poller, lambda o: any(x.reading for x in o), "first reading")
        full = _collect(poller, lambda o: any(x.reading for x in o), "a full reading")
        complete = next(x.reading for x in full if x.reading)
        sim.faults.exception_code, sim.faults.exception_count = 2, 1  # one block refused: illegal data address
        outcomes = _collect(poller, lambda o: any(x.reading and "block_errors" in x.reading.raw for x in o), "a partial reading")
        partial = next(x.reading for x in outcomes if x.reading and "block_errors" in x.reading.raw)
        assert len(partial.raw["block_errors"]) == 1 and "exception code 2" in next(iter(partial.raw["block_errors"].values()))
        missing = [q for q, v in partial.values.items() if v is None and complete.values.get(q) is not None]
        kept = [q for q, v in partial.values.items() if v is not None]
        assert missing and len(kept) > len(missing)  # only the refused block's quantities are null
        assert not any(x.gaps for x in outcomes if x.reading is partial)  # a partial reading is not a gap
        state = poller.devices[0].state
        assert state.online and state.failing_blocks
        _collect(poller, lambda o: any(x.reading and "block_errors" not in x.reading.raw for x in o), "a full reading again")
        assert not poller.devices[0].state.failing_blocks
    poller.link.close()


def test_float32_values_are_their_shortest_decimal():
    from actors.device.codec import shortest_f32
    import struct

    f32 = struct.unpack(">f", struct.pack(">f", 49.98))[0]
    assert f32 != 49.98 and shortest_f32(f32) == 49.98
    assert shortest_f32(struct.unpack(">f", struct.pack(">f", 230.1))[0]) == 230.1
    assert shortest_f32(0.0) == 0.0


def test_a_u32_energy_register_that_wraps_and_then_resets_over_modbus_keeps_exact_totals():
    """Huawei's energy register is U32 in 0.01 kWh: it rolls over at 2**32 * 10 Wh."""
    span = 10 * 2**32
    with InverterSimulator("huawei_sun2000", clock=lambda: MIDDAY) as sim:  # a frozen clock: energy moves only when set
        model = sim.units[1].model
        poller = _poller(sim)
        outcomes: list = []
        for energy_wh in (span - 600, span - 50, 440, 1240, 300, 800):  # a wrap after the second, a reset at 300
            model.energy_wh = energy_wh
            outcomes += _collect(poller, lambda o: any(x.reading for x in o), f"a reading at {energy_wh} Wh")
        readings = [o.reading for o in outcomes if o.reading]
        events = [e for o in outcomes for e in o.events]
    poller.link.close()
    values = [r.values["energy_total_wh"] for r in readings]
    assert values == [span - 600, span - 50, span + 440, span + 1240, 300, 800]
    assert [e.kind for e in events] == ["counter_wrap", "counter_reset"]
    assert all(e.detail["modulus"] == 2**32 and e.detail["span"] == span for e in events)
    assert [r.flags for r in readings] == [(), (), (), (), ("reset:energy_total_wh",), ()]
    # last - first within each counter life (split at the reset event): 1840 Wh, then 500 Wh
    reset_at = readings.index(next(r for r in readings if r.wall_time == events[1].wall_time))
    assert values[reset_at - 1] - values[0] == 1840 and values[-1] - values[reset_at] == 500
