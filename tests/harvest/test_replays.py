"""Time-frozen replays of store-and-forward: each asserts exactly what the receiver holds.

Time comes from an injected clock (a 24 h outage replays in seconds); storage, signing,
HTTP and the receiver are the real ones.
"""

from __future__ import annotations

from collections import Counter
from itertools import takewhile

from simulators.ingest.store import IngestStore
from tests.harvest.conftest import START_WALL

DEVICES = ["inv1", "inv2", "inv3", "meter1", "meter2"]


def assert_exactly_once(site, devices, counts):
    """Every produced reading arrived once, in seq order 1..N, nothing else in the device streams."""
    def rows(dev):
        sql = "SELECT seq, seq_last, kind, json_extract(body, '$.v.n') FROM ingest_items WHERE stream = ? ORDER BY seq"
        return site.receiver.app.store.conn.execute(sql, (dev,)).fetchall()

    for dev in devices:
        items = site.receiver.call(rows, dev)
        assert [i[0] for i in items] == list(range(1, counts[dev] + 1)), dev
        assert all(i[1] == i[0] and i[2] == "reading" for i in items)
        assert [i[3] for i in items] == list(range(counts[dev]))


def test_24h_outage_at_1hz_times_5_devices_then_recovery_delivers_everything_exactly_once(site_factory):
    site = site_factory(max_count=5000, max_bytes=4 * 1024 * 1024)
    site.uplink.up = False
    site.produce(DEVICES, 24 * 3600, batch_seconds=600)
    assert site.summary()["items"] == 0
    failures = [s for s in site.steps if s.outcome == "retry"]
    assert failures and max(s.delay_s for s in failures) <= 60.0  # backoff capped at a minute, after 86,400 s of failures too
    assert site.outbox.status()["transports"]["cloud"]["pending"] == 5 * 86400

    site.uplink.up = True
    site.clock.advance(61)
    site.drain()

    assert_exactly_once(site, DEVICES, site.counter)
    summary = site.summary()
    assert summary["items"] == 5 * 86400
    assert summary["duplicates_ignored"] == 0 and summary["chain_breaks"] == 0
    assert summary["acked"] == {f"gw-test/{d}": 86400 for d in DEVICES}
    status = site.outbox.status()
    assert status["items"] == 0 and status["bytes"] == 0  # released after the acks
    assert status["transports"]["cloud"]["failures"] == 0 and status["transports"]["cloud"]["last_error"] is None
    first = site.receiver.call(lambda: site.receiver.app.store.conn.execute("SELECT wall_time FROM ingest_items WHERE stream = 'inv1' ORDER BY seq LIMIT 2").fetchall())
    assert [r[0] for r in first] == [START_WALL, START_WALL + 1]


def test_an_ack_lost_after_the_receiver_committed_is_deduplicated_on_resend(site_factory):
    site = site_factory(max_count=500)
    site.produce(["inv1", "inv2"], 300, batch_seconds=300, upload=False)
    site.receiver.app.inject("lose_ack")

    first = site.uploader.step()
    assert first.outcome == "retry" and "disconnected" in first.error.lower()
    assert site.summary()["items"] == 500  # committed at the receiver, ack never arrived
    assert site.outbox.status()["transports"]["cloud"]["pending"] == 600  # so nothing was released

    site.clock.advance(first.delay_s)
    site.drain()

    assert_exactly_once(site, ["inv1", "inv2"], site.counter)
    summary = site.summary()
    assert summary["duplicates_ignored"] == 500  # the identical re-send, recognised and not stored again
    assert summary["items"] == 600 and summary["chain_breaks"] == 0
    # /metrics' egw_transport_uploaded_batches_total: batches acknowledged, not attempts (the lost ack counts once, when re-sent)
    assert site.outbox.status()["transports"]["cloud"]["acked_batches"] == summary["batches"] == 2


def coverage(items):
    seqs = [s for i in items for s in range(i["seq"], i["seq_last"] + 1)]
    return seqs


def energy_path(items):
    """(first, last) cumulative counter value of each item, in seq order."""
    path = []
    for i in items:
        body = i["body"]
        if i["kind"] == "reading":
            v = body["v"]["energy_total_wh"]
            path.append((v, v))
        elif i["kind"] == "aggregate":
            path.append((body["first"]["energy_total_wh"], body["v"]["energy_total_wh"]))
        elif i["kind"] == "gap":
            path.append((body["first"]["energy_total_wh"], body["last"]["energy_total_wh"]))
    return path


