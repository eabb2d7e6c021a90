"""Settings of the OCPP central system, with the defaults a home/site gateway wants."""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any, Literal


@dataclass(frozen=True)
class OcppPolicy:
    """How the central system treats chargers; read from the `ocpp` config section.

    heartbeat_interval        seconds, told to Accepted chargers in BootNotification
    boot_retry_interval       seconds before a Pending/Rejected charger may boot again
    unknown_id_tags           "accept" (free charging, the demo) or "reject" (Invalid)
                              for idTags not in the local authorization list
    live_metrics_db_interval  at most one write per session of live figures in this many
                              seconds (FlexiCharge's LIVEMETRICS_DB_UPDATE_INTERVAL); every
                              sample is stored regardless and pushed to subscribers at once
    call_timeout              seconds to wait for a charger's answer to our CALL
    call_queue_limit          central-initiated requests waiting behind the outstanding one
    refresh_grace             seconds after a reconnect without BootNotification before the
                              charger is asked for its status with TriggerMessage
    """

    heartbeat_interval: int = 300
    boot_retry_interval: int = 60
    unknown_id_tags: Literal["accept", "reject"] = "accept"
    live_metrics_db_interval: float = 10.0
    call_timeout: float = 30.0
    call_queue_limit: int = 16
    refresh_grace: float = 5.0

    @classmethod
    def from_config(cls, config: dict[str, Any] | None) -> OcppPolicy:
        """Pick the known keys from a config mapping; unknown keys are ignored here."""
        config = config or {}
        known = {f.name for f in fields(cls)}
        policy = cls(**{k: v for k, v in config.items() if k in known})
        if policy.unknown_id_tags not in ("accept", "reject"):
            raise ValueError(f"ocpp.unknown_id_tags must be 'accept' or 'reject', not {policy.unknown_id_tags!r}")
        if policy.call_queue_limit < 1 or policy.call_timeout <= 0 or policy.live_metrics_db_interval < 0:
            raise ValueError("ocpp.call_queue_limit must be >= 1, call_timeout > 0, live_metrics_db_interval >= 0")
        return policy
