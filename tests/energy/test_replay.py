"""Whole PV days replayed at 1 s under the injected clock, the simulated car, and the profile fallback order.

The days (`simulators.charger.site`) are seeded: a replay is the same on every run, so
its figures are exact. The car is the one the simulated charger and the benchmark use.
"""

from __future__ import annotations

import pytest
from ocpp.charge_point import camel_to_snake_case

from actors.energy import profiles
from simulators.charger.car import Car
from simulators.charger.chargepoint import SimulatedChargePoint
from simulators.charger.site import PLUG_IN, PLUG_OUT, Site, egw_controller, evcc_controller, replay_day


@pytest.mark.parametrize("day", ["sunny", "cloudy"])
def test_a_pv_day_replays_identically_and_keeps_every_limit_within_its_bounds(day):
    first, box = egw_controller()
    result = replay_day(Site(day), first, 10.0)
    again, box_again = egw_controller()
    assert replay_day(Site(day), again, 10.0) == result
    assert [d.key() for d in box["decisions"]] == [d.key() for d in box_again["decisions"]]
    limits = [d.limit_a for d in box["decisions"]]
    assert all(limit == 0.0 or 6.0 <= limit <= 16.0 for limit in limits)  # never below the minimum while charging, never above the maximum
    assert result.car_wh > 20_000  # the car does get charged


def test_on_the_cloudy_day_egw_takes_more_from_pv_than_evcc_defaults_with_far_less_switching():
    site = Site("cloudy")
    egw, _ = egw_controller()
    evcc, _ = evcc_controller()
    mine, reference = replay_day(site, egw, 10.0), replay_day(site, evcc, 30.0)
    assert (round(mine.pv_share, 1), mine.starts, mine.stops, mine.phase_switches) == (87.1, 1, 1, 4)
    assert (round(reference.pv_share, 1), reference.starts, reference.stops, reference.phase_switches) == (79.1, 10, 10, 32)
    assert mine.car_grid_wh < reference.car_grid_wh / 1.5


def test_the_car_follows_a_limit_in_a_few_seconds_pauses_below_six_amps_and_uses_its_own_phases():
    car = Car(max_current_a=16.0, phases=1, follow_s=3.0)
    car.set_limit(10.0, 3, at=0.0)
    assert [round(car.current_a(t), 2) for t in (0.0, 1.5, 3.0, 10.0)] == [0.0, 5.0, 10.0, 10.0]
    assert car.power_w(10.0) == 2300.0  # one phase: the car's own
    car.set_limit(32.0, 3, at=10.0)
    assert car.current_a(20.0) == 16.0  # its own maximum
    car.set_limit(5.0, 3, at=20.0)
    assert car.current_a(30.0) == 0.0  # below 6 A: paused, not a trickle
    car.advance(40.0)
    assert 0 < car.energy_wh < 16 * 230 * 40 / 3600


def refused(cp: SimulatedChargePoint, profile: dict) -> bool:
    """What the simulated charger decides for a profile as the `ocpp` library hands it over (snake_case)."""
    return cp._refuses(camel_to_snake_case(profile))


def negotiate(quirks: tuple[str, ...], limit_a: float, transaction_id: int | None) -> list[tuple[str, str]]:
    """The variants tried in order against a charger with `quirks`, and each answer, until one is accepted."""
    cp = SimulatedChargePoint("CP1", connection=None, reject_profiles=quirks)
    tried, variant = [], profiles.first_variant(None)
    while variant is not None:
        profile = profiles.build_profile(variant, limit_a=limit_a, phases=3, voltage=230.0, connector=1, max_stack_level=8,
                                         transaction_id=transaction_id, now_wall=PLUG_IN)
        answer = "Rejected" if refused(cp, profile) else "Accepted"
        tried.append((variant, answer))
        if answer == "Accepted":
            break
        variant = profiles.next_variant(variant, transaction_id is not None)
    return tried


def test_rejected_profiles_fall_back_in_the_documented_order():
    assert negotiate((), 10.0, None) == [("tx_default_max_level", "Accepted")]
    assert negotiate(("level0_only",), 10.0, None) == [("tx_default_max_level", "Rejected"), ("tx_default_level0", "Accepted")]
    assert negotiate(("level0_only", "watts_only"), 10.0, None) == [
        ("tx_default_max_level", "Rejected"), ("tx_default_level0", "Rejected"), ("tx_default_relative", "Rejected"), ("tx_default_watts", "Accepted")]
    # a charger that refuses 0 A refuses it in every unit: every variant is tried (TxProfile only with a session), none works
    assert [v for v, _ in negotiate(("zero",), 0.0, 42)] == list(profiles.VARIANTS)
    assert [v for v, _ in negotiate(("zero",), 0.0, None)] == list(profiles.VARIANTS[:-1])
    watts = profiles.build_profile("tx_default_watts", limit_a=10.0, phases=3, voltage=230.0, connector=1, max_stack_level=8, transaction_id=None, now_wall=0)
    assert watts["chargingSchedule"]["chargingSchedulePeriod"] == [{"startPeriod": 0, "limit": 6900.0, "numberPhases": 3}]
    tx = profiles.build_profile("tx_profile", limit_a=10.0, phases=1, voltage=230.0, connector=1, max_stack_level=8, transaction_id=42, now_wall=0)
    assert (tx["chargingProfilePurpose"], tx["transactionId"], tx["stackLevel"]) == ("TxProfile", 42, 0)


def test_the_plug_window_of_the_replays_is_nine_to_five():
    assert (PLUG_IN, PLUG_OUT) == (9 * 3600, 17 * 3600)
