"""Sending `LiveEvent`s from any supervised actor to the API actor, fire-and-forget.

A source must never block on, wait for, or crash because of the live feed: the feed is
a view, the source's real work (storing a reading, answering a charger) comes first.
So `LivePublisher`:

* looks the API actor up through the supervisor protocol (`Lookup("api")`), or through
  a `resolve()` function where the actor knows the address itself (the root supervisor);
* keeps at most `max_pending` events while no address is known (oldest dropped, counted);
* looks up again every `refresh` seconds while events flow, because addresses change on
  every restart and a send to a dead address fails silently in thespian;
* swallows every exception of its own and logs it once in a while.

Use from an actor:

    self.live = LivePublisher(self)                       # in on_start
    self.live.emit("device/inv1", "reading", {...})       # anywhere
    def receiveMsg_LookupResult(self, msg, sender):
        if self.live.lookup_result(msg): return           # first line of the handler
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable
from typing import Any

from actors.live.messages import LiveBatch, LiveEvent
from supervisor.messages import Lookup, LookupResult

API_PATH = "api"
REFRESH = 2.0
RETRY = 1.0
MAX_PENDING = 64


class LivePublisher:
    def __init__(self, actor: Any, *, path: str = API_PATH, resolve: Callable[[], Any] | None = None,
                 refresh: float = REFRESH, retry: float = RETRY, max_pending: int = MAX_PENDING,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.actor, self.path, self.resolve = actor, path, resolve
        self.refresh, self.retry, self.clock = refresh, retry, clock
        self.address: Any = None
        self.pending: deque[LiveEvent] = deque(maxlen=max_pending)
        self.dropped = 0
        self.sent = 0
        self._looked_up_at = float("-inf")
        self._asked_at = float("-inf")
        self._errors = 0

    # ----------------------------------------------------------- sending
    def emit(self, topic: str, kind: str, data: dict[str, Any] | None = None, at: float | None = None) -> None:
        self.emit_many((LiveEvent(topic, kind, data or {}, at, time.time()),))

    def emit_many(self, events: Iterable[LiveEvent]) -> None:
        """Send these events in one message (or keep them until the API is found)."""
        try:
            batch = tuple(events)
            if not batch:
                return
            address = self._address()
            if address is None:
                if len(self.pending) + len(batch) > (self.pending.maxlen or 0):
                    self.dropped += len(self.pending) + len(batch) - (self.pending.maxlen or 0)
                self.pending.extend(batch)
                return
            if self.pending:  # kept while the API was away (a resolve()d address shows up without a LookupResult)
                batch, self.pending = (*self.pending, *batch), deque(maxlen=self.pending.maxlen)
            self._send(address, batch)
        except Exception as exc:  # noqa: BLE001 - the feed must never take a source down
            self._errors += 1
            if self._errors in (1, 10, 100) or self._errors % 1000 == 0:
                self.actor.log.warning("live event not sent", error=repr(exc), errors=self._errors)

    def _send(self, address: Any, batch: tuple[LiveEvent, ...]) -> None:
        self.actor.send(address, batch[0] if len(batch) == 1 else LiveBatch(batch))
        self.sent += len(batch)

    # ---------------------------------------------------------- addresses
    def _address(self) -> Any:
        now = self.clock()
        if self.resolve is not None:
            self.address = self.resolve()
            return self.address
        stale = now - self._looked_up_at >= self.refresh
        if (self.address is None or stale) and now - self._asked_at >= self.retry:
            self._asked_at = now
            parent = getattr(self.actor, "parent", None)
            if parent is not None:
                self.actor.send(parent, Lookup(self.path))
        return self.address

    def lookup_result(self, msg: LookupResult) -> bool:
        """Take the answer to our Lookup; True when `msg` was ours (the caller stops there)."""
        if not isinstance(msg, LookupResult) or msg.path != self.path:
            return False
        self._looked_up_at = self.clock()
        self.address = msg.address
        if msg.address is not None and self.pending:
            batch, self.pending = tuple(self.pending), deque(maxlen=self.pending.maxlen)
            try:
                self._send(msg.address, batch)
            except Exception as exc:  # noqa: BLE001 - as in emit_many
                self.actor.log.warning("live events not sent", error=repr(exc), count=len(batch))
        return True

    def forget(self) -> None:
        """The address failed (e.g. a PoisonMessage came back): look it up again."""
        self.address = None
        self._asked_at = float("-inf")
