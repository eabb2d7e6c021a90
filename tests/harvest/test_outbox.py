"""The outbox's own promises: durable sequences, idempotent batches, bounded bytes, visible status."""

from __future__ import annotations

import json

from actors.harvest.messages import DeviceEvent, Gap, Reading, ReadingBatch
from storage.outbox import Outbox

START = 1_760_000_000.0
BIG_DISK = (100 * 2**30, 10 * 2**30, 90 * 2**30)


def readings(device, start, count, t0=1000.0, boot="b1"):
    return tuple(
        Reading(device, t0 + i, 50.0 + i, boot, {"ac_power_w": 100.0 + i, "energy_total_wh": 5000.0 + i, "status": "ok"}, raw={"40083": i})
        for i in range(start, start + count)
    )


def open_outbox(path, **kw):
    return Outbox.open(path, disk_usage=lambda: kw.pop("disk", BIG_DISK), **kw)


def rows(outbox, stream=None):
    sql = "SELECT stream, seq, seq_last, kind, body FROM outbox_items" + (" WHERE stream = ?" if stream else "") + " ORDER BY id"
    return [dict(r) for r in outbox.conn.execute(sql, (stream,) if stream else ())]


def test_each_device_gets_its_own_contiguous_sequence_that_survives_a_reopen(tmp_path):
    outbox = open_outbox(tmp_path / "o.db")
    assert outbox.ingest(ReadingBatch("p", 1, readings("inv1", 0, 3) + readings("meter1", 0, 2))) == {"inv1": 1, "meter1": 1}
    outbox.close()
    outbox = open_outbox(tmp_path / "o.db")
    first = outbox.ingest(ReadingBatch("p", 2, readings("inv1", 3, 2), gaps=(Gap("inv1", 1005.0, 1010.0, "offline", 5),), events=(DeviceEvent("inv1", 1011.0, "counter_reset"),)))
    assert first == {"inv1": 4}
    inv = rows(outbox, "inv1")
    assert [(r["seq"], r["kind"]) for r in inv] == [(1, "reading"), (2, "reading"), (3, "reading"), (4, "reading"), (5, "reading"), (6, "gap"), (7, "event")]
    assert json.loads(inv[5]["body"]) == {"start": 1005.0, "end": 1010.0, "reason": "offline", "missed": 5}
    assert json.loads(inv[0]["body"])["r"] == {"40083": 0}  # raw registers kept for diagnosis


def test_a_resent_batch_is_idempotent_and_a_restarted_producer_is_new_data_after_a_gap(tmp_path):
    outbox = open_outbox(tmp_path / "o.db")
    batch = ReadingBatch("inv1-poller", 7, readings("inv1", 0, 5), incarnation="life-1")
    assert outbox.ingest(batch) == {"inv1": 1}
    assert outbox.ingest(batch) == {"inv1": 1}  # re-sent after a lost ack: same seqs
    changed_clock = ReadingBatch("inv1-poller", 7, readings("inv1", 0, 5, t0=1000.5), incarnation="life-1")
    assert outbox.ingest(changed_clock) == {"inv1": 1}  # identity is the batch id, never a clock read at send time
    assert len(rows(outbox)) == 5
    restarted = ReadingBatch("inv1-poller", 7, readings("inv1", 5, 2, t0=2000.0), incarnation="life-2", intervals={"inv1": 1.0})
    assert outbox.ingest(restarted) == {"inv1": 7}  # the restart's gap takes seq 6
    inv = rows(outbox, "inv1")
    assert [(r["seq"], r["kind"]) for r in inv] == [(1, "reading"), (2, "reading"), (3, "reading"), (4, "reading"), (5, "reading"), (6, "gap"), (7, "reading"), (8, "reading")]
    assert json.loads(inv[5]["body"]) == {"start": 1004.0, "end": 2005.0, "reason": "not_polled", "missed": 1000}


