"""Device settings validation, endpoint grouping into child specs, backoff and the batch outbox."""

from __future__ import annotations

import random

import pytest

from supervisor.backoff import RetryBackoff as Backoff
from actors.device.poller import PollSchedule
from actors.device.unacked import UnackedBatches, merge_gaps
from actors.device.specs import DeviceConfigError, device_child_specs, devices_part, validate_device
from actors.harvest.messages import DeviceEvent, Gap, Reading


def test_settings_get_defaults_from_the_profile():
    s = validate_device({"id": "inv1", "profile": "sma", "host": "192.0.2.10"})
    assert s == {"id": "inv1", "profile": "sma", "unit_id": 3, "poll_interval": 10.0, "timeout": 1.0, "backoff_cap": 60.0, "raw_interval": 300.0, "host": "192.0.2.10", "port": 502}
    rtu = validate_device({"id": "m1", "profile": "eastron_sdm630", "serial_port": "/dev/ttyUSB0", "baudrate": 19200, "parity": "E"})
    assert rtu["serial_port"] == "/dev/ttyUSB0" and rtu["stopbits"] == 1 and "host" not in rtu
    assert validate_device({"id": "s", "sunspec": True, "host": "h"})["profile"] == "sunspec"


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        ({"profile": "sma", "host": "h"}, r"devices\[0\].id: must be"),
        ({"id": "a/b", "profile": "sma", "host": "h"}, r"devices\[0\].id"),
        ({"id": "x", "host": "h"}, r"devices\[0\] \(x\).profile: required"),
        ({"id": "x", "profile": "acme", "host": "h"}, r"unknown profile 'acme'"),
        ({"id": "x", "profile": "sma"}, r"\(x\).host: required for Modbus TCP"),
        ({"id": "x", "profile": "sma", "host": "h", "port": 70000}, r"\(x\).port: must be an integer in 1..65535"),
        ({"id": "x", "profile": "sma", "host": "h", "poll_interval": 0}, r"\(x\).poll_interval"),
        ({"id": "x", "profile": "sma", "host": "h", "timeout": 30}, r"\(x\).timeout: must be a number in 0.05..3"),
        ({"id": "x", "profile": "sma", "host": "h", "unit": 3}, r"unknown setting\(s\) unit"),
        ({"id": "x", "profile": "sma", "sunspec": True, "host": "h"}, r"either profile or sunspec"),
        ({"id": "x", "profile": "sma", "serial_port": "/dev/ttyS0", "parity": "X"}, r"\(x\).parity: must be N, E or O"),
        ({"id": "x", "profile": "sma", "host": "h", "baudrate": 9600}, r"\(x\).baudrate: only for Modbus RTU"),
    ],
)
def test_bad_settings_name_the_device_and_the_setting(settings, message):
    with pytest.raises(DeviceConfigError, match=message):
        validate_device(settings)


def test_devices_on_one_endpoint_share_one_actor():
    specs = device_child_specs(
        [
            {"id": "inv1", "profile": "huawei_sun2000", "host": "10.0.0.5", "unit_id": 1},
            {"id": "meter", "profile": "eastron_sdm630", "host": "10.0.0.9"},
            {"id": "inv2", "profile": "huawei_sun2000", "host": "10.0.0.5", "unit_id": 2},
        ]
    )
    assert [(s.name, s.actor) for s in specs] == [("inv1+inv2", "actors.device.actor.DeviceActor"), ("meter", "actors.device.actor.DeviceActor")]
    assert [d["id"] for d in specs[0].config["devices"]] == ["inv1", "inv2"]
    assert specs[1].config["id"] == "meter"
    [part] = devices_part({"devices": [{"id": "meter", "profile": "eastron_sdm630", "host": "10.0.0.9"}]})
    assert part.name == "devices" and part.kind == "supervisor" and [c.name for c in part.config.children] == ["meter"]


def test_conflicts_between_devices_are_reported():
    with pytest.raises(DeviceConfigError, match=r"duplicate device id 'a'"):
        device_child_specs([{"id": "a", "profile": "sma", "host": "h"}, {"id": "a", "profile": "sma", "host": "g"}])
    with pytest.raises(DeviceConfigError, match=r"unit_id: 3 is already used by 'a'"):
        device_child_specs([{"id": "a", "profile": "sma", "host": "h"}, {"id": "b", "profile": "sma", "host": "H"}])


def test_backoff_doubles_up_to_the_cap_with_bounded_jitter():
    exact = Backoff(initial=1.0, cap=60.0, jitter=0.0)
    assert [exact.next_delay() for _ in range(8)] == [1, 2, 4, 8, 16, 32, 60, 60]
    exact.reset()
    assert exact.next_delay() == 1
    jittered = Backoff(initial=1.0, cap=60.0, jitter=0.2, rng=random.Random(7))
    delays = [jittered.next_delay() for _ in range(20)]
    assert all(d <= 60.0 for d in delays)
    assert 0.8 <= delays[0] <= 1.2 and len(set(delays[:6])) == 6


