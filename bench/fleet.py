"""Fleet receiver benchmark: `python -m bench.fleet [--gateways 1000] [--batches 3] [--items 100]`.

Many simulated gateways (each its own P-256 key and hash chain; the batches are signed
by a pool of lightweight processes before the clock starts, as the gateways would have
signed them) publish over a real mosquitto to `egw ingest serve` workers on one real
PostgreSQL (fsync on), each gateway publishing its next batch only when the receiver's
acknowledgement of the previous one arrived, as `MqttUploader` does. Measured:

1. baseline: the same rows, already decoded, inserted by a plain loop with asyncpg
   `executemany` into the same `fleet_items` table, one transaction per batch (the
   receiver also commits each batch before acknowledging it), one connection;
2. the receiver with 1 worker, then with 2 workers (fresh database each time): rows/s
   from the first publish to the last acknowledgement, including JWS verification, the
   hash chain, de-duplication, progress and the MQTT round trips;
3. duplicates (rows minus distinct keys, and what the receiver counted) and the
   workers' resident memory sampled through the run.

Aims (the issue's): 1 worker >= 0.5 x baseline rows/s; 2 workers >= 1.3 x 1 worker
(PostgreSQL, mosquitto and the workers share the machine's cores); zero duplicates;
receiver memory flat (growth from 10 % to 100 % of the run within 10 MiB).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

STREAMS = ("inv-1", "inv-2", "meter", "battery", "wallbox")
MIB = 1024 * 1024


# ------------------------------------------------------------------ the simulated gateways
def _sign_gateway(job: tuple[int, int, int]) -> tuple[str, bytes, list[str], list[tuple]]:
    """One gateway: a fresh key and `batches` chained, signed batches of `items` readings."""
    from cryptography.hazmat.primitives.asymmetric import ec

    from actors.harvest.signing import build_signed_batch
    from storage.identity import SoftwareSigner
    from storage.outbox import OutboxItem

    index, batches, items = job
    signer = SoftwareSigner(ec.generate_private_key(ec.SECP256R1()))
    gateway = f"gw-{index:05d}"
    prev, signed, rows, seq = None, [], [], dict.fromkeys(STREAMS, 0)
    t0 = 1_760_000_000.0
    row_id = 0
    for _ in range(batches):
        batch = []
        for k in range(items):
            stream = STREAMS[k % len(STREAMS)]
            seq[stream] += 1
            n = seq[stream]
            body = json.dumps(
                {
                    "t": t0 + n,
                    "m": 100.0 + n,
                    "b": "boot-7f3a",
                    "v": {"ac_power_w": 3000.0 + n % 700, "pv_power_w": 3150.5, "energy_total_wh": 1_000_000.0 + n * 0.8, "grid_frequency_hz": 50.01, "ac_voltage_v": 231.4, "temperature_c": 41.5, "status": "mppt"},
                },
                separators=(",", ":"),
            )
            row_id += 1
            batch.append(OutboxItem(row_id, stream, n, n, "reading", t0 + n, body, len(body)))
            rows.append((gateway, stream, n, n, "reading", t0 + n, body))
        signed_batch = build_signed_batch(signer, gateway, prev, batch)
        prev = signed_batch.batch_hash
        signed.append(signed_batch.jws)
    return gateway, signer.public_key_pem(), signed, rows


class Fleet:
    """Publishes every gateway's batches in chain order, one in flight per gateway, until all are acknowledged."""

    def __init__(self, port: int, gateways: list[tuple[str, bytes, list[str], list[tuple]]], stall_s: float = 10.0) -> None:
        self.batches = {g: jws for g, _pem, jws, _rows in gateways}
        self.next = dict.fromkeys(self.batches, 0)
        self.done = threading.Event()
        self.left = sum(len(v) for v in self.batches.values())
        self.republished = 0
        self.refused: list[str] = []
        self.acked_at: list[float] = []
        self.stall_s = stall_s
        self.lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="egw-bench-fleet", protocol=mqtt.MQTTv5)
        self.client.max_inflight_messages_set(0)
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_ack
        subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        self.client.subscribe("egw/+/acks", qos=1)
        if not subscribed.wait(10):
            raise RuntimeError("could not subscribe to the acknowledgements")

    def _publish(self, gateway: str) -> None:
        self.client.publish(f"egw/{gateway}/batches", self.batches[gateway][self.next[gateway]], qos=1)

    def _on_ack(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        gateway = message.topic.split("/")[1]
        ack = json.loads(message.payload)
        with self.lock:
            if ack.get("status") != 200:
                self.refused.append(ack.get("error", "?"))
                return
            position = self.next.get(gateway)
            if position is None or position >= len(self.batches[gateway]):
                return
            if ack["batch"] != _digest(self.batches[gateway][position]):
                return  # a late acknowledgement of a batch re-published after a stall
            self.next[gateway] = position + 1
            self.left -= 1
            self.acked_at.append(time.monotonic())
            if self.next[gateway] < len(self.batches[gateway]):
                self._publish(gateway)
            elif self.left == 0:
                self.done.set()

    def run(self, timeout: float = 600.0) -> float:
        """Seconds from the first publish to the last acknowledgement."""
        started = time.monotonic()
        with self.lock:
            for gateway in self.batches:
                self._publish(gateway)
        last_progress, last_left = time.monotonic(), self.left
        while not self.done.wait(0.5):
            with self.lock:
                if self.left != last_left:
                    last_progress, last_left = time.monotonic(), self.left
                elif time.monotonic() - last_progress > self.stall_s:  # what a gateway's ack timeout does
                    for gateway, position in self.next.items():
                        if position < len(self.batches[gateway]):
                            self._publish(gateway)
                            self.republished += 1
                    last_progress = time.monotonic()
            if time.monotonic() - started > timeout:
                raise RuntimeError(f"{self.left} batches still unacknowledged after {timeout:g} s")
        return self.acked_at[-1] - started

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _digest(jws: str) -> str:
    import hashlib

    return hashlib.sha256(jws.encode("ascii")).hexdigest()


# ------------------------------------------------------------------ measurements
def _cpu_times() -> tuple[int, int]:
    """(busy, total) jiffies of the whole machine, from /proc/stat."""
    fields = [int(v) for v in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
    return sum(fields) - idle, sum(fields)


def _rss(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


async def _baseline(dsn: str, gateways: list[tuple[str, bytes, list[str], list[tuple]]], items: int) -> float:
    """rows/s of a plain executemany loop into fleet_items, one transaction per batch of `items` rows."""
    from fleet.schema import migrate

    conn = await asyncpg.connect(dsn)
    try:
        await migrate(conn)
        await conn.execute("CHECKPOINT")  # every phase starts without the previous one's dirty pages
        batches = []
        for _gateway, _pem, _jws, rows in gateways:
            for start in range(0, len(rows), items):
                batches.append([(*r[:6], r[6], "baseline") for r in rows[start : start + items]])
        started = time.perf_counter()
        for batch in batches:
            async with conn.transaction():
                await conn.executemany(
                    "INSERT INTO fleet_items (gateway, stream, seq, seq_last, kind, wall_time, body, batch) VALUES ($1, $2, $3, $4, $5, $6, $7::jsonb, $8)", batch
                )
        elapsed = time.perf_counter() - started
        return sum(len(b) for b in batches) / elapsed
    finally:
        await conn.close()


async def _register_all(dsn: str, gateways: list[tuple[str, bytes, list[str], list[tuple]]]) -> None:
    from fleet.store import FleetStore

    store = await FleetStore.open(dsn, max_size=4)
    try:
        for gateway, pem, _jws, _rows in gateways:
            await store.register(pem, gateway)
    finally:
        await store.close()


def _receiver_run(pg: Any, broker: Any, gateways: list, worker_count: int) -> dict[str, Any]:
    from tests.fleet.servers import WorkerProcess

    name = pg.create_database()
    dsn = pg.dsn(name)
    asyncio.run(_register_all(dsn, gateways))
    pg.query(name, "CHECKPOINT")
    workers = [WorkerProcess(dsn, broker.url, extra=["--log-level", "WARNING"]) for _ in range(worker_count)]
    try:
        for worker in workers:
            worker.ready()
        fleet = Fleet(broker.port, gateways)
        total_batches = fleet.left
        samples: list[tuple[int, list[int]]] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(0.2):
                samples.append((total_batches - fleet.left, [_rss(w.pid) for w in workers]))

        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        cpu_before = _cpu_times()
        elapsed = fleet.run()
        cpu_after = _cpu_times()
        stop.set()
        sampler.join(2)
        fleet.close()
        counts = pg.query(name, "SELECT count(*) AS n, count(DISTINCT (gateway, stream, seq)) AS d FROM fleet_items")[0]
        counted = pg.query(name, "SELECT coalesce(sum(duplicates), 0) AS dup, coalesce(sum(refused), 0) AS refused FROM fleet_gateway_stats")[0]
        per_worker = [w.metric("egw_ingest_batches_total", via="mqtt", outcome="stored") for w in workers]
    finally:
        for worker in workers:
            worker.stop()
    early = next((s for done, s in samples if done >= 0.1 * total_batches), samples[0][1] if samples else [0])
    late = samples[-1][1] if samples else [0]
    peak = [max(s[1][i] for s in samples) for i in range(worker_count)] if samples else [0]
    return {
        "rows_per_s": counts["n"] / elapsed,
        "rows": counts["n"],
        "distinct": counts["d"],
        "duplicates_counted": int(counted["dup"]),
        "refused": int(counted["refused"]) + len(fleet.refused),
        "republished": fleet.republished,
        "elapsed_s": elapsed,
        "machine_busy": (cpu_after[0] - cpu_before[0]) / max(1, cpu_after[1] - cpu_before[1]),
        "per_worker_batches": per_worker,
        "rss_early_mib": [e / MIB for e in early],
        "rss_end_mib": [e / MIB for e in late],
        "rss_peak_mib": [p / MIB for p in peak],
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.fleet", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--gateways", type=int, default=1000, help="simulated gateways (5 streams each)")
    parser.add_argument("--batches", type=int, default=4, help="signed batches per gateway (one hash chain)")
    parser.add_argument("--items", type=int, default=100, help="readings per batch")
    parser.add_argument("--rounds", type=int, default=2, help="rounds of baseline, 1 worker, 2 workers; the best of each is compared")
    parser.add_argument(
        "--commit",
        choices=("durable", "async"),
        default="durable",
        help="durable: PostgreSQL as in production (every commit flushed before the ack); async: synchronous_commit=off, to see the receiver's own cost where the disk's flush rate would hide it",
    )
    args = parser.parse_args(argv)

    from tests.fleet.servers import Mosquitto, PostgresServer

    try:
        pg = PostgresServer(durable=True, settings=("synchronous_commit=off",) if args.commit == "async" else ())
        broker = Mosquitto()
    except BaseException as exc:  # noqa: BLE001 - pytest's Skipped outside pytest: a missing server
        print(f"bench.fleet needs mosquitto and PostgreSQL: {exc}")
        return 2
    broker.conf.write_text("max_queued_messages 100000\n" + broker.conf.read_text())  # docs/fleet.md: at least the gateways per worker
    pg.start()
    broker.start()
    try:
        started = time.perf_counter()
        jobs = [(i, args.batches, args.items) for i in range(args.gateways)]
        with multiprocessing.get_context("fork").Pool(max(1, os.cpu_count() or 1)) as pool:
            gateways = pool.map(_sign_gateway, jobs, chunksize=max(1, len(jobs) // 16))
        rows = args.gateways * args.batches * args.items
        print(f"{args.gateways} gateways x {args.batches} batches x {args.items} readings = {rows:,} rows; keys made and batches signed in {time.perf_counter() - started:.1f} s")

        bases, ones, twos = [], [], []
        for round_number in range(1, args.rounds + 1):  # interleaved: a noisy neighbour hits every kind alike
            bases.append(asyncio.run(_baseline(pg.dsn(pg.create_database()), gateways, args.items)))
            ones.append(_receiver_run(pg, broker, gateways, 1))
            twos.append(_receiver_run(pg, broker, gateways, 2))
            print(f"round {round_number}: baseline {bases[-1]:,.0f} rows/s, 1 worker {ones[-1]['rows_per_s']:,.0f} rows/s, 2 workers {twos[-1]['rows_per_s']:,.0f} rows/s", flush=True)
    finally:
        broker.close()
        pg.stop()

    base = max(bases)
    one = max(ones, key=lambda r: r["rows_per_s"])
    two = max(twos, key=lambda r: r["rows_per_s"])
    print(f"best of {args.rounds} rounds (commit: {args.commit}):")
    print(f"baseline: plain executemany loop, one transaction per {args.items} rows: {base:,.0f} rows/s")
    for label, run in (("1 worker", one), ("2 workers", two)):
        growth = max(e - s for s, e in zip(run["rss_early_mib"], run["rss_end_mib"], strict=True))
        print(
            f"{label}: {run['rows_per_s']:,.0f} rows/s ({run['rows']:,} rows in {run['elapsed_s']:.1f} s, all cores {run['machine_busy']:.0%} busy; batches per worker {[int(b) for b in run['per_worker_batches']]}); "
            f"duplicates {run['rows'] - run['distinct']} stored, {run['duplicates_counted']} received again and ignored; refused {run['refused']}; re-published {run['republished']}; "
            f"RSS per worker at 10 % {[round(v, 1) for v in run['rss_early_mib']]} MiB -> end {[round(v, 1) for v in run['rss_end_mib']]} MiB (peak {[round(v, 1) for v in run['rss_peak_mib']]}; growth {growth:+.1f} MiB)"
        )
    runs = ones + twos
    ratio_one, ratio_two = one["rows_per_s"] / base, two["rows_per_s"] / one["rows_per_s"]
    growth = max(max(e - s for s, e in zip(r["rss_early_mib"], r["rss_end_mib"], strict=True)) for r in runs)
    duplicates = sum(r["rows"] - r["distinct"] for r in runs)
    complete = all(r["rows"] == rows for r in runs)
    print(f"ratio 1 worker / baseline: {ratio_one:.2f} (aim >= 0.5: {'met' if ratio_one >= 0.5 else 'NOT met'})")
    print(f"ratio 2 workers / 1 worker: {ratio_two:.2f} (aim >= 1.3: {'met' if ratio_two >= 1.3 else 'NOT met'})")
    print(f"duplicates stored over all runs: {duplicates} (aim 0: {'met' if duplicates == 0 else 'NOT met'}); every row present in every run: {complete}")
    print(f"receiver memory growth 10 % -> 100 % of a run, worst worker: {growth:+.1f} MiB (aim within 10 MiB: {'met' if growth <= 10 else 'NOT met'})")
    return 0 if complete and duplicates == 0 else 1


if __name__ == "__main__":
    raise SystemExit(main())
