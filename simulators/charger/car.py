"""A simulated electric car behind a charger: what a charging limit does to the power drawn.

Pure and clock-free (every method takes `at`, seconds), so the simulated charger, the
energy tests and `bench/energy.py` drive the very same car:

* it charges at min(limit, the car's own maximum), on min(the limit's phases, its own);
* it takes `follow_s` seconds to follow a new limit (a linear ramp, as the car's onboard
  charger does, both up and down);
* a limit below `min_current` (6 A, IEC 61851) pauses it: 0 W, not a trickle;
* it stops drawing when its battery is full.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Car:
    max_current_a: float = 16.0
    phases: int = 3  # what the onboard charger can use: 1 or 3
    battery_wh: float = 60_000.0
    soc_percent: float = 20.0
    follow_s: float = 3.0
    min_current: float = 6.0
    voltage: float = 230.0
    _target_a: float = field(default=0.0, repr=False)
    _from_a: float = field(default=0.0, repr=False)
    _changed_at: float = field(default=0.0, repr=False)
    _phases_used: int = field(default=0, repr=False)
    _last: float | None = field(default=None, repr=False)
    energy_wh: float = 0.0

    def set_limit(self, limit_a: float, phases: int, at: float) -> None:
        """A new limit per phase (A) on `phases` phases, from time `at`."""
        self.advance(at)
        target = 0.0 if limit_a < self.min_current else min(limit_a, self.max_current_a)
        phases_used = min(phases, self.phases) if phases else self.phases
        if target == self._target_a and phases_used == self._phases_used:
            return
        self._from_a, self._target_a, self._changed_at = self.current_a(at), target, at
        if phases_used != self._phases_used:
            self._phases_used = phases_used

    def current_a(self, at: float) -> float:
        if self.full:
            return 0.0
        if self.follow_s <= 0 or at >= self._changed_at + self.follow_s:
            return self._target_a
        share = max(0.0, (at - self._changed_at) / self.follow_s)
        return self._from_a + (self._target_a - self._from_a) * share

    def power_w(self, at: float) -> float:
        return self.current_a(at) * self.voltage * (self._phases_used or self.phases)

    @property
    def phases_used(self) -> int:
        return self._phases_used or self.phases

    @property
    def full(self) -> bool:
        return self.soc_percent >= 100.0

    def advance(self, at: float) -> float:
        """Integrate the energy up to `at`; the Wh added."""
        if self._last is None or at <= self._last:
            self._last = at if self._last is None else self._last
            return 0.0
        added = self.power_w(self._last) * (at - self._last) / 3600.0
        added = min(added, self.battery_wh * (100.0 - self.soc_percent) / 100.0)
        self.energy_wh += added
        self.soc_percent = min(100.0, self.soc_percent + 100.0 * added / self.battery_wh)
        self._last = at
        return added
