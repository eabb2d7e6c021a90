"""The hub on its own: sequence numbers, history and resume, lag handling, bounds."""

from __future__ import annotations

import json

import pytest

from actors.live.hub import Hub, HubFullError
from actors.live.messages import LiveEvent


def drain(subscriber) -> list[dict]:
    out = []
    while subscriber.queue:
        frame = subscriber.queue.popleft()
        if frame.seq is not None:
            subscriber.delivered[frame.topic] = frame.seq
        out.append(json.loads(frame.text))
    return out


def events(messages: list[dict]) -> list[tuple[str, int]]:
    return [(m["topic"], m["seq"]) for m in messages if m["type"] == "event"]


def publish(hub: Hub, topic: str, n: int, start: int = 0) -> None:
    for i in range(start, start + n):
        hub.publish(LiveEvent(topic, "meter_values", {"energy_wh": i}))


def test_sequence_numbers_are_per_topic_and_gapless():
    hub = Hub()
    sub = hub.add_subscriber()
    hub.subscribe(sub, "transaction/7")
    hub.subscribe(sub, "charger/CP-1")
    publish(hub, "transaction/7", 3)
    publish(hub, "charger/CP-1", 2)
    publish(hub, "transaction/7", 1)
    got = drain(sub)
    assert [m["type"] for m in got[:2]] == ["subscribed", "subscribed"]
    assert events(got) == [("transaction/7", 1), ("transaction/7", 2), ("transaction/7", 3),
                           ("charger/CP-1", 1), ("charger/CP-1", 2), ("transaction/7", 4)]
    assert all(m["epoch"] == hub.epoch for m in got)


def test_one_encoding_is_shared_by_every_subscriber():
    hub = Hub()
    subs = [hub.add_subscriber() for _ in range(50)]
    for sub in subs:
        hub.subscribe(sub, "device/inv1")
        sub.queue.clear()
    hub.publish(LiveEvent("device/inv1", "reading", {"ac_power_w": 1500.0}))
    frames = {id(sub.queue[0]) for sub in subs}
    assert len(frames) == 1  # the same Frame object: encoded once, enqueued 50 times


def test_resume_replays_exactly_the_missed_events():
    hub = Hub(history=10)
    publish(hub, "transaction/1", 6)
    sub = hub.add_subscriber()
    hub.subscribe(sub, "transaction/1", resume_from=4, epoch=hub.epoch)
    got = drain(sub)
    assert got[0]["type"] == "subscribed" and got[0]["replayed"] == 3
    assert events(got) == [("transaction/1", 4), ("transaction/1", 5), ("transaction/1", 6)]
    publish(hub, "transaction/1", 1)
    assert events(drain(sub)) == [("transaction/1", 7)]


def test_resume_at_the_head_replays_nothing_and_misses_nothing():
    hub = Hub()
    publish(hub, "gateway", 3)
    sub = hub.add_subscriber()
    hub.subscribe(sub, "gateway", resume_from=4)
    got = drain(sub)
    assert [m["type"] for m in got] == ["subscribed"] and got[0]["seq"] == 3


@pytest.mark.parametrize(("resume_from", "epoch", "reason"), [
    (2, None, "no longer kept"),  # older than the ring
    (99, None, "ahead"),  # a sequence this topic never reached
    (8, "other-epoch", "restarted"),  # numbers from before an API restart
])
def test_resume_that_cannot_be_served_gets_a_resync_naming_the_rest_resource(resume_from, epoch, reason):
    hub = Hub(history=4)
    publish(hub, "transaction/42", 10)
    sub = hub.add_subscriber()
    hub.subscribe(sub, "transaction/42", resume_from=resume_from, epoch=epoch)
    got = drain(sub)
    assert got[0]["type"] == "resync" and reason in got[0]["reason"]
    assert got[0]["rest"] == "/api/transactions/42" and got[0]["seq"] == 10
    assert got[1]["type"] == "subscribed" and events(got) == []


