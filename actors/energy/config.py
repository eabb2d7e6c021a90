"""`[[loadpoints]]` entries and the energy settings: validated once, each error naming its field.

    [[loadpoints]]
    id = "garage"              # required: [A-Za-z0-9_.-], 1..64
    charger = "CP1"            # required: the chargePointId
    connector = 1
    grid_meter = "grid-meter"  # a device id (import positive, meter_power_w)
    battery = "house-battery"  # optional device id (battery_soc_pct, ac_power_w discharge positive)
    pv = ["pv-roof"]           # PV device ids (pv_power_w, else ac_power_w)
    loads = []                 # other measured loads, needed for pv/minpv without a grid meter
    min_current = 6.0          # A, at least 6 (IEC 61851)
    max_current = 16.0         # A
    phases = "3"               # "1", "3" or "switchable"
    mode = "pv"                # off, now, minpv, pv
    battery_priority_soc = 50  # %, below: the battery charges first
    battery_discharge_soc = 95 # %, above: the battery may discharge into the car

A loadpoint in `pv` or `minpv` needs a surplus to follow: a grid meter, or PV devices
and the other loads. Without either that mode is refused here (and over REST), rather
than charging on a guess.
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from actors.energy.control import MODES, SMART_MODES, ControlSettings, LoadpointConfig

_ID = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
_CHARGER_ID = re.compile(r"^[A-Za-z0-9_.:@+-]{1,48}$")
FIELDS = ("id", "charger", "connector", "grid_meter", "battery", "pv", "loads", "min_current", "max_current", "phases", "mode",
          "voltage", "battery_priority_soc", "battery_discharge_soc")
PHASES = ("1", "3", "switchable")
NO_SURPLUS = "needs a surplus to follow: set grid_meter, or pv and loads (the other measured loads)"


def mode_problem(loadpoint: LoadpointConfig, mode: str) -> str | None:
    """Why `loadpoint` cannot run in `mode`; None when it can."""
    if mode not in MODES:
        return f"must be one of {', '.join(MODES)}, got {mode!r}"
    if mode in SMART_MODES and loadpoint.surplus_source is None:
        return f"mode {mode!r} {NO_SURPLUS}"
    return None


def parse_loadpoints(raw: Any, devices: Any = ()) -> tuple[list[LoadpointConfig], list[str]]:
    """The loadpoints of the `loadpoints` setting and every problem, as 'loadpoints[i] (id).field: problem'.

    `devices` (the configured device list) lets a misspelled device id be caught here
    instead of showing as "surplus unknown" forever.
    """
    known_devices = {str(d.get("id")) for d in devices or () if isinstance(d, Mapping)}
    loadpoints: list[LoadpointConfig] = []
    problems: list[str] = []
    seen: set[str] = set()
    for index, entry in enumerate(raw or ()):
        where = f"loadpoints[{index}]"
        if not isinstance(entry, Mapping):
            problems.append(f"{where}: expected a table, got {type(entry).__name__}")
            continue
        if isinstance(entry.get("id"), str):
            where += f" ({entry['id']})"
        found: list[str] = []

        def bad(field: str, problem: str, where: str = where, found: list[str] = found) -> None:
            found.append(f"{where}.{field}: {problem}")

        for key in entry:
            if key not in FIELDS:
                bad(str(key), f"unknown field (known: {', '.join(FIELDS)})")
        ident = entry.get("id")
        if not isinstance(ident, str) or not _ID.match(ident):
            bad("id", f"required: 1 to 64 of A-Z a-z 0-9 _ . -, got {ident!r}")
        elif ident in seen:
            bad("id", f"duplicate {ident!r}")
        else:
            seen.add(ident)
        charger = entry.get("charger")
        if not isinstance(charger, str) or not _CHARGER_ID.match(charger):
            bad("charger", f"required: the charger's chargePointId, got {charger!r}")
        connector = entry.get("connector", 1)
        if isinstance(connector, bool) or not isinstance(connector, int) or not 1 <= connector <= 100:
            bad("connector", f"must be an integer in 1..100, got {connector!r}")

        def device(field: str, entry: Mapping[str, Any] = entry, bad: Any = bad) -> str | None:
            value = entry.get(field)
            if value is None or value == "":
                return None
            if not isinstance(value, str):
                bad(field, f"must be a device id, got {value!r}")
                return None
            if known_devices and value not in known_devices:
                bad(field, f"no device {value!r} is configured (devices: {', '.join(sorted(known_devices))})")
            return value

        def device_list(field: str, entry: Mapping[str, Any] = entry, bad: Any = bad) -> tuple[str, ...]:
            value = entry.get(field, [])
            if isinstance(value, str):
                value = [value]
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                bad(field, f"must be a list of device ids, got {value!r}")
                return ()
            for v in value:
                if known_devices and v not in known_devices:
                    bad(field, f"no device {v!r} is configured (devices: {', '.join(sorted(known_devices))})")
            return tuple(value)

        def number(field: str, default: float, low: float, high: float, entry: Mapping[str, Any] = entry, bad: Any = bad) -> float:
            value = entry.get(field, default)
            if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or not low <= value <= high:
                bad(field, f"must be a number in {low:g}..{high:g}, got {value!r}")
                return default
            return float(value)

        grid, battery = device("grid_meter"), device("battery")
        pv, loads = device_list("pv"), device_list("loads")
        low = number("min_current", 6.0, 6.0, 80.0)
        high = number("max_current", 16.0, 6.0, 80.0)
        if high < low:
            bad("max_current", f"must be at least min_current ({low:g}), got {high:g}")
        phases = str(entry.get("phases", "3"))
        if phases not in PHASES:
            bad("phases", f"must be 1, 3 or \"switchable\", got {entry.get('phases')!r}")
        mode = entry.get("mode", "pv")
        voltage = number("voltage", 230.0, 100.0, 300.0)
        priority = number("battery_priority_soc", 50.0, 0.0, 100.0)
        discharge = number("battery_discharge_soc", 95.0, 0.0, 100.0)
        if discharge < priority:
            bad("battery_discharge_soc", f"must be at least battery_priority_soc ({priority:g}), got {discharge:g}")
        if found:
            problems.extend(found)
            continue
        loadpoint = LoadpointConfig(id=ident, charger=charger, connector=connector, grid_meter=grid, battery=battery, pv=pv, loads=loads,
                                    min_current=low, max_current=high, phases=phases, mode=str(mode), voltage=voltage,
                                    battery_priority_soc=priority, battery_discharge_soc=discharge)
        problem = mode_problem(loadpoint, mode) if isinstance(mode, str) else f"must be one of {', '.join(MODES)}, got {mode!r}"
        if problem:
            problems.append(f"{where}.mode: {problem}")
            continue
        loadpoints.append(loadpoint)
    return loadpoints, problems


def control_settings(values: Mapping[str, Any]) -> ControlSettings:
    fuse = float(values.get("energy_main_fuse_a") or 0.0)
    return ControlSettings(interval=float(values.get("energy_interval", 10.0)), main_fuse_a=fuse if fuse > 0 else None)


def settings_problems(values: Mapping[str, Any]) -> list[tuple[str, str]]:
    problems = []
    interval = values.get("energy_interval", 10.0)
    if not isinstance(interval, (int, float)) or not 1.0 <= float(interval) <= 300.0:
        problems.append(("energy_interval", f"must be between 1 and 300 seconds, got {interval!r}"))
    fuse = values.get("energy_main_fuse_a", 0.0)
    if not isinstance(fuse, (int, float)) or not (fuse == 0 or 6.0 <= float(fuse) <= 1000.0):
        problems.append(("energy_main_fuse_a", f"must be 0 (no limit) or between 6 and 1000 A, got {fuse!r}"))
    return problems
