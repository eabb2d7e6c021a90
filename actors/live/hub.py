"""The hub: per-topic sequence numbers, bounded history, one fan-out per event.

Pure asyncio (no thespian): the API actor calls `publish` from its loop for every
`LiveEvent` it receives; the websocket and SSE handlers own one `Subscriber` each and
drain it with `await subscriber.get()`.

Why it is shaped like this:

* Each event is encoded to JSON once (`Frame`), appended to its topic's history ring and
  offered to each subscriber of the topic; offering is a deque append. Hundreds of
  subscribers add no per-event work beyond that.
* Every subscriber queue is bounded. A subscriber whose queue is full has fallen behind:
  its queue is cleared and replaced by one explicit `lagged` message saying where to
  resume. It then either continues with new events (websocket: the client may
  re-subscribe with `resume_from` to refill the gap from history) or is disconnected
  (SSE: the browser reconnects with `Last-Event-ID` and resumes). Too many lags in a
  row and it is disconnected either way. A slow client never slows the gateway.
* Sequence numbers are per topic and per hub: a hub has an `epoch` (new on every API
  start), and a resume request from another epoch, from before the history ring, or
  from the future gets an explicit `resync` telling the client which REST resource to
  re-read. A client therefore always knows whether it missed something.
* Topics, subscribers, topics per subscriber: all bounded.
"""

from __future__ import annotations

import asyncio
import secrets
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from typing import Any

from actors.live.messages import LiveEvent
from actors.live.topics import parse_topic
from actors.live.jsontext import json_text

HISTORY = 256
QUEUE_SIZE = 256
MAX_SUBSCRIBERS = 1000
MAX_TOPICS = 4096
MAX_TOPICS_PER_SUBSCRIBER = 32
MAX_LAGS = 3

REST_RESOURCES = {"transaction": "/api/transactions/{id}", "charger": "/api/chargers/{id}", "device": "/api/devices/{id}", "loadpoint": "/api/loadpoints/{id}", "gateway": "/api/actors"}


class HubFullError(RuntimeError):
    """No room for another subscriber or topic; the client should retry later."""


class Frame:
    """One message as it goes on the wire, encoded once and shared by every subscriber."""

    __slots__ = ("topic", "seq", "epoch", "kind", "text", "_sse")

    def __init__(self, topic: str | None, seq: int | None, epoch: str, kind: str, text: str) -> None:
        self.topic, self.seq, self.epoch, self.kind, self.text = topic, seq, epoch, kind, text
        self._sse: bytes | None = None

    @property
    def event_id(self) -> str | None:
        """The SSE id: `<epoch>:<seq>` for events, None for control messages."""
        return None if self.seq is None else f"{self.epoch}:{self.seq}"

    def sse(self) -> bytes:
        """The Server-Sent Events form, built once however many SSE clients get it."""
        if self._sse is None:
            head = f"id: {self.event_id}\n" if self.seq is not None else ""
            self._sse = f"{head}event: {self.kind}\ndata: {self.text}\n\n".encode()
        return self._sse


def control(kind: str, epoch: str, topic: str | None = None, **fields: Any) -> Frame:
    """A message that is not an event (subscribed, resync, lagged, error)."""
    body = {"type": kind, "epoch": epoch}
    if topic is not None:
        body["topic"] = topic
    body.update(fields)
    return Frame(topic, None, epoch, kind, json_text(body, compact=True))


