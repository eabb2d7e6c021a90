"""Restart policy arithmetic, kept pure so it can be checked exactly under a frozen clock.

`RestartIntensity` is OTP's MaxR-in-MaxT rule; `BackoffSchedule` spaces restarts of one
child exponentially with jitter and forgets failures after a healthy period. Both take
`now` as an argument: the supervisor passes its clock, tests pass whatever they like.
"""

from __future__ import annotations

import random
from collections import deque

from supervisor.backoff import RetryBackoff
from supervisor.spec import Backoff, Intensity


class RestartIntensity:
    """Counts restarts in a sliding window; `allow(now)` is False once the limit is passed."""

    def __init__(self, intensity: Intensity) -> None:
        self.intensity = intensity
        self._restarts: deque[float] = deque()

    def allow(self, now: float) -> bool:
        """Record one restart at `now`; True while at most max_restarts fall in the window."""
        self._restarts.append(now)
        horizon = now - self.intensity.period
        while self._restarts and self._restarts[0] <= horizon:
            self._restarts.popleft()
        return len(self._restarts) <= self.intensity.max_restarts

    @property
    def recent(self) -> int:
        return len(self._restarts)


class BackoffSchedule:
    """Delay before each restart of one child: min * factor**n capped at max, +/- jitter.

    n counts consecutive failures; a child that ran `reset_after` seconds since its last
    start is considered healthy again, and its next failure waits only `min_delay`.
    """

    def __init__(self, backoff: Backoff, rng: random.Random | None = None) -> None:
        self.backoff = backoff
        self.retries = RetryBackoff(backoff.min_delay, backoff.max_delay, backoff.jitter, rng, factor=backoff.factor)
        self.started_at: float | None = None

    @property
    def failures(self) -> int:
        return self.retries.failures

    def started(self, now: float) -> None:
        self.started_at = now

    def next_delay(self, now: float) -> float:
        """The delay to wait before restarting after a failure observed at `now`."""
        if self.started_at is not None and now - self.started_at >= self.backoff.reset_after:
            self.retries.reset()
        return self.retries.next_delay()
