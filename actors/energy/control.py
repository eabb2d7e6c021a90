"""The solar-surplus controller: a pure function from (settings, state, inputs) to a decision.

Nothing here reads a clock, a socket or a database: the energy actor (and the tests and
the benchmark) hand in `Inputs` with `now`, and get back the new `ControlState` and a
`Decision` saying what limit to send and why. That is what makes a whole PV day
replayable in milliseconds with exact expected decisions.

Why it is shaped like this (see docs/energy.md for the numbers):

* **Increases are ramp-limited, decreases immediate.** A cloud edge makes the surplus
  jump; following every jump upwards makes the loop oscillate with the car's own delay
  in following a limit, while following it downwards at once keeps the grid import of
  a dip to one loop period.
* **Enable and disable on energy, not time alone.** Waiting for "60 s above the minimum
  power" treats 10 W above it like 5 kW above it. Here the loadpoint enables when the
  surplus energy above the minimum charging power (what would otherwise be exported)
  reaches `enable_s` seconds' worth of that power, and disables when the grid energy the
  car drew at minimum current below the surplus (exactly the import charging causes)
  reaches `disable_s` seconds' worth of it. A big surplus enables fast, a deep dip
  disables fast, a shallow dip is ridden through. The deficit drains back as the surplus
  returns, so the fast clouds of a broken-cloud day do not add up into a stop.
* **Phase switches are bounded per hour** (`max_phase_switches_per_hour`, sliding
  window), and decided the same way (energy beyond the other phase count's minimum).
* **Hard limits win over everything**: never below `min_current` while charging (IEC
  61851: a car cannot charge below 6 A, a lower limit pauses it), never above
  `max_current`, never above the site's main-fuse headroom.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace
from typing import Any

MODES = ("off", "now", "minpv", "pv")
SMART_MODES = ("minpv", "pv")
PLUGGED_STATUSES = frozenset({"Preparing", "Charging", "SuspendedEV", "SuspendedEVSE", "Finishing"})
"""Connector statuses (OCPP 1.6 StatusNotification) that mean a car is plugged in."""


@dataclass(frozen=True)
class LoadpointConfig:
    """One `[[loadpoints]]` entry, validated (see `actors.energy.config`)."""

    id: str
    charger: str
    connector: int = 1
    grid_meter: str | None = None
    battery: str | None = None
    pv: tuple[str, ...] = ()
    loads: tuple[str, ...] = ()  # other measured loads, used for the surplus only without a grid meter
    min_current: float = 6.0
    max_current: float = 16.0
    phases: str = "3"  # "1", "3" or "switchable"
    mode: str = "pv"
    voltage: float = 230.0
    battery_priority_soc: float = 50.0  # below: the battery's charging power is not surplus (the battery comes first)
    battery_discharge_soc: float = 95.0  # above: the battery may discharge into the car

    @property
    def surplus_source(self) -> str | None:
        """Where the surplus comes from: "grid" (the meter), "pv" (PV minus measured loads), or None (cannot)."""
        if self.grid_meter:
            return "grid"
        if self.pv and self.loads:
            return "pv"
        return None

    def min_power(self, phases: int) -> float:
        return self.min_current * self.voltage * phases

    def max_power(self, phases: int) -> float:
        return self.max_current * self.voltage * phases


@dataclass(frozen=True)
class ControlSettings:
    """The loop's tuning, the same for every loadpoint of a site."""

    interval: float = 10.0  # seconds between decisions
    ramp_a_per_s: float = 0.3  # the fastest increase of the limit (3 A per 10 s loop)
    enable_s: float = 60.0  # enable when the surplus above min power adds up to this many seconds of min power
    disable_s: float = 180.0  # disable when the grid energy drawn at min current adds up to this many seconds of min power
    phase_up_s: float = 300.0  # 1p -> 3p when the surplus above 3p min power adds up to this many seconds of it
    phase_down_s: float = 180.0  # 3p -> 1p when the deficit below 3p min power adds up to this many seconds of it
    max_phase_switches_per_hour: int = 3
    main_fuse_a: float | None = None  # the site's main fuse per phase; None: no limit
    resolution_a: float = 1.0  # limits are whole amps: what most chargers support


