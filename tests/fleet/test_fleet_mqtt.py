"""Gateway -> mosquitto -> receiver workers -> PostgreSQL, with real servers and real failures.

What a fleet operator relies on: every item lands exactly once whatever fails in between
(the broker, a worker, the gateway's own re-sends), rows leave a gateway only after the
receiver committed them, and a batch that is forged or out of order is refused with a
reason and stores nothing.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
import threading
from typing import Any

import asyncpg

from actors.harvest.signing import b64url, build_signed_batch
from storage.identity import load_or_create_signer
from storage.outbox import OutboxItem
from tests.conftest import wait_until
from tests.fleet.conftest import register
from tests.fleet.servers import ROOT, Gateway, Mosquitto, MqttProbe, PostgresServer

STREAMS = ["inv-1", "inv-2", "meter", "pv-roof", "battery"]


def _items(db: tuple[PostgresServer, str]) -> tuple[int, int]:
    server, name = db
    row = server.query(name, "SELECT count(*) AS n, count(DISTINCT (gateway, stream, seq)) AS distinct_n FROM fleet_items")[0]
    return row["n"], row["distinct_n"]


def _drain_all(gateways: list[Gateway], timeout: float = 60.0) -> None:
    """Drain every gateway at once (one thread each), as independent boxes in a fleet would."""
    errors: list[BaseException] = []

    def run(gateway: Gateway) -> None:
        try:
            gateway.drain(timeout)
        except BaseException as exc:  # noqa: BLE001 - re-raised in the test's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(g,)) for g in gateways]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout + 10)
    if errors:
        raise errors[0]


def test_two_workers_store_every_item_exactly_once(fleet_db, dsn, broker, workers, gateways) -> None:
    first, second = workers(dsn, broker.url), workers(dsn, broker.url)
    first.ready(), second.ready()
    fleet = [gateways(f"gw-{n}", broker.url, max_count=40) for n in range(4)]
    for gateway in fleet:
        register(dsn, gateway)
        gateway.produce(STREAMS, 60)  # 300 items: 8 batches per gateway
    _drain_all(fleet)

    assert _items(fleet_db) == (4 * 300, 4 * 300)
    assert all(g.pending() == 0 for g in fleet)  # every row released, and only by acknowledgements
    status = first.get("/v1/status")
    assert {g["gateway"]: {s: v["acked"] for s, v in g["streams"].items()} for g in status["gateways"]} == {g.name: dict.fromkeys(STREAMS, 60) for g in fleet}
    assert status["totals"]["duplicates"] == 0 and status["totals"]["chain_breaks"] == 0
    # the shared subscription split the fleet's batches between the two workers
    stored = [w.metric("egw_ingest_batches_total", via="mqtt", outcome="stored") for w in (first, second)]
    assert sum(stored) == 32 and min(stored) > 0


def test_broker_restart_mid_stream_loses_and_duplicates_nothing(fleet_db, dsn, broker: Mosquitto, workers, gateways) -> None:
    worker = workers(dsn, broker.url).ready()
    gateway = gateways("gw-restart", broker.url, max_count=50)
    register(dsn, gateway)
    gateway.produce(STREAMS, 40)  # 200 items, 4 batches
    assert gateway.step().outcome == "sent" and gateway.step().outcome == "sent"

    broker.stop()
    wait_until(lambda: not gateway.uploader.link.connected, timeout=15, what="the gateway noticing the broker is gone")
    gateway.produce(STREAMS, 20)  # readings keep coming while the broker is down
    failed = gateway.step()
    assert failed.outcome == "retry" and "batch kept in the outbox" in failed.error
    assert gateway.pending() == 200  # store-and-forward: nothing released, nothing lost

    broker.start()  # same port, empty broker: no sessions, nothing queued
    gateway.drain()
    assert _items(fleet_db) == (300, 300)
    wait_until(lambda: worker.health().get("mqtt") == "subscribed", timeout=20, what="the worker re-subscribed")
    assert worker.get("/v1/status")["gateways"][0]["streams"]["meter"]["acked"] == 60


class HeldLock:
    """A table lock held by another session (its own thread and loop) until `release()`."""

    def __init__(self, dsn: str, sql: str) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

        async def take() -> Any:
            conn = await asyncpg.connect(dsn)
            tx = conn.transaction()
            await tx.start()
            await conn.execute(sql)
            return conn, tx

        self.conn, self.tx = asyncio.run_coroutine_threadsafe(take(), self.loop).result(10)

    def release(self) -> None:
        async def drop() -> None:
            await self.tx.rollback()
            await self.conn.close()

        asyncio.run_coroutine_threadsafe(drop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)


def test_worker_sigkilled_mid_batch_the_other_one_stores_it_once(fleet_db, dsn, broker, workers, gateways) -> None:
    server, name = fleet_db
    pair = {w.pid: w for w in (workers(dsn, broker.url), workers(dsn, broker.url))}
    for w in pair.values():
        w.ready()
    gateway = gateways("gw-kill", broker.url, max_count=100, timeout_s=2.0)
    register(dsn, gateway)
    gateway.produce(STREAMS, 20)  # one batch of 100

    # the worker that gets the batch inserts its items, then waits on this lock, mid-transaction
    lock = HeldLock(dsn, "LOCK TABLE fleet_gateway_stats IN SHARE MODE")
    drained = threading.Thread(target=gateway.drain, kwargs={"timeout": 60})
    drained.start()

    def blocked_worker() -> int | None:
        rows = server.query(name, "SELECT application_name FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name LIKE 'egw-ingest-%'")
        return int(rows[0]["application_name"].rsplit("-", 1)[1]) if rows else None

    victim = wait_until(blocked_worker, timeout=20, what="a worker waiting mid-batch")
    pair[victim].kill()  # SIGKILL: no commit, no acknowledgement, no PUBACK
    lock.release()
    drained.join(70)

    assert not drained.is_alive() and gateway.pending() == 0
    # the broker had the batch, but the killed worker never acknowledged it: the rows stayed
    # until the gateway published it again and the survivor committed and acknowledged it
    # (on a slow machine the gateway may give up waiting more than once before the kill: each such try is the same retry)
    *unanswered, sent, idle = gateway.steps
    assert unanswered and all("the broker has the batch (PUBACK) but no receiver acknowledged it" in s.error for s in unanswered)
    assert (sent.outcome, idle.outcome) == ("sent", "idle")
    assert _items(fleet_db) == (100, 100)
    survivor = next(w for pid, w in pair.items() if pid != victim)
    assert survivor.metric("egw_ingest_items_stored_total") == 100
    assert server.query(name, "SELECT count(*) AS n FROM fleet_batches")[0]["n"] >= 1


def test_duplicate_deliveries_are_stored_once_and_counted(fleet_db, dsn, broker, workers, gateways) -> None:
    first, second = workers(dsn, broker.url), workers(dsn, broker.url)
    first.ready(), second.ready()
    gateway = gateways("gw-dup", broker.url)
    register(dsn, gateway)
    gateway.produce(STREAMS, 10)  # 50 items
    acks = MqttProbe(broker.url, "egw/gw-dup/acks")
    items = gateway.pending_items()
    batch = build_signed_batch(gateway.signer, "gw-dup", None, items)
    resigned = build_signed_batch(gateway.signer, "gw-dup", None, items)  # what a restarted gateway sends again
    for body in (batch.jws, batch.jws, resigned.jws):  # a QoS 1 redelivery, then a re-publish
        acks.publish("egw/gw-dup/batches", body.encode())
    wait_until(lambda: len(acks.json_on("egw/gw-dup/acks")) >= 3, timeout=20, what="three acknowledgements")
    gateway.drain()  # and the gateway's own upload of the same rows

    replies = acks.json_on("egw/gw-dup/acks")
    assert [a["status"] for a in replies] == [200, 200, 200, 200]
    assert sorted(a["stored"] for a in replies) == [0, 0, 0, 50]
    assert all(a["acked"] == dict.fromkeys(STREAMS, 10) for a in replies)
    assert _items(fleet_db) == (50, 50) and gateway.pending() == 0
    summary = first.get("/v1/status")["gateways"][0]
    assert (summary["items"], summary["duplicates"], summary["replayed_batches"]) == (50, 150, 1)
    acks.close()


def _item(stream: str, seq: int) -> OutboxItem:
    return OutboxItem(seq, stream, seq, seq, "reading", 1_760_000_000.0 + seq, json.dumps({"ac_power_w": 1.5 * seq}), 60)


def test_forged_and_reordered_batches_are_refused_with_the_reason(fleet_db, dsn, tmp_path, broker, workers) -> None:
    server, name = fleet_db
    workers(dsn, broker.url).ready()
    owner, other, stranger = (load_or_create_signer(tmp_path / n) for n in ("a", "b", "x"))

    class Key:
        def __init__(self, signer: Any, gateway: str) -> None:
            self.signer, self.name = signer, gateway

    register(dsn, Key(owner, "gw-a"))
    register(dsn, Key(other, "gw-b"))
    probe = MqttProbe(broker.url, "egw/+/acks")

    def send(topic_gateway: str, jws: str) -> dict[str, Any]:
        digest, topic = hashlib.sha256(jws.encode()).hexdigest(), f"egw/{topic_gateway}/acks"

        def answers() -> list[dict[str, Any]]:
            return [a for a in probe.json_on(topic) if a.get("batch") == digest]

        before = len(answers())
        probe.publish(f"egw/{topic_gateway}/batches", jws.encode())
        return wait_until(lambda: len(answers()) > before and answers()[-1], timeout=20, what="the receiver's answer")

    a1 = build_signed_batch(owner, "gw-a", None, [_item("inv", q) for q in range(1, 6)])
    a2 = build_signed_batch(owner, "gw-a", a1.batch_hash, [_item("inv", q) for q in range(6, 11)])
    a3 = build_signed_batch(owner, "gw-a", a2.batch_hash, [_item("inv", q) for q in range(11, 16)])
    header, payload, signature = a1.jws.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    tampered = f"{header}.{b64url(raw.replace(b'1.5', b'9.5', 1))}.{signature}"  # a changed value, the old signature

    refusals = {
        "unknown key": (send("gw-a", build_signed_batch(stranger, "gw-a", None, [_item("inv", 1)]).jws), 401, "unknown gateway key id"),
        "tampered": (send("gw-a", tampered), 401, "signature does not verify"),
        "other's topic": (send("gw-a", build_signed_batch(other, "gw-b", None, [_item("inv", 1)]).jws), 409, "published on the topic of gateway 'gw-a'"),
        "claims another gateway": (send("gw-b", build_signed_batch(other, "gw-a", None, [_item("inv", 1)]).jws), 409, "registered for gateway 'gw-b', the batch claims 'gw-a'"),
        "items backwards": (send("gw-a", build_signed_batch(owner, "gw-a", None, [_item("inv", 2), _item("inv", 1)]).jws), 400, "does not follow"),
        "a NUL in a value": (send("gw-a", build_signed_batch(owner, "gw-a", None, [OutboxItem(1, "inv", 1, 1, "reading", 1.0, '{"note":"a\\u0000b"}', 20)]).jws), 400, "the database refused a value of the batch"),
    }
    for what, (ack, status, reason) in refusals.items():
        assert (ack["status"], reason in ack["error"]) == (status, True), (what, ack)
    assert server.query(name, "SELECT count(*) AS n FROM fleet_items")[0]["n"] == 0  # nothing forged was stored

    assert send("gw-a", a1.jws)["acked"] == {"inv": 5}
    early = send("gw-a", a3.jws)  # overtook a2
    assert early["status"] == 409 and "out of order" in early["error"] and "skip from seq 6 to 11" in early["error"]
    assert send("gw-a", a2.jws)["acked"] == {"inv": 10}
    assert send("gw-a", a3.jws)["acked"] == {"inv": 15}  # in order now: accepted

    rows = server.query(name, "SELECT gateway, count(*) AS n FROM fleet_items GROUP BY gateway")
    assert [(r["gateway"], r["n"]) for r in rows] == [("gw-a", 15)]
    status = {g["gateway"]: g for g in asyncio.run(_status(dsn))["gateways"]}
    assert status["gw-a"]["refused"] == 4 and status["gw-a"]["last_refusal"].startswith("out_of_order: out of order")
    assert status["gw-a"]["chain_breaks"] == 0 and status["gw-b"]["refused"] == 1
    probe.close()


async def _status(dsn: str) -> dict[str, Any]:
    from fleet.store import FleetStore

    store = await FleetStore.open(dsn, max_size=1)
    try:
        return await store.status()
    finally:
        await store.close()


def test_presence_is_retained_online_then_offline_and_the_last_will_says_offline(broker, gateways, tmp_path) -> None:
    probe = MqttProbe(broker.url, "egw/+/presence")
    gateway = gateways("gw-here", broker.url)
    wait_until(lambda: (("egw/gw-here/presence", b"online", False) in probe.messages), timeout=10, what="online")
    gateway.uploader.link.close()
    wait_until(lambda: probe.messages[-1][:2] == ("egw/gw-here/presence", b"offline"), timeout=10, what="offline on a clean stop")

    # a gateway that vanishes (SIGKILL): the broker publishes its last will
    script = (
        "import sys; sys.path.insert(0, %r)\n"
        "from actors.harvest.mqtt import MqttLink\nfrom actors.harvest.uplink import TransportConfig\n"
        "link = MqttLink(TransportConfig.from_dict({'name': 'fleet', 'kind': 'mqtt', 'url': %r}), 'gw-gone').start()\n"
        "import time\nwhile not link.connected: time.sleep(0.01)\nprint('connected', flush=True)\nsys.stdin.read()\n"
    ) % (str(ROOT), broker.url)
    proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE, stdout=subprocess.PIPE, env=os.environ | {"PYTHONPATH": str(ROOT)})
    assert proc.stdout.readline().strip() == b"connected"
    wait_until(lambda: ("egw/gw-gone/presence", b"online", False) in probe.messages, timeout=10, what="online")
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(10)
    wait_until(lambda: ("egw/gw-gone/presence", b"offline", False) in probe.messages, timeout=20, what="the last will")
    late = MqttProbe(broker.url, "egw/gw-gone/presence")  # a dashboard connecting later sees it, retained
    wait_until(lambda: late.messages == [("egw/gw-gone/presence", b"offline", True)], timeout=10, what="retained offline")
    late.close()
    probe.close()


def test_database_connection_cut_mid_batch_is_answered_503_and_the_batch_comes_again(fleet_db, dsn, broker, workers, gateways) -> None:
    server, name = fleet_db
    worker = workers(dsn, broker.url).ready()
    gateway = gateways("gw-cut", broker.url, max_count=50)
    register(dsn, gateway)
    gateway.produce(STREAMS, 20)  # 100 items: 2 batches
    assert gateway.step().outcome == "sent"

    lock = HeldLock(dsn, "LOCK TABLE fleet_gateway_stats IN SHARE MODE")
    stepping = threading.Thread(target=gateway.step)
    stepping.start()
    waiting = wait_until(
        lambda: server.query(name, "SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND application_name LIKE 'egw-ingest-%'"),
        timeout=20,
        what="the worker's transaction waiting mid-batch",
    )
    server.query(name, "SELECT pg_terminate_backend($1)", waiting[0]["pid"])  # the database drops the worker's connection
    stepping.join(30)
    lock.release()
    failed = gateway.steps[-1]
    assert failed.outcome == "retry" and "HTTP 503: receiver database unavailable, try again" in failed.error
    assert gateway.pending() == 50  # the second batch's rows stay until a commit is acknowledged

    gateway.drain()
    assert _items(fleet_db) == (100, 100)
    assert worker.metric("egw_ingest_batches_total", via="mqtt", outcome="unavailable") == 1
    assert worker.get("/v1/status")["gateways"][0]["streams"]["meter"]["acked"] == 20
