"""`egw demo` / `make run`: the gateway on simulated hardware, so a newcomer sees data flow.

The demo configuration points the gateway at simulators on free loopback ports:

* three Modbus TCP devices: a SunSpec inverter, a Huawei SUN2000 inverter and an
  Eastron SDM630 meter, each with a daily PV curve and integrating energy counters;
* a local ingest endpoint that verifies the gateway's signed batches (the gateway's key
  is registered with it, as a fleet backend would do at provisioning);
* one charge point that connects to the OCPP port and runs charging sessions in a loop;
* a second one with a car plugged in, steered by the loadpoint `demo-garage` in pv mode
  (the grid meter's import includes what the car draws, as at a real house connection).

The simulators run in the launcher process, started after the actor system has forked
its admin (no actor is ever forked from a threaded process).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from supervisor.config import GatewayConfig, load_config
from supervisor.embedded import free_port
from supervisor.logs import ActorLog

DEMO_DEVICES = (("pv-roof", "sunspec"), ("pv-garage", "huawei_sun2000"), ("grid-meter", "eastron_sdm630"))
DEMO_CHARGER = "DEMO-CP1"
DEMO_CAR_CHARGER = "DEMO-CP2"
DEMO_LOADPOINT = {"id": "demo-garage", "charger": DEMO_CAR_CHARGER, "grid_meter": "grid-meter", "pv": ["pv-roof", "pv-garage"],
                  "phases": "switchable", "mode": "pv"}
DEMO_DEFAULTS: dict[str, Any] = {
    "gateway_name": "egw-demo",
    "data_dir": "data/demo",
    "ocpp_unknown_chargers": "accept",
    "wifi_backend": "fake",
}


def demo_config(path: str | None = None, overrides: Mapping[str, Any] | None = None) -> GatewayConfig:
    """Demo defaults (simulated devices and uplink on free ports), then the usual layers."""
    base = dict(DEMO_DEFAULTS)
    base["devices"] = [
        {"id": device_id, "profile": profile, "host": "127.0.0.1", "port": free_port(), "unit_id": 1, "poll_interval": 2.0, "timeout": 1.0}
        for device_id, profile in DEMO_DEVICES
    ]
    base["uploads"] = [{"name": "demo-ingest", "url": f"http://127.0.0.1:{free_port()}/v1/batches"}]
    base["loadpoints"] = [dict(DEMO_LOADPOINT)]
    return load_config(path, overrides=overrides, base=base)


class DemoEnvironment:
    """Starts and stops the simulators the demo configuration points at."""

    def __init__(self, config: GatewayConfig) -> None:
        self.config = config
        self.log = ActorLog("demo")
        self.running: list[Any] = []
        self._charger_stop = threading.Event()

    def start(self) -> None:
        import logging

        from simulators.inverter.server import InverterSimulator

        for chatty in ("ocpp", "pymodbus"):  # the simulators' libraries log every frame at INFO
            logging.getLogger(chatty).setLevel(logging.WARNING)

        from simulators.charger.demo_site import CarAwareMeter, DemoCar

        self.car = DemoCar(f"ws://127.0.0.1:{self.config.ocpp_port}/ocpp/{DEMO_CAR_CHARGER}")
        steered_meters = {lp.get("grid_meter") for lp in self.config.loadpoints if lp.get("charger") == DEMO_CAR_CHARGER}
        for device in self.config.devices:
            if "profile" in device and device.get("host") == "127.0.0.1":
                sim = InverterSimulator(device["profile"], port=int(device["port"]), units=(int(device.get("unit_id", 1)),))
                if device["id"] in steered_meters:  # the meter at the house connection sees the demo car
                    for unit in sim.units.values():
                        unit.model = CarAwareMeter(unit.model, self.car.power_w, self.car.phases)
                sim.start()
                self.running.append(sim)
                self.log.info("simulated device serving", device=device["id"], profile=device["profile"], port=device["port"])
        for upload in self.config.uploads:
            self._start_ingest(upload)
        self._start_charger()

    def _start_ingest(self, upload: Mapping[str, Any]) -> None:
        from urllib.parse import urlparse

        from simulators.ingest.server import IngestServerThread
        from storage.identity import load_or_create_signer

        url = urlparse(upload["url"])
        if url.hostname != "127.0.0.1":
            return
        data_dir = Path(self.config.data_dir)
        signer = load_or_create_signer(data_dir)
        ingest = IngestServerThread(data_dir / "demo-ingest.db", port=url.port or 80).start()
        ingest.call(ingest.app.store.register, signer.public_key_pem())
        self.running.append(ingest)
        self.log.info("demo ingest endpoint receiving", url=upload["url"], gateway_key=signer.key_id)

    def _start_charger(self) -> None:
        url = f"ws://127.0.0.1:{self.config.ocpp_port}/ocpp/{DEMO_CHARGER}"
        thread = threading.Thread(target=lambda: asyncio.run(self._charge_forever(url)), name="demo-charger", daemon=True)
        thread.start()
        self.running.append(_Stopper(self._charger_stop, thread))
        self.log.info("simulated charger connecting", url=url)
        if any(lp.get("charger") == DEMO_CAR_CHARGER for lp in self.config.loadpoints):
            self.running.append(self.car.start())
            self.log.info("simulated car plugged in", charger=DEMO_CAR_CHARGER, url=self.car.url)

    async def _charge_forever(self, url: str) -> None:
        from simulators.charger.scenarios import Options, run_scenario

        options = Options(url=url, samples=6, interval=2.0, power_w=7400.0)
        while not self._charger_stop.is_set():
            try:
                result = await run_scenario("normal", options)
                self.log.info("demo charging session finished", charger=DEMO_CHARGER, steps=len(result.steps))
            except Exception as exc:  # noqa: BLE001 - the gateway may still be starting: retry
                self.log.info("demo charger will retry", error=f"{type(exc).__name__}: {exc}")
            for _ in range(50):
                if self._charger_stop.is_set():
                    return
                await asyncio.sleep(0.1)

    def stop(self) -> None:
        for simulator in reversed(self.running):
            try:
                simulator.stop()
            except Exception as exc:  # noqa: BLE001 - stop the rest regardless
                self.log.warning("simulator did not stop cleanly", error=repr(exc))
        self.running.clear()


class _Stopper:
    def __init__(self, event: threading.Event, thread: threading.Thread) -> None:
        self.event, self.thread = event, thread

    def stop(self) -> None:
        self.event.set()
        self.thread.join(10)
