"""Plausible physical values for a simulated site: a daily PV curve and counters that integrate it.

Values depend only on the time the model is asked about (and the energy integrated up to
then), so a test that pins the simulator's clock knows exactly what every register holds.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class PvModel:
    """One inverter (+ house meter and battery) in a sunny place, clear sky, solar noon at 12:00 UTC."""

    peak_w: float = 5000.0
    house_load_w: float = 1200.0
    energy_wh: float = 1_234_567.0
    import_wh: float = 345_678.0
    export_wh: float = 456_789.0
    _last: float | None = field(default=None, repr=False)

    def pv_power(self, t: float) -> float:
        hour = (t % 86400) / 3600.0
        if not 6.0 <= hour <= 18.0:
            return 0.0
        return self.peak_w * math.sin(math.pi * (hour - 6.0) / 12.0) ** 1.5

    def advance(self, t: float) -> None:
        """Integrate the counters up to `t` (trapezoid over the time since the last call)."""
        if self._last is not None and t > self._last:
            dt_h = (t - self._last) / 3600.0
            ac0, ac1 = self.ac_power(self._last), self.ac_power(t)
            self.energy_wh += (ac0 + ac1) / 2 * dt_h
            grid0, grid1 = self.house_load_w - ac0, self.house_load_w - ac1
            grid = (grid0 + grid1) / 2 * dt_h
            if grid >= 0:
                self.import_wh += grid
            else:
                self.export_wh -= grid
        if self._last is None or t > self._last:
            self._last = t

    def ac_power(self, t: float) -> float:
        return 0.97 * self.pv_power(t)

    def values(self, t: float) -> dict[str, float]:
        """Normalized quantities (the gateway's names and units) at time `t`."""
        self.advance(t)
        ac = self.ac_power(t)
        volts = [230.0 + 2.0 * math.sin(t / 60.0 + k) for k in range(3)]
        return {
            "pv_power_w": self.pv_power(t),
            "ac_power_w": ac,
            "energy_total_wh": self.energy_wh,
            "grid_frequency_hz": 50.0 + 0.05 * math.sin(t / 30.0),
            "voltage_l1_v": volts[0],
            "voltage_l2_v": volts[1],
            "voltage_l3_v": volts[2],
            "current_l1_a": ac / 3 / volts[0],
            "current_l2_a": ac / 3 / volts[1],
            "current_l3_a": ac / 3 / volts[2],
            "battery_soc_pct": 50.0 + 30.0 * math.sin(t / 7200.0),
            "meter_power_w": self.house_load_w - ac,
            "meter_import_wh": self.import_wh,
            "meter_export_wh": self.export_wh,
            "status": 2.0 if ac > 0 else 1.0,
        }