def test_budget_exceeded_in_a_long_outage_downsamples_then_drops_with_gaps_and_energy_stays_exact(site_factory):
    site = site_factory(budget_bytes=60_000, max_count=100)
    site.uplink.up = False
    site.produce(["inv1", "inv2"], 1, batch_seconds=1)
    first_energy = {d: site.energy[d] for d in ("inv1", "inv2")}
    site.produce(["inv1", "inv2"], 3 * 3600 - 1, batch_seconds=60)

    status = site.outbox.status()
    assert status["items_in"] == 2 * 3 * 3600  # polling never stopped
    assert status["downsampled_rows"] > 0 and status["dropped_readings"] > 0 and status["budget_gaps"] > 0
    assert status["bytes"] <= 60_000

    site.uplink.up = True
    site.clock.advance(301)
    site.drain()
    raw_oldest = {}
    for dev in ("inv1", "inv2"):
        items = site.received(dev)
        assert coverage(items) == list(range(1, 3 * 3600 + 1))  # every seq accounted for exactly once
        kinds = Counter(i["kind"] for i in items)
        assert kinds["gap"] > 0 and kinds["aggregate"] > 0
        raw_oldest[dev] = len(list(takewhile(lambda i: i["kind"] == "reading", items)))
        gaps = [i for i in items if i["kind"] == "gap"]
        assert all(g["body"]["reason"] == "storage_budget" for g in gaps)
        assert sum(g["body"]["dropped"] for g in gaps) + sum(i["body"].get("n", 1) for i in items if i["kind"] != "gap") == 3 * 3600
        path = energy_path(items)
        assert path[0][0] == round(first_energy[dev], 6)
        assert path[-1][1] == round(site.energy[dev], 6)  # total production exact
        assert all(a[1] <= b[0] for a, b in zip(path, path[1:], strict=False))  # no counter step lost or invented
        # the in-flight window (the 100 oldest rows) is never rewritten: it stays raw;
        # then come the drops (oldest first), then minute aggregates (then any newest raw readings)
        runs = [k for n, k in enumerate(i["kind"] for i in items) if n == 0 or items[n - 1]["kind"] != k]
        assert runs[:3] == ["reading", "gap", "aggregate"] and runs[3:] in ([], ["reading"]), runs
    assert sum(raw_oldest.values()) == 100
    summary = site.summary()
    assert summary["duplicates_ignored"] == 0 and summary["chain_breaks"] == 0


def test_garbage_truncated_slow_and_failing_responses_lose_nothing_and_backoff_grows_then_resets(site_factory):
    site = site_factory(max_count=100, timeout_s=0.3)
    site.produce(["inv1", "inv2"], 600, batch_seconds=600, upload=False)
    app = site.receiver.app
    for mode in ("garbage", "truncate", "error", "refuse"):
        app.inject(mode)
    app.inject("slow", delay=0.6)

    delays = []
    for _ in range(5):
        result = site.uploader.step()
        assert result.outcome == "retry", result
        delays.append(result.delay_s)
        site.clock.advance(result.delay_s)
    # 1, 2, 4, 8, 16 s, each +/- 20 % jitter: strictly growing
    assert all(0.8 * 2**k <= d <= 1.2 * 2**k for k, d in enumerate(delays)), delays
    status = site.outbox.status()["transports"]["cloud"]
    assert status["failures"] == 5 and status["backoff_s"] == delays[-1] and status["last_error"]

    assert site.uploader.step().outcome == "sent"
    status = site.outbox.status()["transports"]["cloud"]
    assert status["failures"] == 0 and status["backoff_s"] == 0 and status["last_error"] is None

    app.inject("throttle", retry_after=7)
    throttled = site.uploader.step()
    assert throttled.outcome == "throttled" and throttled.delay_s == 7.0  # Retry-After honoured
    assert site.uploader.step().outcome == "waiting"
    site.clock.advance(7)
    site.drain()

    assert_exactly_once(site, ["inv1", "inv2"], site.counter)
    summary = site.summary()
    assert summary["items"] == 1200 and summary["chain_breaks"] == 0
    assert summary["duplicates_ignored"] >= 100  # the truncated reply's batch was committed, then re-sent


