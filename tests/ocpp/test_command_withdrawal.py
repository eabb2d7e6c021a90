"""A central request its sender gave up on: withdrawn while it waits, never sent afterwards;
one already with the charger keeps its real outcome. The protocol core, real SQLite."""

from __future__ import annotations

import json

from actors.ocpp.messages import Reset, TriggerMessage
from actors.ocpp.policy import OcppPolicy
from tests.ocpp.test_core_units import Clock, booted


def calls_in(effects) -> list[list]:
    return [frame for frame in map(json.loads, effects.frames) if frame[0] == 2]


def test_a_waiting_request_withdrawn_is_cancelled_and_never_sent(db):
    p = booted(db, OcppPolicy(call_timeout=30.0), Clock())
    first = calls_in(p.request(Reset("Soft"), request_id="a"))
    assert [c[2] for c in first] == ["Reset"]
    assert calls_in(p.request(TriggerMessage("Heartbeat"), request_id="b")) == []  # waits behind the outstanding Reset
    cancelled = p.cancel("b")
    assert [(o.request_id, o.outcome) for o in cancelled.outcomes] == [("b", "cancelled")]
    answered = p.receive(1, json.dumps([3, first[0][1], {"status": "Accepted"}]))
    assert [(o.request_id, o.outcome) for o in answered.outcomes] == [("a", "result")]
    assert calls_in(answered) == []  # the queue is empty: the withdrawn TriggerMessage never goes out


def test_the_outstanding_request_cannot_be_withdrawn_and_keeps_its_answer(db):
    p = booted(db, OcppPolicy(call_timeout=30.0), Clock())
    sent = calls_in(p.request(Reset("Hard"), request_id="a"))
    assert p.cancel("a").outcomes == []
    answered = p.receive(1, json.dumps([3, sent[0][1], {"status": "Rejected"}]))
    assert [(o.outcome, o.payload) for o in answered.outcomes] == [("result", {"status": "Rejected"})]


def test_a_lost_connection_ends_the_sent_request_as_timeout_and_the_waiting_ones_as_offline(db):
    """The sent one may have been acted on (unknown, 504 over REST); the others were never sent (503)."""
    p = booted(db, OcppPolicy(call_timeout=30.0), Clock())
    p.request(Reset("Soft"), request_id="sent")
    p.request(Reset("Hard"), request_id="waiting")
    outcomes = {o.request_id: o.outcome for o in p.disconnected(1).outcomes}
    assert outcomes == {"sent": "timeout", "waiting": "offline"}
