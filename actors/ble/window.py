"""The provisioning window: the span of time in which BLE may change the gateway.

Open for `minutes` after boot and again after a trigger (a button, `egw`, or the
API), then closed: BLE stops advertising, the API token is no longer handed out and
write requests over BLE are refused. A short window keeps the attack surface of an
unauthenticated radio interface small. Time comes from an injected monotonic clock.
"""

from __future__ import annotations

import time
from collections.abc import Callable


class ProvisioningWindow:
    """Open until a monotonic deadline; `open()` extends it, `close()` ends it now."""

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.minutes = minutes
        self.clock = clock
        self._until = clock() + minutes * 60.0 if minutes > 0 else float("-inf")

    def is_open(self) -> bool:
        return self.clock() < self._until

    def remaining(self) -> float:
        """Seconds until the window closes; 0 when closed."""
        return max(0.0, self._until - self.clock())

    def open(self, minutes: float | None = None) -> None:
        span = self.minutes if minutes is None else minutes
        self._until = self.clock() + max(span, 0.0) * 60.0

    def close(self) -> None:
        self._until = float("-inf")