def test_a_wall_clock_jump_against_monotonic_time_becomes_a_clock_event(tmp_path):
    outbox = open_outbox(tmp_path / "o.db")
    steady = tuple(Reading("inv1", 1000.0 + i, 10.0 + i, "b1", {}) for i in range(3))
    jumped = (Reading("inv1", 900.0, 13.0, "b1", {}), Reading("inv1", 901.0, 14.0, "b1", {}))
    other_boot = (Reading("inv1", 5000.0, 1.0, "b2", {}),)  # a new boot is not a jump
    outbox.ingest(ReadingBatch("p", 1, steady + jumped + other_boot))
    clock = rows(outbox, "_gateway")
    assert len(clock) == 1
    body = json.loads(clock[0]["body"])
    assert body["jump_s"] == -103.0 and body["b"] == "b1" and body["m"] == 13.0
    assert [r["seq"] for r in rows(outbox, "inv1")] == [1, 2, 3, 4, 5, 6]
    assert outbox.status()["clock_events"] == 1


def test_budget_downsamples_oldest_raw_readings_first_keeping_counters_exact(tmp_path):
    outbox = open_outbox(tmp_path / "o.db", budget_bytes=10**9)
    outbox.register_transport("cloud", window=10)
    for n in range(10):
        outbox.ingest(ReadingBatch("p", n, readings("inv1", n * 60, 60, t0=600.0)))  # minute-aligned
    outbox.budget_bytes = outbox.total_bytes // 3
    report = outbox.enforce_budget()
    assert report.downsampled_rows > 0 and report.dropped_rows == 0 and not report.over_budget
    inv = rows(outbox, "inv1")
    assert [r["kind"] for r in inv[:10]] == ["reading"] * 10  # the transport's next window is untouched
    aggregate = json.loads(inv[10]["body"])
    assert inv[10]["kind"] == "aggregate" and (inv[10]["seq"], inv[10]["seq_last"]) == (11, 60)
    assert aggregate["n"] == 50 and aggregate["first"] == {"energy_total_wh": 5010.0}
    assert aggregate["v"]["energy_total_wh"] == 5059.0  # the exact last counter value, not a mean
    assert aggregate["v"]["ac_power_w"] == sum(100.0 + i for i in range(10, 60)) / 50
    assert aggregate["v"]["status"] == "ok"
    covered = [s for r in inv for s in range(r["seq"], r["seq_last"] + 1)]
    assert covered == list(range(1, 601))


def test_budget_then_drops_oldest_with_gap_records_when_downsampling_is_not_enough(tmp_path):
    outbox = open_outbox(tmp_path / "o.db")
    outbox.register_transport("cloud", window=5)
    for n in range(20):
        outbox.ingest(ReadingBatch("p", n, readings("inv1", n * 60, 60, t0=600.0)))
    outbox.budget_bytes = 4000
    report = outbox.enforce_budget()
    assert report.downsampled_rows > 0 and report.dropped_rows > 0 and not report.over_budget
    assert outbox.total_bytes <= 4000 * 0.9
    inv = rows(outbox, "inv1")
    gaps = [json.loads(r["body"]) | {"seq": r["seq"], "seq_last": r["seq_last"]} for r in inv if r["kind"] == "gap"]
    assert gaps and gaps[0]["seq"] == 6 and gaps[0]["reason"] == "storage_budget"
    assert gaps[0]["first"] == {"energy_total_wh": 5005.0}
    covered = [s for r in inv for s in range(r["seq"], r["seq_last"] + 1)]
    assert covered == list(range(1, 1201))  # every seq still accounted for
    assert outbox.total_bytes == outbox.conn.execute("SELECT sum(nbytes) FROM outbox_items").fetchone()[0]
    status = outbox.status()
    assert status["dropped_readings"] == sum(g["dropped"] for g in gaps) and status["budget_gaps"] == len(gaps)