def test_wall_clock_jumps_during_an_outage_are_recorded_and_sequences_stay_intact(site_factory):
    site = site_factory(max_count=1000)
    site.uplink.up = False
    site.produce(["inv1", "meter1"], 1800)
    site.clock.jump_wall(-3600.0)  # NTP pulls the clock back an hour
    site.produce(["inv1", "meter1"], 1800)
    site.clock.jump_wall(7200.0)  # ... then forward two
    site.produce(["inv1", "meter1"], 1800)
    site.uplink.up = True
    site.clock.advance(301)
    site.drain()

    assert_exactly_once(site, ["inv1", "meter1"], site.counter)
    clock = site.received("_gateway")
    assert [c["seq"] for c in clock] == [1, 2] and all(c["kind"] == "clock" for c in clock)
    assert [c["body"]["jump_s"] for c in clock] == [-3600.0, 7200.0]
    assert [c["body"]["b"] for c in clock] == ["boot-0000", "boot-0000"]
    inv = site.received("inv1")
    walls = [i["body"]["t"] for i in inv]
    monos = [i["body"]["m"] for i in inv]
    assert monos == sorted(monos) and walls != sorted(walls)  # monotonic order kept; wall order visibly broken
    # the receiver can re-anchor: wall - mono is constant between clock events
    offsets = {round(i["body"]["t"] - i["body"]["m"], 6) for i in inv}
    assert len(offsets) == 3


def test_a_permanent_rejection_parks_the_batch_as_a_dead_letter_and_uploading_continues(site_factory):
    site = site_factory(max_count=100)
    site.produce(["inv1"], 300, batch_seconds=300, upload=False)
    site.receiver.app.inject("reject")

    result = site.uploader.step()
    assert result.outcome == "dead_lettered" and "422" in result.error and "injected permanent rejection" in result.error
    site.drain()

    status = site.outbox.status()["transports"]["cloud"]
    assert status["dead_letters"] == 1 and "422" in status["last_dead_letter_error"]
    row = site.outbox.conn.execute("SELECT first_id, last_id, items, jws FROM outbox_dead_letters").fetchone()
    assert row["items"] == 100 and row["jws"].count(".") == 2  # the signed batch is kept, not dropped
    items = site.received("inv1")
    assert [i["seq"] for i in items] == list(range(101, 301))
    assert site.summary()["chain_breaks"] == 0  # the chain continues from the last accepted batch


def test_an_unregistered_gateway_key_backs_off_instead_of_dead_lettering_every_batch(site_factory, tmp_path):
    site = site_factory(max_count=100)
    site.produce(["inv1"], 150, batch_seconds=150, upload=False)
    fresh = site.receiver.call(IngestStore, tmp_path / "fresh.db")
    site.receiver.app.store, original = fresh, site.receiver.app.store  # a receiver that never heard of this gateway
    result = site.uploader.step()
    assert result.outcome == "retry" and "HTTP 401" in result.error and "registered" in result.error
    assert site.outbox.status()["transports"]["cloud"]["dead_letters"] == 0
    site.receiver.app.store = original
    site.receiver.call(fresh.close)
    site.clock.advance(result.delay_s)
    site.drain()
    assert_exactly_once(site, ["inv1"], site.counter)


def test_at_the_dead_letter_bound_rejected_batches_are_held_not_dropped(site_factory, monkeypatch):
    monkeypatch.setattr("actors.harvest.uplink.MAX_DEAD_LETTERS_PER_TRANSPORT", 1)
    site = site_factory(max_count=100)
    site.produce(["inv1"], 300, batch_seconds=300, upload=False)
    site.receiver.app.inject("reject", count=2)
    assert site.uploader.step().outcome == "dead_lettered"
    held = site.uploader.step()
    assert held.outcome == "retry" and "dead-letter store full" in held.error
    assert site.outbox.status()["transports"]["cloud"]["pending"] == 200  # still in the outbox
    site.clock.advance(held.delay_s)
    site.drain()
    assert [i["seq"] for i in site.received("inv1")] == list(range(101, 301))
