"""Hardware a gateway may lack by design, as `/api/health` reports it.

A gateway without a Bluetooth adapter (most servers, every container without
`io.balena.features.dbus`, the demo on a laptop), with `ble_enabled = false`, or with
`wifi_backend = "none"` (wired, no NetworkManager) is complete as it is. Counting such a
part as degradation would make `egw status` exit 1 and a health probe alert on a
healthy gateway, and hide real faults among permanent ones. So these parts are reported
under `hardware` with their state and reason, and never among the degradation reasons.

The BLE actor (actors.ble.actor) publishes `unavailable` with a reason when it finds no
BlueZ, no adapter or no bus, and keeps retrying on its own; that state is the one
treated as absent hardware. Any other state of it (failed, hung) is still degradation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any

OPTIONAL_HARDWARE_PARTS = frozenset({"ble"})
"""Tree paths of actors whose hardware may be missing."""

ABSENT_STATES = frozenset({"unavailable"})
"""States such an actor publishes when its hardware is not there (with a reason)."""


def is_absent_hardware(record: Mapping[str, Any]) -> bool:
    """True for an optional-hardware actor reporting its hardware missing: not a degradation."""
    return record.get("path", record.get("name")) in OPTIONAL_HARDWARE_PARTS and record.get("state") in ABSENT_STATES


def hardware_report(records: Iterable[Mapping[str, Any]], config: Mapping[str, Any]) -> dict[str, dict[str, Any]]:
    """{"ble": {...}, "wifi": {...}}: each part's state ("absent", "unavailable" or the actor's own) and why.

    `records` is the top level of the actor tree (as `GetTree` answers), `config` the
    gateway's settings (ble_enabled, ble_adapter, wifi_backend).
    """
    report: dict[str, dict[str, Any]] = {}
    if not config.get("ble_enabled", True):
        report["ble"] = {"state": "absent", "reason": "disabled by configuration (ble_enabled = false)"}
    else:
        record = next((r for r in records if r.get("name") == "ble"), None)
        if record is None:
            report["ble"] = {"state": "starting", "reason": "the BLE actor has not reported yet"}
        else:
            info = record.get("info") if isinstance(record.get("info"), Mapping) else {}
            entry: dict[str, Any] = {"state": record.get("state"), "adapter": config.get("ble_adapter", "hci0")}
            if info.get("reason"):
                entry["reason"] = info["reason"]
            report["ble"] = entry
    backend = config.get("wifi_backend", "networkmanager")
    if backend == "none":
        report["wifi"] = {"state": "absent", "reason": "no Wi-Fi provisioning by configuration (wifi_backend = none)"}
    else:
        report["wifi"] = {"state": "simulated" if backend == "fake" else "configured", "backend": backend}
    return report
