"""LivePublisher: the sources' side. It must never block or raise, and must find a restarted API."""

from __future__ import annotations

import logging

from actors.live.messages import LiveBatch, LiveEvent
from actors.live.publisher import LivePublisher
from supervisor.logs import ActorLog
from supervisor.messages import Lookup, LookupResult


class RecordingLog(ActorLog):
    """The actor's log (rate limit included), keeping the lines it writes."""

    def __init__(self) -> None:
        super().__init__("test")
        self.lines: list[tuple[int, str, dict]] = []

    def _write(self, level, msg, exc_info, fields) -> None:
        self.lines.append((level, msg, fields))


class RecordingActor:
    """Just enough of an actor: `send` records (or fails on demand), `parent`, `log`."""

    def __init__(self) -> None:
        self.parent = "root"
        self.sent: list[tuple[object, object]] = []
        self.log = RecordingLog()
        self.fail = False

    def send(self, address: object, msg: object) -> None:
        if self.fail:
            raise OSError("transport gone")
        self.sent.append((address, msg))


class Clock:
    def __init__(self) -> None:
        self.t = 100.0

    def __call__(self) -> float:
        return self.t


def test_events_wait_for_the_first_lookup_then_go_in_one_message():
    actor, clock = RecordingActor(), Clock()
    live = LivePublisher(actor, clock=clock)
    live.emit("device/a", "reading", {"n": 1})
    live.emit("device/a", "reading", {"n": 2})
    assert actor.sent == [("root", Lookup("api"))]  # asked once, not per event
    assert live.lookup_result(LookupResult("api", "api@1"))
    [(address, batch)] = actor.sent[1:]
    assert address == "api@1" and isinstance(batch, LiveBatch) and [e.data["n"] for e in batch.events] == [1, 2]
    live.emit("device/a", "reading", {"n": 3})
    assert isinstance(actor.sent[-1][1], LiveEvent) and actor.sent[-1][0] == "api@1"


def test_the_address_is_looked_up_again_while_events_flow():
    actor, clock = RecordingActor(), Clock()
    live = LivePublisher(actor, clock=clock, refresh=2.0)
    live.lookup_result(LookupResult("api", "api@1"))
    clock.t += 2.5
    live.emit("gateway", "restarted")
    assert actor.sent[-2:] == [("root", Lookup("api")), ("api@1", actor.sent[-1][1])]  # still sent to the known one
    live.lookup_result(LookupResult("api", "api@2"))  # the API restarted meanwhile
    live.emit("gateway", "restarted")
    assert actor.sent[-1][0] == "api@2"


def test_pending_events_are_bounded_and_counted():
    actor, clock = RecordingActor(), Clock()
    live = LivePublisher(actor, clock=clock, max_pending=3)
    for n in range(5):
        live.emit("device/a", "reading", {"n": n})
    assert [e.data["n"] for e in live.pending] == [2, 3, 4] and live.dropped == 2


def test_other_lookup_results_are_left_to_the_actor():
    live = LivePublisher(RecordingActor())
    assert not live.lookup_result(LookupResult("harvest", "h@1"))


def test_a_failing_send_never_reaches_the_source():
    """A send that raises is swallowed, logged with a count, not counted as sent; the next one goes through."""
    actor = RecordingActor()
    live = LivePublisher(actor)
    live.lookup_result(LookupResult("api", "api@1"))
    actor.fail = True
    live.emit("device/a", "reading", {"n": 1})  # no exception
    live.emit("device/a", "reading", {"n": 2})
    [(level, _, fields)] = [line for line in actor.log.lines if line[1] == "live event not sent"]  # once, not per event
    assert level == logging.WARNING and fields["errors"] == 1 and "transport gone" in fields["error"]
    assert live.sent == 0 and actor.sent == []
    actor.fail = False  # the transport is back
    live.emit("device/a", "reading", {"n": 3})
    [(to, event)] = actor.sent
    assert to == "api@1" and isinstance(event, LiveEvent) and event.data == {"n": 3} and live.sent == 1
    live.emit_many(iter(()))  # nothing to send: no message
    assert len(actor.sent) == 1


def test_a_resolved_address_is_used_directly_and_flushes_what_waited():
    actor = RecordingActor()
    address = None
    live = LivePublisher(actor, resolve=lambda: address)
    live.emit("gateway", "child_exited", {"child": "api"})
    assert actor.sent == []  # the root never asks anyone: it knows its children
    address = "api@2"
    live.emit("gateway", "restarted", {"child": "api"})
    [(to, batch)] = actor.sent
    assert to == "api@2" and [e.kind for e in batch.events] == ["child_exited", "restarted"]
