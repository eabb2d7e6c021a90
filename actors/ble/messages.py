"""Messages of the BLE family: how other parts of the gateway steer provisioning."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpenProvisioningWindow:
    """Open (or extend) the provisioning window: `minutes`, or the configured length when None."""

    minutes: float | None = None


@dataclass(frozen=True)
class CloseProvisioningWindow:
    """End the provisioning window now: stop advertising, refuse writes over BLE."""


@dataclass(frozen=True)
class GetBleStatus:
    """Ask the BLE actor for its state; answered with BleStatus."""


@dataclass(frozen=True)
class BleStatus:
    state: str  # "starting", "running" or "unavailable"
    advertising: bool
    window_open: bool
    window_remaining_s: float
    reason: str | None = None
    requests_served: int = 0