class Subscriber:
    """One client's bounded queue. `get()` is awaited by exactly one writer task."""

    def __init__(self, hub: Hub, queue_size: int, disconnect_on_lag: bool, max_lags: int, peer: str = "") -> None:
        self.hub = hub
        self.queue: deque[Frame] = deque()
        self.queue_size = queue_size
        self.disconnect_on_lag = disconnect_on_lag
        self.max_lags = max_lags
        self.peer = peer
        self.topics: set[str] = set()
        self.delivered: dict[str, int] = {}  # topic -> last event seq handed to the writer
        self.lags = 0  # lags since the writer last caught up (emptied the queue)
        self.total_lags = 0
        self.dropped = 0
        self.replay_credit = 0  # history frames queued by a resume, on top of the live bound
        self.closing = False  # no more messages: the writer sends what is queued, then closes
        self.close_reason: str | None = None
        self._ready = asyncio.Event()

    def offer(self, frame: Frame) -> None:
        """Enqueue without ever waiting: the publisher's whole per-subscriber cost."""
        if self.closing:
            return
        if len(self.queue) >= self.queue_size + self.replay_credit:
            self._lag(frame)
            return
        self.queue.append(frame)
        self._ready.set()

    def _lag(self, overflowing: Frame) -> None:
        dropped = len(self.queue) + 1
        for frame in (*self.queue, overflowing):
            if frame.seq is not None:
                self.delivered.setdefault(frame.topic, frame.seq - 1)
        self.queue.clear()
        self.replay_credit = 0
        self.dropped += dropped
        self.lags += 1
        self.total_lags += 1
        disconnect = self.disconnect_on_lag or self.lags >= self.max_lags
        resume = {topic: self.delivered.get(topic, self.hub.last_seq(topic)) + 1 for topic in sorted(self.topics)}
        self.queue.append(control("lagged", self.hub.epoch, dropped=dropped, resume_from=resume, disconnect=disconnect,
                                  message="this client fell behind; events were dropped. Resume from history (resume_from) or re-read the REST resources."))
        self.hub.lagged += 1
        if disconnect:
            self.close("lagged")
        self._ready.set()

    def close(self, reason: str) -> None:
        if not self.closing:
            self.closing, self.close_reason = True, reason
            self._ready.set()

    def push_control(self, frame: Frame) -> None:
        """Control messages (subscribed, resync, errors) go in even when the queue is full."""
        if not self.closing:
            self.queue.append(frame)
            self._ready.set()

    async def get(self) -> Frame | None:
        """The next frame, or None once the subscriber is closing and its queue is drained."""
        while not self.queue:
            if self.closing:
                return None
            self._ready.clear()
            await self._ready.wait()
        frame = self.queue.popleft()
        if frame.seq is not None:
            self.delivered[frame.topic] = frame.seq
        if self.replay_credit:
            self.replay_credit -= 1
        if not self.queue:
            self.lags = 0
        return frame


class _TopicState:
    __slots__ = ("name", "seq", "history", "subscribers")

    def __init__(self, name: str, history: int) -> None:
        self.name = name
        self.seq = 0
        self.history: deque[Frame] = deque(maxlen=history)
        self.subscribers: dict[Subscriber, None] = {}  # insertion-ordered set


