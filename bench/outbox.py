"""Outbox benchmark: `python -m bench.outbox [--ingest N] [--drain N]`.

1. Durable ingest: readings/s through `Outbox.ingest` in batches of 1000 (one
   transaction each, WAL + synchronous=FULL, sequence allocation, clock check, batch
   de-duplication record) next to raw `sqlite3.executemany` of the same rows into a
   plain table with the same durability settings, one commit per 1000.
2. Backlog drain: N buffered readings read oldest-first, signed (ES256) and uploaded to
   the ingest receiver (a separate process on loopback), released after each ack;
   readings/s next to the ceiling measured in the same run (pre-signed batches of the
   same size posted to a fresh receiver in a tight loop), plus the peak resident memory
   above idle during the drain (sampled from /proc every 10 ms).
"""

from __future__ import annotations

import argparse
import json
import os
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

from actors.harvest.messages import Reading, ReadingBatch
from actors.harvest.signing import build_signed_batch
from actors.harvest.uplink import TransportConfig, Uploader, http_post
from storage.identity import PUBLIC_KEY_FILE, load_or_create_signer
from storage.outbox import Outbox, OutboxItem

BATCH = 1000
DEVICES = 5


def make_batches(count: int, start: int = 0):
    """Readings as a poller would send them: 1 Hz, 5 devices, typical inverter quantities."""
    t0 = 1_760_000_000.0
    produced = 0
    batch_id = start
    while produced < count:
        n = min(BATCH, count - produced)
        readings = []
        for i in range(produced, produced + n):
            second, device = divmod(i, DEVICES)
            readings.append(
                Reading(
                    f"inv{device}",
                    t0 + second,
                    100.0 + second,
                    "bench-boot",
                    {"ac_power_w": 3000.0 + i % 700, "pv_power_w": 3150.0, "energy_total_wh": 1e6 + second, "grid_frequency_hz": 50.01, "status": "mppt"},
                )
            )
        batch_id += 1
        yield ReadingBatch("bench", batch_id, tuple(readings))
        produced += n


