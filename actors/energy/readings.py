"""What the energy actor reads from its peers, as pure functions: device values from the tree, a charger's stack level.

Kept apart from the actor so each is testable on plain data, and the live events it emits.
"""

from __future__ import annotations

import time
from typing import Any

from actors.ocpp.messages import CommandOutcome


def rt_get(charger: dict[str, Any], key: str) -> str:
    value = charger.get(key)
    return str(value) if value else "unknown"


def stack_level(outcome: CommandOutcome) -> int:
    """ChargeProfileMaxStackLevel from a GetConfiguration answer; 0 when the charger does not say."""
    if outcome.outcome != "result":
        return 0
    for entry in outcome.payload.get("configurationKey") or ():
        if isinstance(entry, dict) and entry.get("key") == "ChargeProfileMaxStackLevel":
            try:
                return max(0, int(str(entry.get("value", "0"))))
            except ValueError:
                return 0
    return 0


def device_values(records: Any) -> dict[str, dict[str, Any]]:
    """Device id -> {"values", "age"} from the tree's device records (shared endpoints split out)."""
    now = time.time()
    found: dict[str, dict[str, Any]] = {}

    def take(device_id: str, info: Any) -> None:
        if not isinstance(info, dict) or not isinstance(info.get("values"), dict):
            return
        last = info.get("last_poll")
        stamped = isinstance(last, (int, float)) and not isinstance(last, bool)
        found[device_id] = {"values": info["values"], "age": now - last if stamped else None, "at": float(last) if stamped else None}

    for record in records or ():
        if not isinstance(record, dict) or record.get("name") != "devices":
            continue
        for child in record.get("children") or ():
            info = child.get("info") if isinstance(child, dict) else None
            if isinstance(info, dict) and isinstance(info.get("devices"), dict):
                for device_id, shared in info["devices"].items():
                    take(str(device_id), shared)
            elif isinstance(child, dict):
                take(str(child.get("name")), info)
    return found


def live_events(views: dict[str, dict[str, Any]]) -> list[Any]:
    from actors.live.messages import LiveEvent

    now = time.time()
    return [LiveEvent(f"loadpoint/{lp_id}", "loadpoint", view, view["decision"]["at"] if view["decision"] else now, now) for lp_id, view in views.items()]

