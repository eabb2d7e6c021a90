"""The data plane's promises, item by item: group commit, identity, poison data, cursors, dead letters, exact energy.

Real SQLite files, the real uploader and the real receiver over loopback HTTP; the
harvest actor itself runs under thespian's simpleSystemBase where a test needs it.
"""

from __future__ import annotations

import json
import math

import pytest
from thespian.actors import ActorSystem

from actors.harvest.messages import BatchAck, DeviceEvent, Reading, ReadingBatch
from actors.harvest.uplink import HttpReply, http_post
from supervisor.backoff import backoff_delay
from supervisor.embedded import ask_typed
from supervisor.messages import Start, Started, StatusUpdate
from storage.outbox import Outbox
from storage.outbox.budget import _counter_bounds
from tests.conftest import strict_loads

BIG_DISK = (100 * 2**30, 10 * 2**30, 90 * 2**30)


@pytest.fixture
def asys():
    system = ActorSystem("simpleSystemBase", transientUnique=True)
    yield system
    system.shutdown()


# ------------------------------------------------------------ group commit
def test_batches_of_many_producers_share_one_commit_and_each_is_acked_after_it(asys, tmp_path):
    harvest = asys.createActor("actors.harvest.actor.HarvestActor")
    ask_typed(asys, harvest, Start("harvest", {"db_path": str(tmp_path / "egw.db"), "commit_window_s": 0.3, "status_interval_s": 0.1}), Started)
    for n in range(1, 5):
        asys.tell(harvest, ReadingBatch(f"dev{n}", 1, (Reading(f"dev{n}", 1000.0, 1.0, "b", {"ac_power_w": 1.0}),), incarnation="x"))
    acks, status = [], None
    for _ in range(200):  # acks and status updates (the test is the harvest's parent here)
        msg = asys.listen(1)
        if isinstance(msg, BatchAck):
            acks.append(msg.producer)
            if len(acks) == 1:
                reader = Outbox.open(tmp_path / "egw.db")
                assert reader.conn.execute("SELECT count(*) FROM outbox_items").fetchone()[0] == 4  # acked means all committed
                reader.close()
        elif isinstance(msg, StatusUpdate) and msg.info.get("batches") == 4:
            status = msg.info
        if len(acks) == 4 and status is not None:
            break
    assert sorted(acks) == ["dev1", "dev2", "dev3", "dev4"]
    assert status["commits"] == 1  # four producers, one transaction, one fsync


def test_a_resend_after_a_lost_ack_is_the_same_items_even_with_a_new_clock_read(tmp_path):
    outbox = Outbox.open(tmp_path / "o.db", disk_usage=lambda: BIG_DISK)
    first = ReadingBatch("charger:CP1", 41, (Reading("charger:CP1", 1000.0, 5.0, "b", {"energy_wh": 10.0}),))
    resent = ReadingBatch("charger:CP1", 41, (Reading("charger:CP1", 1000.0, 7.5, "b", {"energy_wh": 10.0}),))  # mono recomputed
    assert outbox.ingest(first) == {"charger:CP1": 1}
    results = outbox.ingest_many([resent])
    assert results[0].status == "duplicate"
    assert outbox.conn.execute("SELECT count(*) FROM outbox_items").fetchone()[0] == 1


def test_a_batch_that_would_overtake_an_earlier_one_is_held_until_that_one_is_stored(tmp_path):
    outbox = Outbox.open(tmp_path / "o.db", disk_usage=lambda: BIG_DISK)

    def batch(n, after=()):
        return ReadingBatch("inv1", n, (Reading("inv1", 1000.0 + n, float(n), "b", {"n": n}),), incarnation="life", after=after)

    assert outbox.ingest_many([batch(1)])[0].status == "stored"
    held = outbox.ingest_many([batch(3, after=(2,))])[0]
    assert held.status == "held" and not held.acknowledge  # 2 is still on its way: 3 must not take a lower seq
    assert [r.status for r in outbox.ingest_many([batch(3, after=(2,)), batch(2)])] == ["stored", "stored"]
    order = [json.loads(r[0])["v"]["n"] for r in outbox.conn.execute("SELECT body FROM outbox_items WHERE stream = 'inv1' ORDER BY seq")]
    assert order == [1, 2, 3]  # sequence order is time order


