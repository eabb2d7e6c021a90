"""The controller core under an injected clock: exact decision sequences for short scenarios.

Every figure below follows from the documented defaults (10 s loop, 3 A per loop up,
enable after 60 s' worth of the minimum power in surplus energy, disable after 180 s'
worth of grid energy at the minimum, phase switches after 300 s up / 180 s down, at most
3 per hour) at 230 V; each test says the arithmetic so a changed default shows as a
changed number, not as a mystery.
"""

from __future__ import annotations

from actors.energy.control import ControlSettings, ControlState, Inputs, LoadpointConfig, step

V = 230.0


def run(lp: LoadpointConfig, surplus_at, seconds: int, *, settings: ControlSettings | None = None, state: ControlState | None = None,
        mode: str = "pv", start: float = 0.0, **extra) -> tuple[list[tuple[float, float, int, bool]], ControlState, list]:
    """Step every 10 s for `seconds`; the car draws exactly the last limit (an ideal car), the grid shows house − PV + car.

    `surplus_at(t)` is what the site would export with the car off. Returns the changes as
    (t, limit, phases, enabled), the final state and every decision.
    """
    settings = settings or ControlSettings()
    s = state or ControlState(phases=1 if lp.phases == "1" else 3)
    changes, decisions, last = [], [], None
    t = start
    while t < start + seconds:
        car_w = s.current_a * V * s.phases if s.enabled else 0.0
        s, d = step(lp, settings, s, Inputs(now=t, mode=mode, grid_w=car_w - surplus_at(t), charge_w=car_w, **extra))
        decisions.append(d)
        key = (d.limit_a, d.phases, d.enabled)
        if key != last:
            changes.append((t, *key))
            last = key
        t += 10.0
    return changes, s, decisions


ONE_PHASE = LoadpointConfig(id="lp", charger="CP1", grid_meter="grid", phases="1")
SWITCHABLE = LoadpointConfig(id="lp", charger="CP1", grid_meter="grid", phases="switchable")


def test_enable_waits_for_surplus_energy_so_a_big_surplus_enables_sooner():
    # 2000 W: (2000 − 1380) W × 10 s = 1.72 Wh a loop; 23 Wh (60 s of 1380 W) after 14 loops -> t = 140 s, straight to 8 A
    changes, _, decisions = run(ONE_PHASE, lambda t: 2000.0, 200)
    assert changes == [(0.0, 0.0, 1, False), (140.0, 8.0, 1, True)]
    assert decisions[13].reason == "mode pv: waiting for surplus: 2000 W, 22.4 of 23.0 Wh above 1380 W gathered"
    assert decisions[14].reason == "mode pv: enabled: surplus 2000 W on 1 phase: 8 A"
    # 5000 W: 10.06 Wh a loop, enough after 3 -> t = 30 s (an evcc timer waits 60 s either way); then +3 A a loop up to 16 A
    changes, _, _ = run(ONE_PHASE, lambda t: 5000.0, 80)
    assert changes == [(0.0, 0.0, 1, False), (30.0, 9.0, 1, True), (40.0, 12.0, 1, True), (50.0, 15.0, 1, True), (60.0, 16.0, 1, True)]


def test_decreases_are_immediate_and_a_shallow_short_dip_is_ridden_through():
    _, s, _ = run(ONE_PHASE, lambda t: 3000.0, 200)
    assert s.enabled and s.current_a == 13.0
    # a 60 s cloud down to 900 W: at once to the 6 A minimum, (1380 − 900) × 60 s = 8 Wh of grid energy, far from 69 Wh: no stop
    dip = lambda t: 900.0 if 200 <= t < 260 else 3000.0  # noqa: E731
    changes, s, decisions = run(ONE_PHASE, dip, 120, state=s, start=200.0)
    assert changes == [(200.0, 6.0, 1, True), (260.0, 9.0, 1, True), (270.0, 12.0, 1, True), (280.0, 13.0, 1, True)]
    assert decisions[5].reason == "mode pv: surplus 900 W on 1 phase: 6 A (at the minimum; 8.0 of 69.0 Wh grid energy before pausing)"
    assert s.starts == 1 and s.stops == 0


