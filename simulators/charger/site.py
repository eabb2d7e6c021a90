"""Replaying a PV day for a simulated car: synthetic sites, a reference controller with evcc's defaults, the metrics.

Shared by the energy tests (exact, deterministic replays) and `bench/energy.py`. A day
is a function of the second of the day, seeded, so every run sees the same clouds:

* `sunny`: a clear-sky bell, 9 kW peak at 13:00;
* `cloudy`: the same sky under fast broken clouds: each cloud 20 s to 4 min long, gaps
  of 20 s to 6 min between them, each letting 15 to 45 % through (the fast changes
  that make a naive loop switch a car on and off);
* house load: 350 W base, a fridge cycle, a kettle, a dishwasher and a washing machine.

The car is `simulators.charger.car.Car`, plugged in from 09:00 to 17:00. A controller
is called every `interval` seconds with what a gateway would see (grid power, the car's
power) and answers a limit and phases; the car follows the limit in its own time.
"""

from __future__ import annotations

import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.energy.control import ControlSettings, ControlState, Inputs, LoadpointConfig, step
from simulators.charger.car import Car

PLUG_IN, PLUG_OUT = 9 * 3600, 17 * 3600


def clear_sky_w(second: float, peak_w: float = 9000.0) -> float:
    hour = second / 3600.0
    if not 6.0 <= hour <= 20.0:
        return 0.0
    return peak_w * math.sin(math.pi * (hour - 6.0) / 14.0) ** 1.8


def cloud_factors(seed: int = 18, start: int = 6 * 3600, end: int = 20 * 3600) -> list[tuple[int, int, float]]:
    """(start, end, transmission) of each cloud of the cloudy day."""
    rng = random.Random(seed)
    clouds, t = [], start
    while t < end:
        t += rng.randint(20, 360)
        length = rng.randint(20, 240)
        clouds.append((t, t + length, rng.uniform(0.15, 0.45)))
        t += length
    return clouds


@dataclass
class Site:
    day: str = "sunny"
    seed: int = 18
    _clouds: list[tuple[int, int, float]] = field(default_factory=list)
    _shade: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.day == "cloudy":
            self._clouds = cloud_factors(self.seed)
            for begin, end, factor in self._clouds:
                for s in range(begin, end):
                    self._shade[s] = factor

    def pv_w(self, second: float) -> float:
        return clear_sky_w(second) * self._shade.get(int(second), 1.0)

    @staticmethod
    def house_w(second: float) -> float:
        s = int(second)
        load = 350.0
        if s % 1800 < 600:
            load += 120.0  # the fridge compressor, 10 min every half hour
        for begin, length, watts in ((7 * 3600 + 600, 180, 2000.0), (11 * 3600 + 1200, 5400, 700.0), (12 * 3600 + 1800, 240, 2000.0),
                                     (14 * 3600, 4200, 500.0), (15 * 3600 + 600, 300, 1800.0)):
            if begin <= s < begin + length:
                load += watts
        return load


Controller = Callable[[float, float, float, bool], tuple[float, int]]
"""(now, grid_w, car_w, plugged) -> (limit A, phases)."""


def egw_controller(mode: str = "pv", settings: ControlSettings | None = None, phases: str = "switchable") -> tuple[Controller, dict[str, Any]]:
    config = LoadpointConfig(id="lp", charger="CP", grid_meter="grid", min_current=6.0, max_current=16.0, phases=phases, mode=mode)
    settings = settings or ControlSettings()
    box: dict[str, Any] = {"state": ControlState(), "decisions": [], "interval": settings.interval}

    def control(now: float, grid_w: float, car_w: float, plugged: bool) -> tuple[float, int]:
        box["state"], decision = step(config, settings, box["state"], Inputs(now=now, mode=mode, plugged=plugged, grid_w=grid_w, charge_w=car_w))
        box["decisions"].append(decision)
        return (decision.limit_a if decision.managed else config.max_current), decision.phases

    return control, box