class Hub:
    """Topics with sequence numbers and history, and the subscribers of each."""

    def __init__(self, *, history: int = HISTORY, queue_size: int = QUEUE_SIZE, max_subscribers: int = MAX_SUBSCRIBERS,
                 max_topics: int = MAX_TOPICS, max_topics_per_subscriber: int = MAX_TOPICS_PER_SUBSCRIBER,
                 max_lags: int = MAX_LAGS, epoch: str | None = None, clock: Callable[[], float] = time.time) -> None:
        self.history, self.queue_size = history, queue_size
        self.max_subscribers, self.max_topics = max_subscribers, max_topics
        self.max_topics_per_subscriber, self.max_lags = max_topics_per_subscriber, max_lags
        self.epoch = epoch or secrets.token_hex(4)
        self.clock = clock
        self.topics: OrderedDict[str, _TopicState] = OrderedDict()  # least recently published first
        self.subscribers: set[Subscriber] = set()
        self.published = 0
        self.lagged = 0
        self.rejected = 0

    # ------------------------------------------------------------ publishing
    def publish(self, event: LiveEvent) -> int | None:
        """Number, record and fan out one event; its sequence number (None if refused)."""
        try:
            topic = str(parse_topic(event.topic))
        except ValueError:
            self.rejected += 1
            return None
        state = self._topic(topic, create=True)
        if state is None:
            self.rejected += 1
            return None
        self.topics.move_to_end(topic)
        state.seq += 1
        body = {"type": "event", "topic": topic, "seq": state.seq, "epoch": self.epoch, "kind": event.kind,
                "time": event.time, "emitted": event.emitted, "data": event.data}
        frame = Frame(topic, state.seq, self.epoch, event.kind, json_text(body, compact=True))
        state.history.append(frame)
        for subscriber in state.subscribers:
            subscriber.offer(frame)
        self.published += 1
        return state.seq

    def last_seq(self, topic: str) -> int:
        state = self.topics.get(topic)
        return state.seq if state is not None else 0

    def _topic(self, topic: str, create: bool) -> _TopicState | None:
        state = self.topics.get(topic)
        if state is None and create:
            if len(self.topics) >= self.max_topics and not self._evict_one():
                return None
            state = self.topics[topic] = _TopicState(topic, self.history)
        return state

    def _evict_one(self) -> bool:
        """Forget the least recently published topic nobody is subscribed to."""
        for name, state in self.topics.items():
            if not state.subscribers:
                del self.topics[name]
                return True
        return False

    # ----------------------------------------------------------- subscribers
    def add_subscriber(self, *, disconnect_on_lag: bool = False, peer: str = "", queue_size: int | None = None) -> Subscriber:
        if len(self.subscribers) >= self.max_subscribers:
            raise HubFullError(f"the live feed has its maximum of {self.max_subscribers} subscribers")
        subscriber = Subscriber(self, queue_size or self.queue_size, disconnect_on_lag, self.max_lags, peer)
        self.subscribers.add(subscriber)
        return subscriber

    def remove_subscriber(self, subscriber: Subscriber) -> None:
        subscriber.close(subscriber.close_reason or "gone")
        for topic in list(subscriber.topics):
            self.unsubscribe(subscriber, topic)
        self.subscribers.discard(subscriber)

    def subscribe(self, subscriber: Subscriber, topic: str, resume_from: int | None = None, epoch: str | None = None) -> None:
        """Add `topic`, first replaying history from `resume_from` (the first seq wanted).

        Without `resume_from` the client starts with the next event. With it, either
        exactly the missed events are queued, or a `resync` explains why that is not
        possible (other epoch, older than the history, ahead of the topic).
        """
        topic = str(parse_topic(topic))
        if topic not in subscriber.topics and len(subscriber.topics) >= self.max_topics_per_subscriber:
            raise HubFullError(f"at most {self.max_topics_per_subscriber} topics per subscriber")
        state = self._topic(topic, create=True)
        if state is None:
            raise HubFullError(f"the live feed has its maximum of {self.max_topics} topics")
        replay: list[Frame] = []
        resync: str | None = None
        if resume_from is not None:
            oldest = state.history[0].seq if state.history else state.seq + 1
            if epoch is not None and epoch != self.epoch:
                resync = "the gateway's live feed restarted since that sequence number"
            elif resume_from > state.seq + 1:
                resync = f"sequence {resume_from} is ahead of this topic (last is {state.seq})"
            elif resume_from < oldest and resume_from <= state.seq:
                resync = f"events before {oldest} are no longer kept (history holds {self.history})"
            else:
                replay = [frame for frame in state.history if frame.seq >= resume_from]
        if resync is not None:
            kind, _, ident = topic.partition("/")
            subscriber.push_control(control("resync", self.epoch, topic, seq=state.seq, reason=resync,
                                            rest=REST_RESOURCES[kind].format(id=ident)))
        if topic in subscriber.topics and subscriber.queue:  # re-subscribing: the replay replaces what is queued
            subscriber.queue = deque(f for f in subscriber.queue if f.topic != topic or f.seq is None)
        subscriber.push_control(control("subscribed", self.epoch, topic, seq=state.seq, replayed=len(replay)))
        subscriber.delivered.pop(topic, None)
        subscriber.queue.extend(replay)  # at most `history` frames, allowed on top of the live bound
        subscriber.replay_credit += len(replay)
        subscriber.topics.add(topic)
        state.subscribers[subscriber] = None

    def unsubscribe(self, subscriber: Subscriber, topic: str) -> None:
        subscriber.topics.discard(topic)
        subscriber.delivered.pop(topic, None)
        state = self.topics.get(topic)
        if state is not None:
            state.subscribers.pop(subscriber, None)

    def close_all(self, reason: str = "shutdown") -> None:
        for subscriber in list(self.subscribers):
            subscriber.close(reason)

    def stats(self) -> dict[str, int]:
        return {"subscribers": len(self.subscribers), "topics": len(self.topics), "published": self.published,
                "lagged": self.lagged, "rejected": self.rejected}