# ------------------------------------------------------------- poison data
@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_a_non_finite_modbus_value_is_stored_as_null_flagged_and_the_receiver_takes_the_batch(site_factory, bad):
    site = site_factory()
    good = Reading("inv1", 1000.0, 1.0, "boot-0000", {"ac_power_w": 500.0, "dc_voltage_v": 400.0})
    poison = Reading("inv1", 1001.0, 2.0, "boot-0000", {"ac_power_w": bad, "dc_voltage_v": 401.0}, raw={"40083": bad})
    other = Reading("meter1", 1001.0, 2.0, "boot-0000", {"grid_power_w": -200.0})
    result = site.outbox.ingest_many([ReadingBatch("poller", 1, (good, poison, other))])[0]
    assert result.status == "stored" and result.nulled == ["inv1.v.ac_power_w", "inv1.r.40083"]
    stored = [strict_loads(r[0]) for r in site.outbox.conn.execute("SELECT body FROM outbox_items WHERE stream = 'inv1' ORDER BY seq")]
    assert stored[1]["v"] == {"ac_power_w": None, "dc_voltage_v": 401.0} and stored[1]["f"] == ["ac_power_w"]
    site.drain()
    assert site.summary()["items"] == 3  # one poisoned value never stalls the stream, nor any other
    assert site.outbox.status()["nonfinite_values"] == 2


# ----------------------------------------------------------------- cursors
def test_removing_a_transport_from_the_config_releases_its_claim_on_rows(asys, site_factory, tmp_path):
    site = site_factory()
    site.outbox.register_transport("old-endpoint", window=1000)  # configured once, then removed
    site.produce(["inv1"], seconds=120)
    site.drain()
    assert site.outbox.status()["items"] == 120  # the old cursor holds every row
    harvest = asys.createActor("actors.harvest.actor.HarvestActor")
    config = {"db_path": str(tmp_path / "gateway" / "egw.db"), "transports": ["cloud"]}
    ask_typed(asys, harvest, Start("harvest", config), Started)
    assert site.outbox.status()["items"] == 0  # what "cloud" has acknowledged is deleted now
    assert site.outbox.transports() == ["cloud"]


# ------------------------------------------------------------ dead letters
def test_a_dead_letter_counts_in_the_budget_and_can_be_sent_again(site_factory):
    site = site_factory()
    site.produce(["inv1"], seconds=30, upload=False)
    site.receiver.app.inject("reject")
    result = site.uploader.step()
    assert result.outcome == "dead_lettered"
    letters = site.outbox.dead_letters()
    assert [(d["transport"], d["items"], d["http_status"], d["requeued"]) for d in letters] == [("cloud", 30, 422, False)]
    assert site.outbox.total_bytes >= letters[0]["nbytes"] > 0 and site.outbox.status()["dead_letter_bytes"] == letters[0]["nbytes"]
    site.produce(["inv1"], seconds=10, upload=False)
    site.drain()
    assert site.summary()["items"] == 10  # the streams behind the refused batch went on
    assert site.outbox.requeue_dead_letters() == 1
    site.drain()
    assert site.summary()["items"] == 40 and site.outbox.dead_letters() == []
    assert site.outbox.total_bytes == 0  # delivered: its bytes are freed
    seqs = [i["seq"] for i in site.received("inv1")]
    assert sorted(seqs) == list(range(1, 41))
    assert site.summary()["chain_breaks"] == 0


# ---------------------------------------------------------- exact energy
def energy_by_stream(bodies_by_kind):
    """Energy per counter segment, summed: exact as long as no run straddles a reset."""
    total = 0.0
    segment_first = segment_last = None
    for kind, body in bodies_by_kind:
        if kind == "event":
            if segment_first is not None:
                total += segment_last - segment_first
            segment_first = segment_last = None
            continue
        first, last = _counter_bounds([body])
        if kind == "gap":
            first, last = body.get("first", {}), body.get("last", {})
        if "energy_total_wh" not in last:
            continue
        if segment_first is None:
            segment_first = first.get("energy_total_wh", last["energy_total_wh"])
        segment_last = last["energy_total_wh"]
    if segment_first is not None:
        total += segment_last - segment_first
    return total


def test_a_counter_reset_inside_an_aggregation_window_keeps_energy_exact_through_the_budget(tmp_path):
    outbox = Outbox.open(tmp_path / "o.db", disk_usage=lambda: BIG_DISK)
    readings, events, energy = [], [], 5000.0
    for i in range(600):  # ten minutes at 1 Hz; the meter is reset at second 90 (mid-minute)
        t = 6000.0 + i
        if i == 90:
            energy = 0.0
            events.append(DeviceEvent("inv1", t, "counter_reset", {"quantity": "energy_total_wh"}))
        else:
            energy += 1.0
        flags = ("ac_power_w",) if i % 7 == 0 else ()
        readings.append(Reading("inv1", t, float(i), "b", {"energy_total_wh": energy, "ac_power_w": 99999.0 if flags else 100.0}, flags=flags))
    outbox.ingest(ReadingBatch("p", 1, tuple(readings), events=tuple(events)))

    def stream():
        return [(k, json.loads(b)) for k, b in outbox.conn.execute("SELECT kind, body FROM outbox_items WHERE stream = 'inv1' ORDER BY seq")]

    before = energy_by_stream(stream())
    assert before == 89.0 + 509.0  # 89 Wh before the reset, 509 Wh after it
    outbox.register_transport("cloud", window=1)
    outbox.budget_bytes = outbox.total_bytes // 4
    report = outbox.enforce_budget()
    assert report.downsampled_rows > 0
    after = stream()
    assert energy_by_stream(after) == before  # nothing straddled the reset
    kinds = [k for k, _ in after]
    assert "event" in kinds and kinds.count("aggregate") >= 2
    for kind, body in after:
        if kind == "aggregate":
            assert body["v"]["ac_power_w"] == 100.0  # flagged values (99999) are never averaged in
    outbox.budget_bytes = outbox.total_bytes // 20
    outbox.enforce_budget()
    assert energy_by_stream(stream()) == before  # dropped to gap records: still exact


