"""A scriptable OCPP 1.6-J charge point: `python -m simulators.charger --help`.

Importable for the demo and the tests:

    from simulators.charger import Options, run_scenario, ChargerSimulator
    result = await run_scenario("normal", Options(url="ws://127.0.0.1:9000/ocpp/CP1"))

    sim = ChargerSimulator("ws://127.0.0.1:9000/ocpp/DEMO1", scenario="normal")
    sim.start()   # repeats the scenario in a background thread until stop()
    sim.stop()
"""

from __future__ import annotations

import asyncio
import threading

from simulators.charger.chargepoint import SimulatedChargePoint
from simulators.charger.scenarios import SCENARIOS, Options, ScenarioResult, run_scenario

__all__ = ["SCENARIOS", "ChargerSimulator", "Options", "ScenarioResult", "SimulatedChargePoint", "run_scenario"]


class ChargerSimulator:
    """Runs a scenario over and over in its own thread and event loop (for the demo).

    Failures (the gateway not up yet, a restart) are retried after `pause` seconds.
    Start it after the actor system has forked its processes: it starts a thread.
    """

    def __init__(self, url: str, scenario: str = "normal", pause: float = 5.0, **options: object) -> None:
        self.options = Options(url=url, **options)  # type: ignore[arg-type]
        self.scenario = scenario
        self.pause = pause
        self.sessions = 0
        self.last_error: str | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=lambda: asyncio.run(self._run()), name=f"charger-sim-{self.scenario}", daemon=True)
        self._thread.start()

    async def _run(self) -> None:
        while not self._stop.is_set():
            try:
                await run_scenario(self.scenario, self.options)
                self.sessions += 1
            except Exception as exc:  # noqa: BLE001 - a demo simulator keeps trying
                self.last_error = f"{type(exc).__name__}: {exc}"
            await asyncio.to_thread(self._stop.wait, self.pause)

    def stop(self, timeout: float = 10.0) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
