"""Charging limits as OCPP 1.6 SetChargingProfile requests, and what to try when a charger says no.

The first choice is what OCPP 1.6 section 3.13 describes for a central system managing a
connector: a `TxDefaultProfile` (it applies to the session under way and the next ones),
`Absolute`, in amps, at the charger's highest stack level (`ChargeProfileMaxStackLevel`,
so it wins over profiles others installed at lower levels). Real chargers refuse parts
of that; each answer `Rejected` moves to the next variant of `VARIANTS`, in this order:

  1. TxDefaultProfile, Absolute, A, stack level ChargeProfileMaxStackLevel
  2. the same at stack level 0 (chargers that only take level 0)
  3. TxDefaultProfile, Relative, A, stack level 0 (chargers that refuse Absolute without a start)
  4. TxDefaultProfile, Absolute, W, stack level 0 (chargers that only take watts)
  5. TxProfile, Absolute, A, with the transaction id (chargers that ignore TxDefault; needs a session)

The variant a charger model accepted is stored (`storage.loadpoints`), so the next
charger of that model, or the next start of the gateway, begins with it. Every variant
uses the same `chargingProfileId` per loadpoint, so a new limit replaces the old one
(section 3.13.2) instead of piling up profiles.
"""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Any

VARIANTS: tuple[str, ...] = ("tx_default_max_level", "tx_default_level0", "tx_default_relative", "tx_default_watts", "tx_profile")
PROFILE_ID_BASE = 7100  # chargingProfileId = base + connector: ours, stable, easy to spot in a charger's list


def profile_id(connector: int) -> int:
    return PROFILE_ID_BASE + connector


def _iso(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def build_profile(variant: str, *, limit_a: float, phases: int, voltage: float, connector: int, max_stack_level: int,
                  transaction_id: int | None, now_wall: float) -> dict[str, Any] | None:
    """The `csChargingProfiles` object (OCPP camelCase) of `variant`; None when it cannot apply (TxProfile, no session)."""
    purpose, kind, unit, level = "TxDefaultProfile", "Absolute", "A", 0
    if variant == "tx_default_max_level":
        level = max(0, int(max_stack_level))
    elif variant == "tx_default_relative":
        kind = "Relative"
    elif variant == "tx_default_watts":
        unit = "W"
    elif variant == "tx_profile":
        if transaction_id is None:
            return None
        purpose = "TxProfile"
    elif variant != "tx_default_level0":
        raise ValueError(f"unknown profile variant {variant!r}")
    limit = round(limit_a * voltage * phases, 1) if unit == "W" else round(limit_a, 1)
    schedule: dict[str, Any] = {"chargingRateUnit": unit, "chargingSchedulePeriod": [{"startPeriod": 0, "limit": limit, "numberPhases": phases}]}
    if kind == "Absolute":
        schedule["startSchedule"] = _iso(now_wall)
    profile: dict[str, Any] = {"chargingProfileId": profile_id(connector), "stackLevel": level, "chargingProfilePurpose": purpose,
                               "chargingProfileKind": kind, "chargingSchedule": schedule}
    if purpose == "TxProfile":
        profile["transactionId"] = transaction_id
    return profile


def next_variant(variant: str, has_transaction: bool) -> str | None:
    """The variant to try after `variant` was rejected; None when none is left."""
    index = VARIANTS.index(variant) + 1
    while index < len(VARIANTS):
        candidate = VARIANTS[index]
        if candidate != "tx_profile" or has_transaction:
            return candidate
        index += 1
    return None


def first_variant(remembered: str | None) -> str:
    return remembered if remembered in VARIANTS else VARIANTS[0]


def clear_request(connector: int) -> dict[str, Any]:
    """ClearChargingProfile fields for the profile of ours on `connector` (leaving smart mode)."""
    return {"id": profile_id(connector), "connector_id": connector}