@dataclass
class ControlState:
    """What the controller remembers between decisions (persisted by the actor as a dict)."""

    enabled: bool = False
    current_a: float = 0.0
    phases: int = 3
    surplus_wh: float = 0.0  # towards enabling
    deficit_wh: float = 0.0  # towards disabling
    phase_wh: float = 0.0  # > 0 towards 3 phases, < 0 towards 1 phase
    switches: list[float] = field(default_factory=list)  # times of phase switches in the last hour
    starts: int = 0
    stops: int = 0
    last_tick: float | None = None
    plugged: bool = False

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None, phases: int = 3) -> ControlState:
        if not data:
            return cls(phases=phases)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        state = cls(**known)
        state.switches = [float(t) for t in state.switches]
        return state


@dataclass(frozen=True)
class Inputs:
    """What the loop knows at `now`: readings (None when unknown) and the charger's state."""

    now: float
    mode: str = "pv"
    plugged: bool = True
    grid_w: float | None = None  # import positive
    charge_w: float | None = None  # this loadpoint's own charging power, measured by the charger
    pv_w: float | None = None
    loads_w: float | None = None
    battery_w: float | None = None  # discharge positive, charge negative
    battery_soc: float | None = None
    phase_currents: tuple[float, ...] | None = None  # grid meter per phase, A (import positive)
    hold: bool = False  # the car's power at the meter's moment is unknown (just restarted): keep a charging car's limit


@dataclass(frozen=True)
class Decision:
    """What to tell the charger and why.

    `limit_a` is the current limit per phase (0: paused), `phases` the phases to use,
    `managed` False means "no limit of ours" (ClearChargingProfile: `now` mode without a
    main fuse), `reason` a sentence for people, `surplus_w` what the loop saw.
    """

    limit_a: float
    phases: int
    enabled: bool
    reason: str
    managed: bool = True
    surplus_w: float | None = None
    fuse_limit_a: float | None = None
    timers: dict[str, float] = field(default_factory=dict)

    def key(self) -> tuple[Any, ...]:
        """What a charger must be told again when it changes."""
        return (self.managed, self.limit_a, self.phases)


def surplus_w(config: LoadpointConfig, inputs: Inputs, own_w: float) -> float | None:
    """The power the car may use without importing, W; None when it cannot be known.

    From the grid meter: −grid + own charging power (what the site would export with the
    car off). Without one: PV minus the other measured loads. Then the battery: below
    `battery_priority_soc` its charging stays with it (nothing added) and its discharge
    must not feed the car (subtracted); between the two thresholds its charging power
    counts as surplus; above `battery_discharge_soc` its discharge may feed the car too.
    """
    source = config.surplus_source
    if source == "grid":
        if inputs.grid_w is None:
            return None
        base = -inputs.grid_w + own_w
    elif source == "pv":
        if inputs.pv_w is None or inputs.loads_w is None:
            return None
        base = inputs.pv_w - inputs.loads_w
        if inputs.battery_w is not None:
            base += inputs.battery_w  # PV − loads − battery charging (+ its discharge) is what reaches the grid
    else:
        return None
    if config.battery and inputs.battery_w is not None and inputs.battery_soc is not None:
        charging, discharging = max(-inputs.battery_w, 0.0), max(inputs.battery_w, 0.0)
        if inputs.battery_soc < config.battery_priority_soc:
            base -= discharging
        elif inputs.battery_soc < config.battery_discharge_soc:
            base += charging - discharging
        else:
            base += charging
    return base


def fuse_limit_a(config: LoadpointConfig, settings: ControlSettings, inputs: Inputs, own_w: float, phases: int) -> float | None:
    """The most current per phase the main fuse leaves for the car, A; None without a fuse setting.

    The other loads' current on the busiest phase is the grid meter's phase current minus
    the car's own share of it (1-phase charging is taken to be on L1); without phase
    currents the grid power is taken as spread evenly over three phases. Unknown grid
    readings leave no headroom beyond the minimum: the loop cannot prove the fuse safe.
    """
    if settings.main_fuse_a is None:
        return None
    own_per_phase = own_w / (config.voltage * phases) if phases else 0.0
    if inputs.phase_currents:
        others = [amps - (own_per_phase if phases == 3 or index == 0 else 0.0) for index, amps in enumerate(inputs.phase_currents)]
        busiest = max(others)
    elif inputs.grid_w is not None:
        busiest = (inputs.grid_w - own_w) / (3 * config.voltage)
    else:
        return min(config.min_current, settings.main_fuse_a)
    return max(0.0, settings.main_fuse_a - busiest)


