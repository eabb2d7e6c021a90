"""The demo's solar-surplus site: a grid meter that sees the simulated car, and the car's charger loop.

`egw demo` runs the loadpoint `demo-garage` in pv mode on charger `DEMO-CP2`. For the
energy manager's decisions to mean something, the grid meter must show what the car
draws, as a real meter at the house connection does: `CarAwareMeter` is the meter's
PV model with the car's power added to the import (and to the phase currents).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from simulators.inverter.model import PvModel


class CarAwareMeter(PvModel):
    """A `PvModel` whose meter import includes `extra_load_w()` (the simulated car), split over `phases()` phases."""

    def __init__(self, base: PvModel, extra_load_w: Callable[[], float], phases: Callable[[], int]) -> None:
        super().__init__(peak_w=base.peak_w, house_load_w=base.house_load_w, energy_wh=base.energy_wh, import_wh=base.import_wh, export_wh=base.export_wh)
        self.extra_load_w, self.phases = extra_load_w, phases

    def values(self, t: float) -> dict[str, float]:
        values = super().values(t)
        car = self.extra_load_w()
        values["meter_power_w"] += car
        per_phase = car / max(1, self.phases()) / 230.0
        for n in range(1, self.phases() + 1):
            values[f"current_l{n}_a"] += per_phase
        return values


class DemoCar:
    """A charger with a car plugged in, session after session, in its own thread (started after the actor system forks)."""

    def __init__(self, url: str, interval: float = 5.0) -> None:
        self.url, self.interval = url, interval
        self.cp: Any = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name="demo-car", daemon=True)

    def power_w(self) -> float:
        cp = self.cp
        return cp.car_power_w() if cp is not None and cp.car is not None and 1 in cp.transactions else 0.0

    def phases(self) -> int:
        cp = self.cp
        return cp.car.phases_used if cp is not None and cp.car is not None else 3

    def start(self) -> DemoCar:
        self._thread.start()
        return self

    async def _run(self) -> None:
        from simulators.charger.scenarios import Options, ScenarioResult, Session, plug_in_and_charge

        stop = asyncio.Event()

        async def watch() -> None:
            while not self._stop.is_set():
                await asyncio.sleep(0.2)
            stop.set()

        watcher = asyncio.create_task(watch())
        while not self._stop.is_set():
            session = Session(Options(url=self.url, samples=720, interval=self.interval))  # an hour-long session, then the next
            try:
                cp = await session.open()
                await cp.boot(model="SimCar")
                await cp.status(1, "Available")
                self.cp = cp
                await plug_in_and_charge(cp, session.options, ScenarioResult("car", "demo"), stop)
            except Exception:  # noqa: BLE001 - the gateway may still be starting: retry
                pass
            finally:
                try:
                    await session.close()
                except Exception:  # noqa: BLE001
                    pass
            for _ in range(30):
                if self._stop.is_set():
                    break
                await asyncio.sleep(0.1)
        await watcher

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(10)
