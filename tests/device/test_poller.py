"""The endpoint poll loop with scripted answers: sanity flags, shared endpoints, broken framing."""

from __future__ import annotations

from actors.device.decode import poll_plan
from supervisor.backoff import RetryBackoff as Backoff
from actors.device.poller import CounterRange, CounterWatch, EndpointPoller, counter_range
from actors.device.link import NoResponseError
from actors.device.profile import Point, load_profile
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


def test_a_slow_answer_pauses_the_poll_for_the_mailbox_and_the_poll_then_goes_on():
    clock = _ManualClock()
    answers = {**_answers("huawei_sun2000", 1), **_answers("huawei_sun2000", 2)}
    power = answers[(1, 3, 32064)]

    def slow():
        clock.t += 1.5  # this unit takes 1.5 s to answer this block
        return power

    answers[(1, 3, 32064)] = slow
    poller = EndpointPoller([_settings("inv1", 1), _settings("inv2", 2)], ScriptedLink(answers), clock=clock)
    outcomes: list = []
    calls = 0
    while not outcomes or poller.busy:
        before = clock.monotonic()
        outcomes += poller.run_due()
        calls += 1
        if clock.monotonic() - before >= 1.5:  # the slow request: the actor gets its mailbox back right after it
            assert poller.busy and poller.next_wakeup() <= clock.monotonic()
    assert calls >= 2
    assert [o.device_id for o in outcomes] == ["inv1", "inv2"] and all(o.reading is not None for o in outcomes)
    assert all(o.gaps == [] for o in outcomes)  # still within their slots: nothing missed


def test_every_request_answered_late_never_holds_the_actor_for_more_than_one_request():
    """A Huawei (9 blocks) answering each request 800 ms late: a poll takes ~7 s, but the
    actor is back at its mailbox after every request (the supervisor's heartbeat gets through)."""
    clock = _ManualClock()
    answers = _answers("huawei_sun2000", 1)

    def late(value):
        def answer():
            clock.t += 0.8
            return value
        return answer

    poller = EndpointPoller([_settings("inv1", 1)], ScriptedLink({k: late(v) for k, v in answers.items()}), clock=clock)
    held, outcomes = [], []
    while not outcomes:
        before = clock.monotonic()
        outcomes += poller.run_due()
        held.append(clock.monotonic() - before)
    assert outcomes[0].reading is not None and outcomes[0].error is None
    assert len(held) >= 9 and max(held) <= 0.8 + 1e-9  # one request per turn, never the whole poll


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


def _energy_stream(raw_counts: list[int]) -> tuple[list, list]:
    """Readings and events of a Huawei whose U32 energy register (0.01 kWh) reads `raw_counts` in turn."""
    clock = _ManualClock()
    answers = _answers("huawei_sun2000", 1)
    block = answers[(1, 3, 32106)]
    counts = iter(raw_counts)

    def energy():
        raw = next(counts)
        return [raw >> 16, raw & 0xFFFF] + block[2:]

    answers[(1, 3, 32106)] = energy
    poller = EndpointPoller([{**_settings("inv1", 1), "poll_interval": 1.0}], ScriptedLink(answers), clock=clock)
    outcomes = []
    for _ in raw_counts:
        outcomes += poller.run_due()
        clock.t += 1.0
    return [o.reading for o in outcomes if o.reading], [e for o in outcomes for e in o.events]


def _receiver_total(readings: list, events: list) -> float:
    """Energy a receiver derives: last - first, with a new counter life started at every reset event."""
    resets = {e.wall_time for e in events if e.kind == "counter_reset"}
    total, first, last = 0, None, None
    for r in readings:
        value = r.values["energy_total_wh"]
        if r.wall_time in resets:
            total += last - first
            first = value
        first = value if first is None else first
        last = value
    return total + last - first


def test_a_u32_energy_counter_wrapping_past_2_to_the_32_is_unwrapped():
    top = 2**32
    readings, events = _energy_stream([top - 60, top - 5, 50, 120, 300])
    values = [r.values["energy_total_wh"] for r in readings]
    assert values == [(top - 60) * 10, (top - 5) * 10, (top + 50) * 10, (top + 120) * 10, (top + 300) * 10]  # goes on rising
    assert values[-1] - values[0] == 3600 == _receiver_total(readings, events)  # 360 steps of 10 Wh, exactly
    assert [r.flags for r in readings] == [()] * 5  # a wrap is not a fault
    [wrap] = events
    assert wrap.kind == "counter_wrap" and wrap.wall_time == readings[2].wall_time
    assert wrap.detail == {"quantity": "energy_total_wh", "previous": (top - 5) * 10, "value": (top + 50) * 10, "register_value": 500,
                           "offset": 10 * top, "modulus": top, "span": 10 * top}