def test_schedule_keeps_absolute_deadlines_and_skips_missed_slots():
    schedule = PollSchedule(10.0, anchor=100.0)
    assert schedule.take(100.0) == (0, 100.0) and schedule.next_due == 110.0
    assert schedule.take(113.0) == (0, 110.0) and schedule.next_due == 120.0  # late by 3 s: no drift
    assert schedule.take(147.0) == (2, 120.0) and schedule.next_due == 150.0  # 120 and 130 skipped


def _reading(t: float) -> Reading:
    return Reading("inv1", t, t, "b", {"ac_power_w": 1})


def test_outbox_resends_until_acked_and_records_what_it_gives_up():
    box = UnackedBatches("inv1", limit=2, resend_after=5.0)
    first = box.add([_reading(1.0), _reading(2.0)], [], [])
    box.sent(first.batch_id, now=0.0)
    assert box.due(4.9) == [] and box.due(5.0) == [first]
    second = box.add([_reading(3.0)], [Gap("inv1", 2.5, 3.0, "late", 1)], [])
    assert box.due(1.0) == [second]  # never sent yet
    third = box.add([_reading(4.0)], [], [])
    # Room was made for the third by giving up the first: its readings are a gap the third carries.
    assert box.dropped == 1 and third.gaps == (Gap("inv1", 1.0, 2.0, "dropped_unacknowledged", 2),)
    assert [b.batch_id for b in box.due(100.0)] == [second.batch_id, third.batch_id]
    fourth = box.add([], [], [])
    # A batch given up loses neither its readings' window nor the gaps it carried.
    assert fourth.gaps == (Gap("inv1", 2.5, 3.0, "late", 1), Gap("inv1", 3.0, 3.0, "dropped_unacknowledged", 1))
    assert box.ack(fourth.batch_id) and not box.ack(fourth.batch_id)
    assert box.dropped == 2 and len(box) == 1  # adding fourth gave up second; fourth is acked, third waits


def test_a_batch_the_harvest_rejects_is_given_up_at_once_and_shows_as_a_gap():
    box = UnackedBatches("inv1", limit=8, resend_after=5.0)
    bad = box.add([_reading(1.0), _reading(2.0)], [], [])
    box.sent(bad.batch_id, now=0.0)
    assert box.reject(bad.batch_id) and not box.reject(bad.batch_id)
    assert box.due(100.0) == []  # never re-sent: re-sending a malformed batch cannot help
    following = box.add([_reading(3.0)], [], [])
    assert following.gaps == (Gap("inv1", 1.0, 2.0, "rejected_by_harvest", 2),)


def test_reconcile_touches_only_the_endpoints_that_change():
    from actors.device.specs import reconcile

    inv1 = {"id": "inv1", "profile": "huawei_sun2000", "host": "10.0.0.5", "unit_id": 1}
    inv2 = {"id": "inv2", "profile": "huawei_sun2000", "host": "10.0.0.5", "unit_id": 2}
    meter = {"id": "meter", "profile": "eastron_sdm630", "host": "10.0.0.9"}
    stop, start = reconcile([inv1, meter], [inv1, meter, inv2])
    assert stop == ["inv1"] and [s.name for s in start] == ["inv1+inv2"]  # the meter keeps running
    stop, start = reconcile([inv1, inv2, meter], [inv1, inv2])
    assert stop == ["meter"] and start == []
    stop, start = reconcile([meter], [{**meter, "poll_interval": 2}])
    assert stop == ["meter"] and [s.config["poll_interval"] for s in start] == [2.0]
    with pytest.raises(DeviceConfigError):
        reconcile([meter], [meter, {"id": "bad"}])


def test_batches_name_the_earlier_ones_they_must_not_overtake():
    box = UnackedBatches("inv1", limit=8, incarnation="life-1")
    first = box.add([_reading(1.0)], [], [])
    second = box.add([_reading(2.0)], [], [])
    assert (first.after, second.after) == ((), (first.batch_id,))
    box.ack(first.batch_id)
    third = box.add([_reading(3.0)], [], [])
    assert third.after == (second.batch_id,) and third.incarnation == "life-1"


def test_a_given_up_batch_keeps_its_counter_events_and_back_to_back_losses_stay_few_gaps():
    box = UnackedBatches("inv1", limit=1, intervals={"inv1": 1.0})
    reset = DeviceEvent("inv1", 1.0, "counter_reset", {"quantity": "energy_total_wh"})
    box.add([_reading(1.0)], [], [reset])
    for t in range(2, 200):
        box.add([_reading(float(t))], [], [])  # each gives up the one before: harvest is not answering
    last = box.add([], [], [])
    assert reset in last.events or reset in box.carry_events  # the reset survives the loss of the batch that carried it
    carried = merge_gaps(list(last.gaps) + box.carry_gaps, {"inv1": 1.5})
    assert carried == [Gap("inv1", 1.0, 199.0, "dropped_unacknowledged", 199)]  # every lost poll, in one window
    assert len(last.gaps) <= 2  # a long outage does not grow the batches: back-to-back losses merge
