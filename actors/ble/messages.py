"""Messages of the BLE family: how other parts of the gateway steer provisioning.

Every request may carry a `request_id`, echoed in the `BleStatus` it is answered with,
so that a caller with several asks in flight (the REST API) matches each answer to
its own question.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class OpenProvisioningWindow:
    """Open (or extend) the provisioning window: `minutes`, or the configured length when None."""

    minutes: float | None = None
    request_id: str = ""


@dataclass(frozen=True)
class CloseProvisioningWindow:
    """End the provisioning window now: stop advertising, refuse writes over BLE."""

    request_id: str = ""


@dataclass(frozen=True)
class GetBleStatus:
    """Ask the BLE actor for its state; answered with BleStatus."""

    request_id: str = ""


@dataclass(frozen=True)
class BleStatus:
    state: str  # "starting", "running" or "unavailable"
    advertising: bool
    window_open: bool
    window_remaining_s: float
    reason: str | None = None
    requests_served: int = 0
    request_id: str = ""  # of the request this answers