def test_a_reset_counter_is_flagged_and_totals_stay_exact_with_its_event():
    readings, events = _energy_stream([1000, 1100, 20, 70])
    values = [r.values["energy_total_wh"] for r in readings]
    assert values == [10000, 11000, 200, 700]  # a reset is not unwrapped: the counter really restarted
    assert [r.flags for r in readings] == [(), (), ("reset:energy_total_wh",), ()]
    [reset] = events
    assert reset.kind == "counter_reset" and reset.wall_time == readings[2].wall_time
    assert reset.detail["previous"] == 11000 and reset.detail["value"] == 200
    assert reset.detail["modulus"] == 2**32 and reset.detail["span"] == 10 * 2**32
    assert _receiver_total(readings, events) == (1100 - 1000 + 70 - 20) * 10


def test_a_reset_after_a_wrap_starts_the_offset_again():
    top = 2**32
    readings, events = _energy_stream([top - 5, 5, 15, 3, 9])
    assert [r.values["energy_total_wh"] for r in readings] == [(top - 5) * 10, (top + 5) * 10, (top + 15) * 10, 30, 90]
    assert [e.kind for e in events] == ["counter_wrap", "counter_reset"]
    assert _receiver_total(readings, events) == (20 + 6) * 10


def test_a_signed_counter_wraps_from_its_top_to_its_bottom():
    watch = CounterWatch()
    point = Point("import", 0, "S32", 2, unit="Wh", quantity="meter_import_wh")
    wrap = counter_range(point)
    assert wrap == CounterRange(2**32, 2**32, -(2**31))
    assert watch.check("meter_import_wh", 2**31 - 10) == (2**31 - 10, None)
    value, (kind, detail) = watch.check("meter_import_wh", -(2**31) + 5, wrap)
    assert kind == "counter_wrap" and value == 2**31 + 5 and detail["span"] == 2**32


def test_an_sma_at_night_reports_no_status_instead_of_its_24_bit_nan():
    answers = _answers("sma", 3)
    plan = poll_plan(load_profile("sma"))
    [block] = [b for b in plan.blocks if b.start <= 30201 < b.end]
    night = list(answers[(3, block.function, block.start)])
    night[30201 - block.start : 30203 - block.start] = [0x00FF, 0xFFFD]  # Operation.Health: NaN
    answers[(3, block.function, block.start)] = night
    [outcome] = EndpointPoller([_settings("sma1", 3, "sma")], ScriptedLink(answers)).run_due()
    assert outcome.reading.values["status"] is None  # not 16777213
    assert outcome.reading.values["ac_power_w"] is not None and outcome.reading.flags == ()


def test_an_outage_under_way_is_reported_every_half_minute_not_only_when_it_ends():
    """A receiver sees the slots of an outage while it lasts (an hour at 1 Hz before), even
    while reconnects back off to a minute: the actor wakes for the slots meanwhile."""
    clock = _ManualClock()
    link = ScriptedLink(_answers("huawei_sun2000", 1))
    link.down = True
    settings = dict(_settings("inv1", 1), poll_interval=1.0)
    poller = EndpointPoller([settings], link, clock=clock, backoff=Backoff(initial=1.0, cap=60.0, jitter=0.0))
    gaps, started = [], clock.t
    while clock.t - started < 150:  # 150 s offline, woken only when the poller asks
        if clock.t >= poller.next_wakeup():
            gaps += [g for o in poller.run_due() for g in o.gaps]
        clock.t += 0.5
    assert len(gaps) >= 3 and all(g.reason == "offline" for g in gaps)
    assert all(b.start_wall == a.end_wall for a, b in zip(gaps, gaps[1:], strict=False))  # back to back: no slot lost between them
    assert max(b.end_wall - a.end_wall for a, b in zip(gaps, gaps[1:], strict=False)) <= 45  # reported every 30-45 s