def _floor(value: float, step: float) -> float:
    return math.floor(value / step + 1e-9) * step


def step(config: LoadpointConfig, settings: ControlSettings, state: ControlState, inputs: Inputs) -> tuple[ControlState, Decision]:
    """One decision. Returns the new state (the given one is not changed) and the decision."""
    s = replace(state, switches=[t for t in state.switches if inputs.now - t < 3600.0])
    dt = 0.0 if s.last_tick is None else max(0.0, min(inputs.now - s.last_tick, 3 * settings.interval))
    s.last_tick = inputs.now
    fixed_phases = {"1": 1, "3": 3}.get(config.phases)
    if fixed_phases is not None:
        s.phases = fixed_phases
    own_w = inputs.charge_w if inputs.charge_w is not None else (s.current_a * config.voltage * s.phases if s.enabled else 0.0)
    surplus = surplus_w(config, inputs, own_w)
    if inputs.plugged != s.plugged:  # a new car (or none): nothing from the last session counts
        s.plugged, s.surplus_wh, s.deficit_wh, s.phase_wh = inputs.plugged, 0.0, 0.0, 0.0

    def decide(limit: float, enabled: bool, reason: str, managed: bool = True) -> tuple[ControlState, Decision]:
        if enabled and not s.enabled:
            s.starts += 1
        elif s.enabled and not enabled:
            s.stops += 1
        s.enabled, s.current_a = enabled, limit
        reason = reason if reason.startswith("mode ") else f"mode {mode}: {reason}"
        timers = {"enable_wh": round(s.surplus_wh, 2), "enable_needed_wh": round(_enable_wh(config, settings, s.phases), 2),
                  "disable_wh": round(s.deficit_wh, 2), "disable_needed_wh": round(_disable_wh(config, settings, s.phases), 2),
                  "phase_wh": round(s.phase_wh, 2), "phase_switches_last_hour": len(s.switches),
                  "phase_switches_allowed_per_hour": settings.max_phase_switches_per_hour}
        return s, Decision(limit, s.phases, enabled, reason, managed, None if surplus is None else round(surplus, 1), fuse, timers)

    mode = inputs.mode
    fuse = fuse_limit_a(config, settings, inputs, own_w, s.phases)
    if mode == "off":
        return decide(0.0, False, "mode off: 0 A limit")
    if mode == "now":
        if config.phases == "switchable" and s.phases != 3 and _may_switch(settings, s):
            _switch(s, 3, inputs.now)
            fuse = fuse_limit_a(config, settings, inputs, own_w, 3)
        if fuse is None:
            return decide(config.max_current, True, "mode now: full power (the charger's own limit; no profile of ours)", managed=False)
        limit = _floor(min(config.max_current, fuse), settings.resolution_a)
        if limit < config.min_current:
            return decide(0.0, False, f"mode now, but the main fuse leaves {fuse:.1f} A, below the minimum {config.min_current:g} A: paused")
        return decide(limit, True, f"mode now: {limit:g} A" + (" (main-fuse limit)" if limit < config.max_current else ""))
    if not inputs.plugged:
        s.surplus_wh = s.deficit_wh = s.phase_wh = 0.0
        if mode == "minpv":
            return decide(config.min_current, False, "no car plugged in; minimum current offered")
        return decide(0.0, False, "no car plugged in")
    if surplus is None:
        if mode == "minpv":
            return decide(config.min_current if (fuse is None or fuse >= config.min_current) else 0.0, True, "surplus unknown (no recent readings): minimum current")
        return decide(0.0, False, "surplus unknown (no recent readings of the meter): paused")

    if inputs.hold and s.enabled:
        limit = s.current_a if fuse is None or fuse >= s.current_a else _floor(fuse, settings.resolution_a)
        if limit >= config.min_current:
            return decide(limit, True, f"holding {limit:g} A until the meter and the car's power are known for one moment")

    # ------------------------------------------------------------- phases
    if config.phases == "switchable":
        _phase_step(config, settings, s, surplus, dt, inputs.now, mode)
    p = s.phases
    min_w = config.min_power(p)

    # ------------------------------------------------------ enable / disable
    if mode == "pv":
        if not s.enabled:
            s.deficit_wh = 0.0
            s.surplus_wh = max(0.0, s.surplus_wh + (surplus - min_w) * dt / 3600.0)
            needed = _enable_wh(config, settings, p)
            if s.surplus_wh < needed:
                return decide(0.0, False, f"waiting for surplus: {surplus:.0f} W, {s.surplus_wh:.1f} of {needed:.1f} Wh above {min_w:.0f} W gathered")
            s.surplus_wh = 0.0
            enabling = True
        else:
            enabling = False
            s.deficit_wh = max(0.0, s.deficit_wh + (min_w - surplus) * dt / 3600.0)
            needed = _disable_wh(config, settings, p)
            if s.deficit_wh >= needed:
                s.deficit_wh = 0.0
                return decide(0.0, False, f"surplus {surplus:.0f} W below the minimum {min_w:.0f} W for {needed:.1f} Wh of grid energy: paused")
    else:  # minpv: always at least the minimum
        enabling = not s.enabled

    # ------------------------------------------------------------ current
    target = _floor(max(config.min_current, min(config.max_current, surplus / (config.voltage * p))), settings.resolution_a)
    previous = config.min_current if enabling or not s.enabled else s.current_a
    ramp = _floor(max(settings.resolution_a, settings.ramp_a_per_s * dt), settings.resolution_a)
    limit = min(target, previous + ramp) if target > previous else target
    reason = f"surplus {surplus:.0f} W on {p} phase{'s' if p > 1 else ''}: {limit:g} A"
    if enabling:
        reason = f"enabled: {reason}"
    elif limit < target:
        reason += f" (ramping towards {target:g} A)"
    elif target <= config.min_current and surplus < min_w:
        reason += f" (at the minimum; {s.deficit_wh:.1f} of {_disable_wh(config, settings, p):.1f} Wh grid energy before pausing)" if mode == "pv" else " (minimum, mode minpv)"
    if fuse is not None and fuse < limit:
        if fuse < config.min_current:
            return decide(0.0, False, f"the main fuse leaves {fuse:.1f} A, below the minimum {config.min_current:g} A: paused")
        limit = _floor(fuse, settings.resolution_a)
        reason += f"; main-fuse limit {limit:g} A"
    return decide(limit, True, reason)


