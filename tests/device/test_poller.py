"""The endpoint poll loop with scripted answers: sanity flags, shared endpoints, broken framing."""

from __future__ import annotations

from actors.device.decode import poll_plan
from actors.device.harvester import Backoff, EndpointPoller
from actors.device.link import NoResponseError
from actors.device.profile import load_profile
from actors.harvest.messages import Gap
from simulators.inverter.server import make_unit
from tests.device.conftest import MIDDAY, ScriptedLink


def _answers(profile: str, unit: int) -> dict:
    """A unit's register image from the simulator model, as scripted answers for every block."""
    sim_unit = make_unit(profile, unit)
    regs = sim_unit.registers(MIDDAY)
    plan = poll_plan(load_profile(profile))
    out = {}
    for block in plan.blocks + plan.identity_blocks:
        out[(unit, block.function, block.start)] = [regs[block.function].get(a, 0) for a in range(block.start, block.end)]
    return out


def _settings(device_id: str, unit: int, profile: str = "huawei_sun2000") -> dict:
    return {"id": device_id, "profile": profile, "host": "192.0.2.1", "unit_id": unit, "poll_interval": 10.0}


def test_out_of_range_values_are_flagged_and_not_published():
    answers = _answers("huawei_sun2000", 1)
    answers[(1, 3, 32085)] = [0xFFFF]  # grid frequency 655.35 Hz
    poller = EndpointPoller([_settings("inv1", 1)], ScriptedLink(answers))
    [outcome] = poller.run_due()
    assert outcome.reading.flags == ("grid_frequency_hz",)
    assert outcome.reading.values["grid_frequency_hz"] == 655.35  # kept for diagnosis ...
    assert "grid_frequency_hz" not in poller.devices[0].state.values  # ... but not shown as truth
    assert poller.devices[0].state.values["ac_power_w"] > 0


def test_one_failing_unit_does_not_affect_its_neighbour_on_the_same_link():
    answers = {**_answers("huawei_sun2000", 1), **_answers("huawei_sun2000", 2)}
    del answers[(2, 3, 32080)]  # unit 2 answers "illegal address" for its power block
    link = ScriptedLink(answers)
    poller = EndpointPoller([_settings("inv1", 1), _settings("inv2", 2)], link)
    first, second = poller.run_due()
    assert first.reading is not None and first.error is None and "block_errors" not in first.reading.raw
    # unit 2's other blocks still make a reading: only the refused block's values are null
    assert second.reading is not None and second.reading.raw["block_errors"] == {"3:32080": "exception code 2 for unit 2 fc3 32080+2"}
    assert second.reading.values["ac_power_w"] is None and second.reading.values["energy_total_wh"] is not None
    assert poller.devices[0].state.online and poller.devices[1].state.online  # it answered: it is up
    assert poller.devices[1].state.failing_blocks and not poller.devices[0].state.failing_blocks
    assert poller.connected and link.connects == 1


def test_a_garbled_answer_reopens_the_connection_without_backoff():
    answers = _answers("huawei_sun2000", 1)
    garbled = {"left": 1}

    def once_garbage():
        if garbled["left"]:
            garbled["left"] -= 1
            return NoResponseError("unit 1: ModbusIOException: garbage")
        return answers[(1, 3, 32064)]

    link = ScriptedLink({**answers, (1, 3, 32064): once_garbage})
    backoff = Backoff(initial=5.0, cap=60.0, jitter=0.0)
    poller = EndpointPoller([{**_settings("inv1", 1), "poll_interval": 0.001}], link, backoff=backoff)
    [bad] = poller.run_due()
    assert bad.error.startswith("no_response") and bad.reconnect
    assert not poller.connected and poller.reconnect_at <= poller.clock.monotonic()
    while not (outcomes := poller.run_due()):
        pass
    assert outcomes[0].reading is not None
    assert link.connects == 2 and backoff.failures == 0
    # The identity is read again on the new connection (the device may have changed).
    identity_reads = [r for r in link.requests if r[2] == 30000]
    assert len(identity_reads) == 2


class _ManualClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def monotonic(self) -> float:
        return self.t

    def wall(self) -> float:
        return MIDDAY + self.t


def test_slow_answers_defer_the_next_unit_instead_of_blocking_the_actor():
    clock = _ManualClock()
    answers = {**_answers("huawei_sun2000", 1), **_answers("huawei_sun2000", 2)}
    power = answers[(1, 3, 32064)]

    def slow():
        clock.t += 1.5  # this unit takes 1.5 s to answer
        return power

    answers[(1, 3, 32064)] = slow
    poller = EndpointPoller([_settings("inv1", 1), _settings("inv2", 2)], ScriptedLink(answers), clock=clock)
    first = poller.run_due()
    assert [o.device_id for o in first] == ["inv1"]  # inv2 waits for the next turn ...
    assert poller.next_wakeup() <= clock.monotonic()  # ... which is due at once
    second = poller.run_due()
    assert [o.device_id for o in second] == ["inv2"] and second[0].reading is not None
    assert second[0].gaps == []  # still within its slot: nothing missed


def test_slots_missed_while_backing_off_after_a_refused_connection_are_offline_not_late():
    clock = _ManualClock()
    link = ScriptedLink(_answers("huawei_sun2000", 1))
    poller = EndpointPoller([{**_settings("inv1", 1), "poll_interval": 1.0}], link, clock=clock, backoff=Backoff(initial=5.0, cap=60.0, jitter=0.0))
    [first] = poller.run_due()
    assert first.reading is not None
    link.down = True  # connection refused from now on
    clock.t += 1.0
    [refused] = poller.run_due()
    assert refused.error.startswith("offline") and not poller.connected
    assert poller.next_wakeup() == clock.t + 5.0  # backing off: no attempt for 5 s, slots pass unpolled
    link.down = False
    clock.t = poller.next_wakeup()
    [back] = poller.run_due()
    assert back.reading is not None
    # One gap, one reason: the refused slot and the four that passed during the backoff.
    assert back.gaps == [Gap("inv1", MIDDAY + 1001.0, MIDDAY + 1006.0, "offline", 5)]