def bench_ingest(tmp: Path, count: int) -> None:
    batches = list(make_batches(count))
    outbox = Outbox.open(tmp / "ingest.db")
    started = time.perf_counter()
    for batch in batches:
        outbox.ingest(batch)
    ours = count / (time.perf_counter() - started)
    outbox.close()

    conn = sqlite3.connect(tmp / "raw.db", isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE readings (device TEXT, seq INTEGER, wall REAL, body TEXT)")
    started = time.perf_counter()
    for b, batch in enumerate(batches):
        rows = [(r.device_id, b * BATCH + k, r.wall_time, json.dumps(r.values)) for k, r in enumerate(batch.readings)]
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO readings VALUES (?, ?, ?, ?)", rows)
        conn.execute("COMMIT")
    raw = count / (time.perf_counter() - started)
    conn.close()
    print(f"durable ingest, batches of {BATCH}: {ours:,.0f} readings/s   raw executemany: {raw:,.0f} readings/s   ratio {ours / raw:.2f} (aim >= 0.6)")


class RssSampler:
    """Peak resident set size of this process, sampled from /proc every 10 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def rss() -> int:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) * 1024
        return 0

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self.rss())
            self._stop.wait(0.01)

    def __enter__(self) -> RssSampler:
        self.peak = self.rss()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def start_receiver(db: Path, key: Path) -> tuple[subprocess.Popen, str]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.ingest", "--port", "0", "--db", str(db), "--key", str(key)],
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    line = ""
    while "listening" not in line:
        line = proc.stdout.readline()
        if not line:
            raise RuntimeError("ingest receiver exited before listening")
    return proc, json.loads(line)["listening"]


def stop_receiver(proc: subprocess.Popen) -> None:
    proc.terminate()
    proc.wait(10)
    proc.stdout.close()


def bench_drain(tmp: Path, count: int, ceiling_count: int) -> None:
    signer = load_or_create_signer(tmp / "gw")
    key = tmp / "gw" / PUBLIC_KEY_FILE

    # ceiling: pre-signed batches of the same shape, posted back to back
    ceiling_box = Outbox.open(tmp / "ceiling.db")
    ceiling_box.register_transport("bench", BATCH)
    for batch in make_batches(ceiling_count):
        ceiling_box.ingest(batch)
    signed, prev, acked_id = [], None, 0  # sign everything up front, outside the timed loop
    while True:
        rows = ceiling_box.conn.execute("SELECT id, stream, seq, seq_last, kind, wall_time, body, nbytes FROM outbox_items WHERE id > ? ORDER BY id LIMIT ?", (acked_id, BATCH)).fetchall()
        if not rows:
            break
        items = [OutboxItem(*r) for r in rows]
        batch = build_signed_batch(signer, "bench-gw", prev, items)
        signed.append(batch.jws.encode())
        prev, acked_id = batch.batch_hash, items[-1].id
    ceiling_box.close()
    proc, url = start_receiver(tmp / "ceiling-receiver.db", key)
    try:
        started = time.perf_counter()
        for body in signed:
            reply = http_post(url, body, 30.0)
            assert reply.status == 200, reply
        ceiling = ceiling_count / (time.perf_counter() - started)
    finally:
        stop_receiver(proc)
    del signed

    # the real drain, in a fresh process so that its memory is the drain's alone
    outbox = Outbox.open(tmp / "drain.db")
    filled = time.perf_counter()
    for batch in make_batches(count, start=10**9):
        outbox.ingest(batch)
    fill_s = time.perf_counter() - filled
    outbox.close()
    proc, url = start_receiver(tmp / "drain-receiver.db", key)
    try:
        worker = subprocess.run(
            [sys.executable, "-m", "bench.outbox", "--drain-worker", str(tmp / "drain.db"), str(tmp / "gw"), url],
            capture_output=True,
            text=True,
            check=True,
        )
        result = json.loads(worker.stdout.strip().splitlines()[-1])
        received = json.loads(urllib.request.urlopen(url.replace("/batches", "/status"), timeout=30).read())["items"]
    finally:
        stop_receiver(proc)
    assert result["sent"] == count and received == count, (result, received, count)
    drain = count / result["seconds"]
    print(f"(backlog of {count:,} readings committed in {fill_s:.1f} s: {count / fill_s:,.0f} readings/s)")
    print(f"backlog drain, signed + uploaded + released: {drain:,.0f} readings/s   receiver ceiling (pre-signed, same run): {ceiling:,.0f} readings/s   ratio {drain / ceiling:.2f}   (aim >= 40,000 readings/s)")
    print(f"peak memory during the drain: {(result['peak_rss'] - result['idle_rss']) / 2**20:.1f} MiB above idle ({result['idle_rss'] / 2**20:.1f} MiB RSS idle, outbox open, key loaded)   (aim < 30 MiB)")


def drain_worker(db: str, data_dir: str, url: str) -> None:
    """Drain the outbox at `db` to `url`; print one JSON line with the count, time and RSS figures."""
    signer = load_or_create_signer(data_dir)
    outbox = Outbox.open(db)
    uploader = Uploader(outbox, signer, "bench-gw", TransportConfig(name="bench", url=url, max_count=BATCH, max_bytes=4 * 1024 * 1024, timeout_s=30.0))
    idle = RssSampler.rss()
    with RssSampler() as sampler:
        started = time.perf_counter()
        sent = 0
        while True:
            result = uploader.step()
            if result.outcome == "idle":
                break
            if result.outcome != "sent":
                raise RuntimeError(f"upload failed during the drain: {result}")
            sent += result.items
        seconds = time.perf_counter() - started
    outbox.close()
    print(json.dumps({"sent": sent, "seconds": seconds, "idle_rss": idle, "peak_rss": sampler.peak}))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.outbox")
    parser.add_argument("--ingest", type=int, default=int(os.environ.get("EGW_BENCH_OUTBOX_INGEST", 200_000)), help="readings for the ingest comparison")
    parser.add_argument("--drain", type=int, default=int(os.environ.get("EGW_BENCH_OUTBOX_DRAIN", 1_000_000)), help="buffered readings to drain")
    parser.add_argument("--ceiling", type=int, default=100_000, help="readings posted pre-signed for the receiver ceiling")
    parser.add_argument("--drain-worker", nargs=3, metavar=("DB", "DATA_DIR", "URL"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv or [])
    if args.drain_worker:
        drain_worker(*args.drain_worker)
        return
    with tempfile.TemporaryDirectory(prefix="egw-bench-outbox-") as tmp:
        bench_ingest(Path(tmp), args.ingest)
        bench_drain(Path(tmp), args.drain, args.ceiling)


if __name__ == "__main__":
    main(sys.argv[1:])