def _enable_wh(config: LoadpointConfig, settings: ControlSettings, phases: int) -> float:
    return config.min_power(phases) * settings.enable_s / 3600.0


def _disable_wh(config: LoadpointConfig, settings: ControlSettings, phases: int) -> float:
    return config.min_power(phases) * settings.disable_s / 3600.0


def _may_switch(settings: ControlSettings, s: ControlState) -> bool:
    return len(s.switches) < settings.max_phase_switches_per_hour


def _switch(s: ControlState, phases: int, now: float) -> None:
    if phases != s.phases:
        s.phases = phases
        s.switches.append(now)
        s.phase_wh = s.deficit_wh = 0.0  # the integrals were measured against the other phase count's minimum


def _phase_step(config: LoadpointConfig, settings: ControlSettings, s: ControlState, surplus: float, dt: float, now: float, mode: str) -> None:
    """Choose 1 or 3 phases for a switchable loadpoint from the energy beyond 3-phase minimum power."""
    three_min = config.min_power(3)
    if not s.enabled:
        # not charging: switching costs nothing at the car, so start on what the surplus can carry
        wanted = 3 if surplus >= three_min else 1
        if wanted != s.phases and _may_switch(settings, s):
            s.phases = wanted  # not a switch under load: not counted
        s.phase_wh = 0.0
        return
    if s.phases == 1:
        s.phase_wh = max(0.0, s.phase_wh + (surplus - three_min) * dt / 3600.0)
        if s.phase_wh >= three_min * settings.phase_up_s / 3600.0 and _may_switch(settings, s):
            _switch(s, 3, now)
    else:
        s.phase_wh = min(0.0, s.phase_wh + (surplus - three_min) * dt / 3600.0)
        if -s.phase_wh >= three_min * settings.phase_down_s / 3600.0 and _may_switch(settings, s):
            _switch(s, 1, now)
