"""One loadpoint's live bookkeeping in the energy actor, and how REST and the live feed show it.

Not persisted: rebuilt from the charger, the store and the next decision after a restart
(the controller's own state, `ControlState`, is what `storage.loadpoints` keeps).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.energy import profiles
from actors.energy.control import ControlState, Decision, LoadpointConfig


@dataclass
class Runtime:
    """One loadpoint's live bookkeeping (not persisted: rebuilt from the charger and the store)."""

    state: ControlState
    decision: Decision | None = None
    decided_at: float | None = None
    mode: str = "pv"
    mode_source: str = "config"
    sent_key: tuple | None = None  # what the charger accepted last
    sent: dict[str, Any] | None = None  # the last profile sent and its answer, for REST
    in_flight: tuple[str, float, tuple] | None = None  # (request id, monotonic time sent, decision key)
    variant: str = profiles.VARIANTS[0]
    zero_refused: bool = False
    exhausted_until: float = 0.0
    charger: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, Any] | None = None


def runtime_view(lp: LoadpointConfig, rt: Runtime) -> dict[str, Any]:
    """The loadpoint as the energy actor publishes it (GET /api/loadpoints/{id} and live topic loadpoint/<id>)."""
    d = rt.decision
    return {
        "id": lp.id, "mode": rt.mode, "mode_source": rt.mode_source,
        "decision": None if d is None else {"limit_a": d.limit_a, "phases": d.phases, "enabled": d.enabled, "managed": d.managed,
                                            "reason": d.reason, "surplus_w": d.surplus_w, "fuse_limit_a": d.fuse_limit_a,
                                            "timers": dict(d.timers), "at": rt.decided_at},
        "charger_state": {k: rt.charger.get(k) for k in ("connected", "status", "transaction_id", "power_w")},
        "limit_sent": rt.sent, "accepted": rt.sent_key is not None and d is not None and rt.sent_key == d.key(),
        "profile_variant": rt.variant, "zero_refused": rt.zero_refused, "composite_schedule": rt.schedule,
        "starts": rt.state.starts, "stops": rt.state.stops,
    }
