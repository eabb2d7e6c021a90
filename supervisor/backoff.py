"""Exponential backoff with jitter: the one formula every retry loop of the gateway uses.

Supervisor restarts, device reconnects and upload retries all wait
`min(cap, initial * factor**n)`, scaled by 1 +/- jitter and never above the cap. The
exponent is clamped before it is computed, so the delay stays at the cap however many
failures in a row there were (a naive `2 ** n` overflows a float after 1,024 failures:
about 85 hours of outage at a 5-minute cap, the very outage store-and-forward exists for).
"""

from __future__ import annotations

import math
import random


def backoff_delay(failures: int, initial: float, cap: float, *, factor: float = 2.0, jitter: float = 0.0,
                  rng: random.Random | None = None) -> float:
    """The delay after `failures` consecutive failures (0: the first retry waits `initial`)."""
    initial, cap = max(0.0, float(initial)), max(0.0, float(cap))
    if initial == 0.0 or cap == 0.0:
        return 0.0
    n = max(0, int(failures))
    if factor > 1.0:
        steps_to_cap = math.log(cap / initial, factor) if cap > initial else 0.0
        base = cap if n >= steps_to_cap + 1 else min(cap, initial * factor ** n)
    else:
        base = min(cap, initial)
    if jitter:
        base *= 1.0 + (rng or random).uniform(-jitter, jitter)
    return min(cap, max(0.0, base))


class RetryBackoff:
    """One retry loop's consecutive failures and the delay before its next attempt.

    `backoff_delay(failures, initial, cap)` for each failure in a row; `reset()` after a
    success. Device reconnects use it as it is, supervisor restarts through
    `supervisor.policy.BackoffSchedule` (which also forgets failures after a healthy run).
    """

    def __init__(self, initial: float = 1.0, cap: float = 60.0, jitter: float = 0.2, rng: random.Random | None = None,
                 *, factor: float = 2.0) -> None:
        self.initial, self.cap, self.jitter, self.factor = initial, cap, jitter, factor
        self.rng = rng or random.Random()
        self.failures = 0

    def next_delay(self) -> float:
        delay = backoff_delay(self.failures, self.initial, self.cap, factor=self.factor, jitter=self.jitter, rng=self.rng)
        self.failures += 1
        return delay

    def reset(self) -> None:
        self.failures = 0
