"""Harvest's answer to a batch it cannot store (next to `messages.py`, which holds the shared contract)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BatchRejected:
    """The batch was malformed and nothing of it was stored; re-sending it will not help."""

    producer: str
    batch_id: int
    reason: str