def test_disable_after_the_grid_energy_at_minimum_current_reaches_its_bound():
    _, s, _ = run(ONE_PHASE, lambda t: 3000.0, 200)
    # 500 W surplus: (1380 − 500) W × 10 s = 2.44 Wh of grid energy a loop; 69 Wh (180 s of 1380 W) after 29 loops -> paused at 290 s
    changes, s, decisions = run(ONE_PHASE, lambda t: 500.0, 400, state=s, start=200.0)
    assert changes == [(200.0, 6.0, 1, True), (480.0, 0.0, 1, False)]
    assert decisions[28].reason == "mode pv: surplus 500 W below the minimum 1380 W for 69.0 Wh of grid energy: paused"
    assert s.stops == 1
    # no surplus at all: 3.83 Wh a loop, paused after 18 loops: a deep dip stops sooner than a shallow one
    _, s, _ = run(ONE_PHASE, lambda t: 3000.0, 200)
    changes, _, _ = run(ONE_PHASE, lambda t: 0.0, 400, state=s, start=200.0)
    assert changes == [(200.0, 6.0, 1, True), (370.0, 0.0, 1, False)]


def test_phase_switches_follow_the_energy_beyond_three_phase_minimum_and_are_bounded_per_hour():
    # 6000 W from the start: enough for 3 phases (4140 W minimum), so it starts on 3 (not counted: no load yet);
    # (6000 − 4140) W × 10 s = 5.17 Wh a loop, 69 Wh (60 s of 4140 W) after 14 loops
    changes, s, _ = run(SWITCHABLE, lambda t: 6000.0, 200)
    assert changes == [(0.0, 0.0, 3, False), (140.0, 8.0, 3, True)] and s.switches == []
    # down to 3000 W: at once the 6 A minimum on 3 phases; (4140 − 3000) × 10 s = 3.17 Wh a loop below the 3-phase minimum,
    # 207 Wh (180 s of 4140 W) after 66 loops -> 1 phase, before the same amount of grid energy would have paused it;
    # then up from 6 A, 3 A a loop, to the 13 A that 3000 W allow on one phase
    changes, s, decisions = run(SWITCHABLE, lambda t: 3000.0, 700, state=s, start=200.0)
    assert changes == [(200.0, 6.0, 3, True), (850.0, 9.0, 1, True), (860.0, 12.0, 1, True), (870.0, 13.0, 1, True)]
    assert len(s.switches) == 1 and s.stops == 0
    # sun and cloud every 15 minutes: up after 260 s of sun, down after 660 s of cloud, so 4 switches an hour are wanted;
    # the bound allows 3 in any hour, the unbounded controller makes them all
    weather = lambda t: 9000.0 if (t // 900) % 2 == 0 else 3000.0  # noqa: E731

    def switch_times(settings: ControlSettings) -> list[float]:
        changes, _, _ = run(SWITCHABLE, weather, 3 * 3600, state=ControlState.from_dict(s.to_dict()), start=1800.0, settings=settings)
        return [t for (t, _, p, _), (_, _, q, _) in zip(changes[1:], changes[:-1], strict=True) if p != q]

    bounded, unbounded = switch_times(ControlSettings()), switch_times(ControlSettings(max_phase_switches_per_hour=100))
    assert len(unbounded) == 12 and len(bounded) == 8
    assert all(sum(1 for u in [850.0, *bounded] if t - 3600 < u <= t) <= 3 for t in bounded)


def test_the_main_fuse_caps_the_limit_and_pauses_below_the_minimum():
    settings = ControlSettings(main_fuse_a=20.0)
    three = LoadpointConfig(id="lp", charger="CP1", grid_meter="grid", phases="3")
    # the car draws 10 A a phase; the meter shows 18 A on L1 (8 A of other loads there): 12 A are left, whatever the surplus
    state = ControlState(enabled=True, current_a=10.0, phases=3, last_tick=0.0, plugged=True)
    state, d = step(three, settings, state, Inputs(now=10.0, grid_w=-11000.0 + 6900.0, charge_w=6900.0, phase_currents=(18.0, 10.0, 10.0)))
    assert (d.limit_a, d.fuse_limit_a) == (12.0, 12.0) and d.reason.endswith("main-fuse limit 12 A")
    # mode now: full power is 16 A, the fuse leaves 12 A
    _, d = step(three, settings, state, Inputs(now=20.0, mode="now", grid_w=4000.0, charge_w=6900.0, phase_currents=(18.0, 10.0, 10.0)))
    assert d.limit_a == 12.0 and d.managed and d.reason == "mode now: 12 A (main-fuse limit)"
    # a 17 A kettle-and-oven on L1: 20 − 17 = 3 A left, below 6 A: paused, never a limit under the minimum
    _, d = step(three, settings, state, Inputs(now=30.0, mode="now", grid_w=9000.0, charge_w=6900.0, phase_currents=(27.0, 10.0, 10.0)))
    assert d.limit_a == 0.0 and not d.enabled and "3.0 A, below the minimum 6 A: paused" in d.reason
    # without a fuse setting, now mode leaves the charger its own limit: no profile of ours (ClearChargingProfile)
    _, d = step(three, ControlSettings(), state, Inputs(now=40.0, mode="now", grid_w=4000.0, charge_w=6900.0))
    assert not d.managed and d.limit_a == 16.0


def test_battery_priority_decides_whether_its_charging_power_is_surplus():
    lp = LoadpointConfig(id="lp", charger="CP1", grid_meter="grid", battery="bat", phases="1", battery_priority_soc=50.0, battery_discharge_soc=95.0)
    # nothing exported, the home battery takes 3000 W: below 50 % that stays with the battery
    low, _, _ = run(lp, lambda t: 0.0, 300, battery_w=-3000.0, battery_soc=40.0)
    assert low == [(0.0, 0.0, 1, False)]
    # above 50 % the car may take it: (3000 − 1380) W × 10 s a loop -> enabled after 6 loops, at 13 A
    mid, _, _ = run(lp, lambda t: 0.0, 100, battery_w=-3000.0, battery_soc=70.0)
    assert mid[:2] == [(0.0, 0.0, 1, False), (60.0, 9.0, 1, True)]
    # charging at the minimum while the battery covers it by discharging 1380 W: that counts only above 95 %
    state = ControlState(enabled=True, current_a=6.0, phases=1, last_tick=0.0, plugged=True)
    _, above = step(lp, ControlSettings(), state, Inputs(now=10.0, grid_w=0.0, charge_w=1380.0, battery_w=1380.0, battery_soc=97.0))
    _, below = step(lp, ControlSettings(), state, Inputs(now=10.0, grid_w=0.0, charge_w=1380.0, battery_w=1380.0, battery_soc=80.0))
    assert above.surplus_w == 1380.0 and above.timers["disable_wh"] == 0.0
    assert below.surplus_w == 0.0 and below.timers["disable_wh"] == 3.83


def test_off_minpv_unplugged_and_unknown_readings():
    state = ControlState(enabled=True, current_a=10.0, phases=1, last_tick=0.0, plugged=True)
    _, d = step(ONE_PHASE, ControlSettings(), state, Inputs(now=10.0, mode="off", grid_w=-5000.0, charge_w=2300.0))
    assert (d.limit_a, d.enabled, d.managed, d.reason) == (0.0, False, True, "mode off: 0 A limit")
    _, d = step(ONE_PHASE, ControlSettings(), state, Inputs(now=10.0, mode="minpv", grid_w=2000.0, charge_w=2300.0))
    assert (d.limit_a, d.enabled) == (6.0, True)  # surplus 300 W: still the minimum in minpv
    _, d = step(ONE_PHASE, ControlSettings(), state, Inputs(now=10.0, mode="pv", grid_w=None, charge_w=2300.0))
    assert (d.limit_a, d.reason) == (0.0, "mode pv: surplus unknown (no recent readings of the meter): paused")
    _, d = step(ONE_PHASE, ControlSettings(), state, Inputs(now=10.0, mode="pv", plugged=False, grid_w=-5000.0))
    assert (d.limit_a, d.reason) == (0.0, "mode pv: no car plugged in")
    # without a grid meter: PV minus the other measured loads
    pv_only = LoadpointConfig(id="lp", charger="CP1", pv=("roof",), loads=("house",), phases="1")
    _, d = step(pv_only, ControlSettings(), ControlState(phases=1), Inputs(now=0.0, pv_w=4000.0, loads_w=800.0, charge_w=0.0))
    assert d.surplus_w == 3200.0


def test_a_restarted_controller_resumes_from_its_stored_state(tmp_path):
    from storage import loadpoints as store
    from storage.db import connect

    _, uninterrupted, _ = run(ONE_PHASE, lambda t: 2000.0, 100)  # 10 of the 14 loops towards enabling
    conn = connect(tmp_path / "egw.db")
    store.init(conn)
    store.save_state(conn, "lp", uninterrupted.to_dict())
    conn.close()
    conn = connect(tmp_path / "egw.db")
    resumed = ControlState.from_dict(store.load_state(conn, "lp"))
    changes, _, _ = run(ONE_PHASE, lambda t: 2000.0, 100, state=resumed, start=100.0)
    assert changes == [(100.0, 0.0, 1, False), (140.0, 8.0, 1, True)]  # enabled at 140 s as if nothing happened