def evcc_controller() -> tuple[Controller, dict[str, Any]]:
    """evcc's documented defaults for a switchable 6-16 A loadpoint in pv mode.

    30 s loop; enable after the surplus allowed the minimum current for 1 min, disable
    after it stayed below the minimum for 3 min; 3p -> 1p after 3 min below the 3-phase
    minimum, 1p -> 3p after 1 min above it; the current is set straight from the surplus
    (no ramp), clamped to 6-16 A. (evcc: docs.evcc.io, "Loadpoint" enable/disable
    thresholds and delays, phase switching.)
    """
    v = 230.0
    box: dict[str, Any] = {"enabled": False, "phases": 3, "enable_since": None, "disable_since": None, "down_since": None, "up_since": None,
                           "current": 0.0, "interval": 30.0}

    def control(now: float, grid_w: float, car_w: float, plugged: bool) -> tuple[float, int]:
        if not plugged:
            box.update(enabled=False, enable_since=None, disable_since=None, current=0.0)
            return 0.0, box["phases"]
        surplus = -grid_w + car_w
        p = box["phases"]
        if p == 3 and surplus < 6 * v * 3:
            box["down_since"] = box["down_since"] if box["down_since"] is not None else now
            box["up_since"] = None
            if now - box["down_since"] >= 180 or not box["enabled"]:
                box["phases"], box["down_since"] = 1, None
        elif p == 1 and surplus >= 6 * v * 3:
            box["up_since"] = box["up_since"] if box["up_since"] is not None else now
            box["down_since"] = None
            if now - box["up_since"] >= 60 or not box["enabled"]:
                box["phases"], box["up_since"] = 3, None
        else:
            box["down_since"] = box["up_since"] = None
        p = box["phases"]
        target = surplus / (v * p)
        if not box["enabled"]:
            if target >= 6:
                box["enable_since"] = box["enable_since"] if box["enable_since"] is not None else now
                if now - box["enable_since"] >= 60:
                    box.update(enabled=True, enable_since=None)
            else:
                box["enable_since"] = None
        else:
            if target < 6:
                box["disable_since"] = box["disable_since"] if box["disable_since"] is not None else now
                if now - box["disable_since"] >= 180:
                    box.update(enabled=False, disable_since=None)
            else:
                box["disable_since"] = None
        box["current"] = max(6.0, min(16.0, math.floor(target))) if box["enabled"] else 0.0
        return box["current"], box["phases"]

    return control, box


def naive_controller() -> tuple[Controller, dict[str, Any]]:
    def control(now: float, grid_w: float, car_w: float, plugged: bool) -> tuple[float, int]:
        return (16.0, 3) if plugged else (0.0, 3)

    return control, {"interval": 10.0}


@dataclass
class DayResult:
    car_wh: float = 0.0
    car_pv_wh: float = 0.0
    car_grid_wh: float = 0.0
    starts: int = 0
    stops: int = 0
    phase_switches: int = 0
    energy_by_17_wh: float = 0.0

    @property
    def pv_share(self) -> float:
        return 100.0 * self.car_pv_wh / self.car_wh if self.car_wh else 0.0


def replay_day(site: Site, controller: Controller, interval: float, *, resolution: float = 1.0, start: int = 8 * 3600, end: int = 18 * 3600,
               car: Car | None = None) -> DayResult:
    """Drive `car` with `controller` through the day at `resolution` seconds; the PV share, import and switching."""
    car = car or Car(battery_wh=100_000.0, soc_percent=10.0)  # room for 90 kWh: no controller fills it by 17:00
    result = DayResult()
    next_control = float(start)
    charging, phases_seen = False, None
    t = float(start)
    car.advance(t)
    while t < end:
        plugged = PLUG_IN <= t < PLUG_OUT
        car_w = car.power_w(t) if plugged else 0.0
        pv, house = site.pv_w(t), site.house_w(t)
        if t >= next_control:
            limit, phases = controller(t, house + car_w - pv, car_w, plugged)
            car.set_limit(limit if plugged else 0.0, phases, t)
            next_control += interval
        car_w = car.power_w(t) if plugged else 0.0
        now_charging = car_w > 0
        if now_charging and not charging:
            result.starts += 1
        elif charging and not now_charging:
            result.stops += 1
        if now_charging:
            if phases_seen is not None and car.phases_used != phases_seen:
                result.phase_switches += 1
            phases_seen = car.phases_used
        charging = now_charging
        t += resolution
        added = car.advance(t) if plugged else 0.0
        if not plugged:
            car.set_limit(0.0, car.phases_used, t)
        from_pv = min(added, max(0.0, pv - house) * resolution / 3600.0)
        result.car_wh += added
        result.car_pv_wh += from_pv
        result.car_grid_wh += added - from_pv
        if t <= PLUG_OUT:
            result.energy_by_17_wh = result.car_wh
    return result