def test_a_full_disk_lowers_the_budget_below_the_configured_bytes(tmp_path):
    disk = {"free": 90 * 2**30}
    outbox = Outbox.open(tmp_path / "o.db", disk_usage=lambda: (100 * 2**30, 0, disk["free"]), min_free_fraction=0.05)
    outbox.ingest(ReadingBatch("p", 1, readings("inv1", 0, 600, t0=600.0)))
    assert not outbox.over_budget()
    disk["free"] = int(5 * 2**30 - outbox.total_bytes / 2)  # under the 5 % watermark by half the outbox
    assert outbox.over_budget()
    report = outbox.enforce_budget()
    assert report.downsampled_rows > 0 and not outbox.over_budget()
    assert outbox.status()["effective_budget_bytes"] < outbox.budget_bytes


def test_release_frees_rows_only_when_every_transport_has_them(tmp_path):
    outbox = open_outbox(tmp_path / "o.db")
    outbox.register_transport("a", 100)
    outbox.register_transport("b", 100)
    outbox.ingest(ReadingBatch("p", 1, readings("inv1", 0, 10)))
    items = outbox.pending("a", 4, 10**6)
    assert [i.seq for i in items] == [1, 2, 3, 4]
    outbox.release("a", items[-1].id, "h" * 64, {"inv1": 4}, 4, now=1.0)
    assert len(rows(outbox)) == 10  # b has not got them yet
    assert [i.seq for i in outbox.pending("a", 100, 10**6)] == [5, 6, 7, 8, 9, 10]
    outbox.release("b", items[-1].id, "g" * 64, {"inv1": 4}, 4, now=2.0)
    assert [r["seq"] for r in rows(outbox)] == [5, 6, 7, 8, 9, 10]
    status = outbox.status()
    assert status["transports"]["a"]["acked_seq"] == {"inv1": 4} and status["transports"]["b"]["last_success"] == 2.0
    assert status["bytes"] == outbox.conn.execute("SELECT sum(nbytes) FROM outbox_items").fetchone()[0]


def test_pending_is_bounded_by_count_and_bytes_but_always_makes_progress(tmp_path):
    outbox = open_outbox(tmp_path / "o.db")
    outbox.register_transport("a", 100)
    outbox.ingest(ReadingBatch("p", 1, readings("inv1", 0, 50)))
    one = outbox.conn.execute("SELECT nbytes FROM outbox_items LIMIT 1").fetchone()[0]
    assert len(outbox.pending("a", 10, 10**6)) == 10
    assert len(outbox.pending("a", 100, one * 3 + 1)) == 3
    assert len(outbox.pending("a", 100, 1)) == 1


def test_status_for_the_rest_api_reads_everything_from_the_database(tmp_path):
    from storage.outbox import outbox_status

    outbox = open_outbox(tmp_path / "o.db")
    outbox.register_transport("cloud", 100)
    outbox.ingest(ReadingBatch("p", 1, readings("inv1", 0, 4)))
    items = outbox.pending("cloud", 2, 10**6)
    outbox.release("cloud", items[-1].id, "a" * 64, {"inv1": 2}, 2, now=START)
    outbox.record_failure("cloud", "HTTP 503: busy", backoff_s=2.0, retry_at=START + 2, now=START + 1)
    rest = outbox.pending("cloud", 100, 10**6)
    outbox.dead_letter("cloud", rest, 422, "HTTP 422: schema", "b" * 64, "x.y.z", now=START + 3)
    status = outbox_status(tmp_path / "o.db", budget_bytes=10**6)
    cloud = status["transports"]["cloud"]
    assert status["items_in"] == 4 and status["items_acked"] == 2 and status["items"] == 0 and status["budget_bytes"] == 10**6
    assert cloud["last_success"] == START and cloud["acked_seq"] == {"inv1": 2} and cloud["acked_items"] == 2
    assert cloud["dead_letters"] == 1 and cloud["last_dead_letter_error"] == "HTTP 422: schema"
    assert cloud["last_error"] == "dead-lettered: HTTP 422: schema" and cloud["pending"] == 0
