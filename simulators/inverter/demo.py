"""Simulated site for `egw demo`: a few inverters and a meter, and the device settings to poll them.

    sims, devices = start_demo_site()
    config["devices"] = devices      # the gateway polls them like real hardware
    ...
    for sim in sims: sim.stop()

The site shows the interesting cases: SunSpec auto-discovery, a vendor map, two unit ids
behind one endpoint (one shared connection), and a float32 meter.
"""

from __future__ import annotations

from typing import Any

from simulators.inverter.server import InverterSimulator

DEMO_SITE: tuple[tuple[str, tuple[int, ...], float], ...] = (
    ("sunspec", (1,), 6000.0),
    ("huawei_sun2000", (1, 2), 8000.0),
    ("eastron_sdm630", (1,), 0.0),
)


def start_demo_site(host: str = "127.0.0.1", poll_interval: float = 5.0) -> tuple[list[InverterSimulator], list[dict[str, Any]]]:
    """Start the simulators on free loopback ports; return them and matching device settings."""
    sims: list[InverterSimulator] = []
    devices: list[dict[str, Any]] = []
    try:
        for profile, units, peak in DEMO_SITE:
            sim = InverterSimulator(profile, port=0, units=units, host=host, peak_w=peak or 5000.0).start()
            sims.append(sim)
            for unit in units:
                device: dict[str, Any] = {"id": f"{profile.split('_')[0]}-{unit}", "host": host, "port": sim.port, "unit_id": unit, "poll_interval": poll_interval}
                if profile == "sunspec":
                    device["sunspec"] = True
                else:
                    device["profile"] = profile
                devices.append(device)
    except BaseException:
        for sim in sims:
            sim.stop()
        raise
    return sims, devices