def test_overflow_replaces_the_queue_with_one_lagged_message_and_continues():
    hub = Hub(queue_size=4, max_lags=3)
    sub = hub.add_subscriber()
    hub.subscribe(sub, "device/inv1")
    drain(sub)
    publish(hub, "device/inv1", 2)
    drain(sub)  # delivered 1..2
    publish(hub, "device/inv1", 5)  # 3..7: the fifth does not fit
    got = drain(sub)
    assert len(got) == 1 and got[0]["type"] == "lagged"
    assert got[0]["dropped"] == 5 and got[0]["resume_from"] == {"device/inv1": 3} and got[0]["disconnect"] is False
    assert not sub.closing and hub.lagged == 1
    publish(hub, "device/inv1", 1)
    assert events(drain(sub)) == [("device/inv1", 8)]
    # the missed ones are still in the history: resubscribing with resume_from fills the gap
    hub.subscribe(sub, "device/inv1", resume_from=3, epoch=hub.epoch)
    assert events(drain(sub)) == [("device/inv1", n) for n in range(3, 9)]


def test_a_subscriber_that_never_catches_up_is_disconnected():
    hub = Hub(queue_size=2, max_lags=2)
    sub = hub.add_subscriber()
    hub.subscribe(sub, "gateway")
    publish(hub, "gateway", 40)
    assert sub.closing and sub.close_reason == "lagged"
    last = json.loads(sub.queue[-1].text)
    assert last["type"] == "lagged" and last["disconnect"] is True
    size = len(sub.queue)
    publish(hub, "gateway", 10)
    assert len(sub.queue) == size  # a closing subscriber costs nothing more


def test_sse_style_subscribers_are_disconnected_at_the_first_lag():
    hub = Hub(queue_size=2)
    sub = hub.add_subscriber(disconnect_on_lag=True)
    hub.subscribe(sub, "gateway")
    publish(hub, "gateway", 3)
    assert sub.closing


def test_bounds_on_subscribers_topics_and_topics_per_subscriber():
    hub = Hub(max_subscribers=2, max_topics=3, max_topics_per_subscriber=2)
    a, _ = hub.add_subscriber(), hub.add_subscriber()
    with pytest.raises(HubFullError):
        hub.add_subscriber()
    hub.subscribe(a, "device/a")
    hub.subscribe(a, "device/b")
    with pytest.raises(HubFullError):
        hub.subscribe(a, "device/c")
    publish(hub, "device/x", 1)
    publish(hub, "device/y", 1)  # evicts device/x, the oldest topic nobody listens to
    assert set(hub.topics) == {"device/a", "device/b", "device/y"}
    hub.remove_subscriber(a)
    assert hub.stats()["subscribers"] == 1


def test_events_with_an_invalid_topic_are_refused_and_counted():
    hub = Hub()
    assert hub.publish(LiveEvent("transaction/not-a-number", "x")) is None
    assert hub.publish(LiveEvent("nonsense", "x")) is None
    assert hub.stats()["rejected"] == 2 and hub.topics == {}


def test_non_finite_numbers_become_null():
    hub = Hub()
    sub = hub.add_subscriber()
    hub.subscribe(sub, "device/inv1")
    hub.publish(LiveEvent("device/inv1", "reading", {"ac_power_w": float("nan")}))
    assert drain(sub)[-1]["data"] == {"ac_power_w": None}


def test_a_full_replay_does_not_count_as_lagging():
    hub = Hub(history=8, queue_size=8)
    publish(hub, "device/inv1", 8)
    sub = hub.add_subscriber()
    hub.subscribe(sub, "device/inv1", resume_from=1, epoch=hub.epoch)
    publish(hub, "device/inv1", 4)  # live events on top of the replayed history
    got = drain(sub)
    assert sub.total_lags == 0 and events(got) == [("device/inv1", n) for n in range(1, 13)]


def test_resubscribing_with_resume_from_replaces_what_was_queued_for_that_topic():
    hub = Hub()
    sub = hub.add_subscriber()
    hub.subscribe(sub, "gateway")
    hub.subscribe(sub, "device/a")
    publish(hub, "gateway", 3)
    publish(hub, "device/a", 1)
    hub.subscribe(sub, "gateway", resume_from=2, epoch=hub.epoch)
    assert events(drain(sub)) == [("device/a", 1), ("gateway", 2), ("gateway", 3)]  # no duplicates of 2 and 3