# ---------------------------------------------------------------- backoff
def test_backoff_never_overflows_and_stays_at_its_cap():
    assert backoff_delay(0, 1.0, 60.0) == 1.0 and backoff_delay(3, 1.0, 60.0) == 8.0
    for failures in (6, 1024, 10**6, 10**12):
        assert backoff_delay(failures, 1.0, 60.0) == 60.0
    jittered = backoff_delay(10**9, 1.0, 60.0, jitter=0.2)
    assert 48.0 <= jittered <= 60.0 and math.isfinite(jittered)


# ------------------------------------------------------- endpoint errors
def test_a_wrong_url_holds_the_rows_instead_of_parking_every_batch(site_factory):
    site = site_factory()
    site.produce(["inv1"], seconds=20, upload=False)
    wrong = site.receiver.url.replace("/v1/batches", "/v1/nowhere")
    site.uploader.post = lambda url, body, timeout: http_post(wrong, body, timeout)
    result = site.uploader.step()
    assert result.outcome == "retry" and "404" in result.error and "upload URL" in result.error
    assert site.outbox.dead_letters() == [] and site.outbox.status()["transports"]["cloud"]["pending"] == 20
    site.uploader.post = site.uplink.post  # the operator fixes the URL
    site.clock.advance(result.delay_s)
    site.drain()
    assert site.summary()["items"] == 20


def test_a_proxy_refusing_large_batches_gets_smaller_ones_and_nothing_is_parked(site_factory):
    site = site_factory()
    site.produce(["inv1"], seconds=100, upload=False)
    limit = 30_000  # bytes a proxy in front of the receiver accepts

    def through_proxy(url, body, timeout):
        if len(body) > limit:
            return HttpReply(413, {}, b'{"error": "request entity too large"}')
        return site.uplink.post(url, body, timeout)

    site.uploader.post = through_proxy
    site.drain()
    assert site.outbox.dead_letters() == [] and site.summary()["items"] == 100
    assert [i["seq"] for i in site.received("inv1")] == list(range(1, 101))


def test_after_a_three_minute_outage_the_backlog_drains_within_a_minute_of_the_receiver_returning(site_factory):
    site = site_factory(max_count=100)
    site.uplink.up = False
    site.produce(["inv1", "inv2"], seconds=180, batch_seconds=10)  # steps the uploader whenever due
    assert site.summary()["items"] == 0
    back_at = site.clock.mono()
    site.uplink.up = True
    while site.uploader.step().outcome == "waiting":  # the transport's timer: it wakes when its backoff ends
        site.clock.advance(site.uploader.next_attempt_mono - site.clock.mono())
    assert site.clock.mono() - back_at <= 60.0  # backoff capped: the first retry comes within a minute
    results = site.drain()
    full = [r for r in results if r.outcome == "sent" and r.items == 100]
    assert full and all(r.delay_s == 0.0 for r in full)  # a backlog drains at full speed, batch after batch
    assert site.summary()["items"] == 360


def test_a_late_batch_of_a_producers_earlier_life_is_not_stored_after_its_next_life_began(tmp_path):
    outbox = Outbox.open(tmp_path / "o.db", disk_usage=lambda: BIG_DISK)
    old, new = "00000000000000001000-41", "00000000000000002000-57"  # incarnations sort by start time

    def batch(life, n, t):
        return ReadingBatch("devices/inv1", n, (Reading("inv1", t, t, "b", {"n": t}),), incarnation=life, intervals={"inv1": 1.0})

    outbox.ingest(batch(old, 1, 100.0))
    outbox.ingest(batch(new, 1, 110.0))  # the restarted actor's first batch: a restart gap 100..110
    late = outbox.ingest_many([batch(old, 2, 101.0)])[0]  # the dead actor's last batch, still in flight
    assert late.status == "stale" and late.acknowledge
    outbox.ingest(batch(new, 2, 111.0))
    rows = [(k, json.loads(b)) for k, b in outbox.conn.execute("SELECT kind, body FROM outbox_items WHERE stream = 'inv1' ORDER BY seq")]
    assert [k for k, _ in rows] == ["reading", "gap", "reading", "reading"]  # one restart gap, old readings never after new
    assert [b["t"] for k, b in rows if k == "reading"] == [100.0, 110.0, 111.0]
