"""Central-initiated CALLs to one charger: one outstanding, a timeout, a bounded queue.

OCPP-J allows only one outstanding CALL per direction, so requests for a charger wait
here in order. The queue is bounded so a charger that never answers cannot make the
gateway hoard requests; its callers get `queue_full` at once instead. Time is passed in
(monotonic seconds) so tests need no clock tricks.
"""

from __future__ import annotations

import uuid
from collections import deque
from dataclasses import dataclass
from typing import Any

from actors.ocpp.messages import CentralRequest


@dataclass
class PendingCall:
    request: CentralRequest
    request_id: Any
    payload: dict
    unique_id: str = ""
    deadline: float = 0.0
    context: Any = None  # e.g. the reservation id a ReserveNow carries


class CallQueue:
    def __init__(self, limit: int, timeout: float) -> None:
        self.limit = limit
        self.timeout = timeout
        self.waiting: deque[PendingCall] = deque()
        self.outstanding: PendingCall | None = None

    def offer(self, call: PendingCall) -> bool:
        """Queue a call; False when the queue is full (the caller reports `queue_full`)."""
        if len(self.waiting) >= self.limit:
            return False
        self.waiting.append(call)
        return True

    def next_to_send(self, now: float) -> PendingCall | None:
        """The call to send now, if nothing is outstanding; it becomes the outstanding one."""
        if self.outstanding is not None or not self.waiting:
            return None
        call = self.waiting.popleft()
        call.unique_id = uuid.uuid4().hex[:32]
        call.deadline = now + self.timeout
        self.outstanding = call
        return call

    def answer(self, unique_id: str) -> PendingCall | None:
        """The outstanding call this reply belongs to, now finished; None for a stray reply."""
        if self.outstanding is None or self.outstanding.unique_id != unique_id:
            return None
        call, self.outstanding = self.outstanding, None
        return call

    def withdraw(self, request_id: Any) -> PendingCall | None:
        """Take a call that still waits out of the queue (it is never sent); None when it is
        not waiting (outstanding with the charger, or finished)."""
        for call in self.waiting:
            if call.request_id == request_id:
                self.waiting.remove(call)
                return call
        return None

    def expired(self, now: float) -> PendingCall | None:
        if self.outstanding is not None and now >= self.outstanding.deadline:
            call, self.outstanding = self.outstanding, None
            return call
        return None

    def drain(self) -> tuple[PendingCall | None, list[PendingCall]]:
        """The outstanding call (sent) and the waiting ones (never sent): the charger went away."""
        outstanding, waiting = self.outstanding, list(self.waiting)
        self.outstanding = None
        self.waiting.clear()
        return outstanding, waiting

    def deadline(self) -> float | None:
        return self.outstanding.deadline if self.outstanding else None
