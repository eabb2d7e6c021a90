"""Real `egw run` process families against simulated inverters and a real receiver process.

* Power cut: the whole process family SIGKILLed at random moments while four devices
  poll and uploads run, restarted on the same data dir each time. After every cut the
  database passes `PRAGMA integrity_check`; at the end the receiver holds every item
  committed before each cut exactly once, each stream's sequence is contiguous, and
  every silence longer than a poll and a half is covered by a gap record.
* A device actor SIGKILLed (after being frozen long enough to miss polls) leaves a gap.
* A full disk: polling goes on, the gateway stays up and says why it is degraded, and
  the readings that could not be stored become a gap record once space returns.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from actors.device.actor import DeviceActor
from simulators.inverter import InverterSimulator
from storage.identity import PUBLIC_KEY_FILE, load_or_create_signer
from tests.api.test_actor import http, http_ok
from tests.conftest import EGW, wait_until

POLL_S = 0.5
DEVICES = ("inv1", "inv2", "meter1", "meter2")


def write_config(path: Path, sims: dict[str, InverterSimulator], url: str | None) -> None:
    lines = []
    for device_id, sim in sims.items():
        lines += ["[[devices]]", f'id = "{device_id}"', f'profile = "{sim.profile_name}"', 'host = "127.0.0.1"', f"port = {sim.port}",
                  f"unit_id = {next(iter(sim.units))}", f"poll_interval = {POLL_S}", ""]
    if url:
        lines += ["[[uploads]]", 'name = "cloud"', f'url = "{url}"', "linger_s = 0.5", "backoff_max_s = 1.0", ""]
    path.write_text("\n".join(lines))


@contextlib.contextmanager
def simulators(devices=DEVICES):
    profiles = {"inv1": "huawei_sun2000", "inv2": "sunspec", "meter1": "eastron_sdm630", "meter2": "eastron_sdm630"}
    sims = {d: InverterSimulator(profiles.get(d, "sunspec")) for d in devices}
    for sim in sims.values():
        sim.start()
    try:
        yield sims
    finally:
        for sim in sims.values():
            sim.stop()


@contextlib.contextmanager
def receiver_process(tmp_path: Path):
    data = Path(os.environ.get("EGW_DATA_DIR", tmp_path / "data"))
    load_or_create_signer(data)  # the gateway's key, so the receiver can verify its batches
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.ingest", "--port", "0", "--db", str(tmp_path / "receiver.db"), "--key", str(data / PUBLIC_KEY_FILE)],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )
    line = ""
    while "listening" not in line:
        line = proc.stdout.readline()
        assert line, "receiver exited before listening"
    try:
        yield json.loads(line)["listening"]
    finally:
        proc.terminate()
        proc.wait(10)
        proc.stdout.close()


def start_gateway(config: Path, env: dict[str, str], log: Path) -> subprocess.Popen:
    out = log.open("ab")
    try:
        # a session of its own: killpg then takes the whole process family at one instant, like a power cut
        return subprocess.Popen([*EGW, "run", "--config", str(config)], env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    finally:
        out.close()


def family(pid: int) -> list[int]:
    """The process and all its descendants, from /proc."""
    children: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            children.setdefault(ppid, []).append(int(entry.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def power_cut(proc: subprocess.Popen) -> None:
    members = family(proc.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, signal.SIGKILL)
    for pid in members:  # anything that left the session dies too
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait(10)
    wait_until(lambda: not any(Path(f"/proc/{p}").exists() and "zombie" not in _state(p) for p in members), timeout=10, what="every process gone")


def _state(pid: int) -> str:
    try:
        return "zombie" if (Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]) == "Z" else "alive"
    except OSError:
        return "zombie"


def stop(proc: subprocess.Popen) -> int:
    proc.send_signal(signal.SIGTERM)
    try:
        return proc.wait(20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(5)
        raise


def committed(db: Path) -> dict[str, int]:
    """Each stream's last committed sequence number, read like any other reader would."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        if not conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'outbox_sequences'").fetchone():
            return {}  # the file exists before the outbox made its tables
        return dict(conn.execute("SELECT stream, last_seq FROM outbox_sequences"))
    finally:
        conn.close()


def query(db: Path, sql: str, *args: object) -> list[tuple]:
    """Rows of one query on a read-only connection, opened and closed like any outside reader."""
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return conn.execute(sql, args).fetchall()
    finally:
        conn.close()


def outbox_rows(db: Path, stream: str) -> list[tuple]:
    return query(db, "SELECT seq, kind, wall_time, body FROM outbox_items WHERE stream = ? ORDER BY seq", stream)


def assert_no_silent_gaps(items: list[tuple], interval: float, stream: str) -> None:
    """Between two readings further apart than 1.5 polls, some gap item must say why."""
    last_reading = None
    gap_since = False
    for _seq, kind, wall, _body in items:
        if kind == "reading":
            if last_reading is not None and wall - last_reading > 1.5 * interval + 0.25:
                assert gap_since, f"{stream}: {wall - last_reading:.2f} s without readings at {wall} and no gap record"
            last_reading, gap_since = wall, False
        elif kind == "gap":
            gap_since = True


def receiver_items(db: Path, stream: str) -> list[tuple]:
    return query(db, "SELECT seq, kind, wall_time, body FROM ingest_items WHERE stream = ? ORDER BY seq", stream)


def run_power_cuts(tmp_path: Path, env: dict[str, str], cuts: int) -> None:
    rng = random.Random(cuts)
    db = Path(env["EGW_DATA_DIR"]) / "egw.db"
    log = tmp_path / "gateway.log"
    with simulators() as sims, receiver_process(tmp_path) as url:
        config = tmp_path / "gateway.toml"
        write_config(config, sims, url)
        before_cut: list[dict[str, int]] = []
        for cut in range(cuts):
            proc = start_gateway(config, env, log)
            try:
                target = {d: (before_cut[-1].get(d, 0) if before_cut else 0) + 3 for d in DEVICES}
                wait_until(lambda t=target: db.exists() and all(committed(db).get(d, 0) >= t[d] for d in DEVICES), timeout=40,
                           what=f"new readings of every device before cut {cut + 1}")
                time.sleep(rng.uniform(0.0, 2.0))  # a random moment: mid-commit, mid-upload, mid-poll
            finally:
                power_cut(proc)
            before_cut.append(committed(db))  # integrity_check ok after every cut
        proc = start_gateway(config, env, log)
        try:
            final_target = {d: before_cut[-1][d] + 3 for d in DEVICES}
            wait_until(lambda: all(committed(db).get(d, 0) >= final_target[d] for d in DEVICES), timeout=40, what="polling after the last cut")
            port = int(env["EGW_API_PORT"])
            wait_until(lambda: http_ok(port, "/api/health"), timeout=30, what="the API")
            assert stop(proc) == 0
        except BaseException:
            with contextlib.suppress(Exception):
                power_cut(proc)
            raise
        final = committed(db)
        receiver_db = tmp_path / "receiver.db"
        proc = start_gateway(config, env, log)  # deliver what is left, then stop cleanly
        try:
            wait_until(lambda: http_ok(port, "/api/health"), timeout=30, what="the API")  # running, so SIGTERM is its to handle
            wait_until(lambda: all((r := receiver_items(receiver_db, d)) and r[-1][0] >= final[d] for d in DEVICES), timeout=60,
                       what="the receiver caught up")
            assert stop(proc) == 0
        except BaseException:
            with contextlib.suppress(Exception):
                power_cut(proc)
            raise
    for device in DEVICES:
        items = receiver_items(receiver_db, device)
        seqs = [i[0] for i in items]
        assert seqs[: final[device]] == list(range(1, final[device] + 1)), f"{device}: a committed item is missing or doubled"
        for snapshot in before_cut:  # everything committed before each cut arrived
            assert snapshot[device] <= seqs[-1]
        times = [i[2] for i in items if i[1] == "reading"]
        assert len(times) == len(set(times)), f"{device}: a reading stored twice under two sequence numbers"
        assert times == sorted(times), f"{device}: sequence order is not time order"
        gaps = [json.loads(i[3]) for i in items if i[1] == "gap"]
        assert any(g["reason"] == "not_polled" for g in gaps), f"{device}: the gateway's downtime left no gap record"
        assert_no_silent_gaps(items, POLL_S, device)


@pytest.mark.timeout(600)
def test_five_power_cuts_lose_nothing_committed_and_deliver_nothing_twice(tmp_path, gateway_env):
    run_power_cuts(tmp_path, gateway_env, cuts=5)


@pytest.mark.soak
@pytest.mark.timeout(3600)
def test_fifty_power_cuts_lose_nothing_committed_and_deliver_nothing_twice(tmp_path, gateway_env):
    run_power_cuts(tmp_path, gateway_env, cuts=50)


# ------------------------------------------------------------------ device kill
def actor_pid(port: int, path: str) -> int | None:
    def walk(records):
        for record in records:
            if record["path"] == path and record["state"] in ("running", "online", "offline", "degraded"):
                return record["pid"]
            found = walk(record.get("children", []))
            if found:
                return found
        return None

    status, _, body = http(port, "/api/actors", timeout=5)
    return walk(body["actors"]) if status == 200 else None


@contextlib.contextmanager
def one_device_gateway(tmp_path: Path, env: dict[str, str], url: str | None = None):
    """A real `egw run` polling one simulated inverter (`inv1`): yields (process, API port, database) once inv1 is stored."""
    db = Path(env["EGW_DATA_DIR"]) / "egw.db"
    with simulators(("inv1",)) as sims:
        config = tmp_path / "gateway.toml"
        write_config(config, sims, url)
        proc = start_gateway(config, env, tmp_path / "gateway.log")
        port = int(env["EGW_API_PORT"])
        try:
            wait_until(lambda: http_ok(port, "/api/health") and db.exists() and committed(db).get("inv1", 0) >= 3, timeout=40, what="inv1 polled")
            yield proc, port, db
        finally:
            with contextlib.suppress(Exception):
                stop(proc)


def test_a_device_actor_killed_after_missing_polls_leaves_a_gap_record(tmp_path, gateway_env):
    with one_device_gateway(tmp_path, gateway_env) as (_proc, port, db):
        pid = wait_until(lambda: actor_pid(port, "devices/inv1"), timeout=20, what="the device actor's pid")
        os.kill(pid, signal.SIGSTOP)  # frozen: polls are missed from now on
        wait_until(lambda: time.time() - max(r[2] for r in outbox_rows(db, "inv1") if r[1] == "reading") > 4 * POLL_S, timeout=20,
                   what="several polls missed")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: (p := actor_pid(port, "devices/inv1")) and p != pid, timeout=60, what="the device actor restarted")
        last = committed(db)["inv1"]
        wait_until(lambda: committed(db)["inv1"] >= last + 3, timeout=60, what="readings after the restart")
        rows = outbox_rows(db, "inv1")
        gaps = [json.loads(r[3]) for r in rows if r[1] == "gap"]
        assert [g["reason"] for g in gaps] == ["not_polled"]
        assert gaps[0]["end"] - gaps[0]["start"] > 4 * POLL_S and gaps[0]["missed"] >= 3  # polls missed between the two readings
        assert_no_silent_gaps(rows, POLL_S, "inv1")


# ------------------------------------------------------------------- disk full
@pytest.fixture
def small_filesystem(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    result = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=8m", "tmpfs", str(mount)], capture_output=True, text=True)
    if result.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here ({result.stderr.strip() or result.returncode}): the disk-full test needs root")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def fill(mount: Path) -> Path:
    filler = mount / "filler"
    # unbuffered: a buffered file would try the last block again at close and raise ENOSPC there
    with filler.open("wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
                fh.flush()
        except OSError:
            pass
    return filler


def test_a_full_disk_degrades_the_gateway_without_a_crash_and_leaves_a_gap_once_space_returns(tmp_path, gateway_env, small_filesystem):
    env = dict(gateway_env, EGW_DATA_DIR=str(small_filesystem / "data"))
    with one_device_gateway(tmp_path, env) as (proc, port, db):
        harvest_pid = actor_pid(port, "harvest")
        filler = fill(small_filesystem)
        health = wait_until(lambda: (h := http(port, "/api/health")[2])["status"] == "degraded" and any("harvest" in r for r in h["reasons"]) and h,
                            timeout=30, what="health to say why it is degraded")
        assert any("outbox" in r or "disk" in r for r in health["reasons"]), health
        polls = http(port, "/api/devices/inv1")[2]["polls"]
        device = wait_until(lambda: (d := http(port, "/api/devices/inv1")[2])["batches_given_up"] and d, timeout=90,
                            what="more polls than the device actor keeps unacknowledged: the oldest given up")
        assert device["polls"] > polls and device["online"] and device["unacknowledged_batches"] == DeviceActor.unacked_limit  # polling went on
        assert proc.poll() is None and actor_pid(port, "harvest") == harvest_pid  # no crash, no restart, no escalation
        stuck = committed(db)["inv1"]
        filler.unlink()
        wait_until(lambda: committed(db)["inv1"] > stuck + 3, timeout=60, what="readings stored again once space returned")
        gaps = [json.loads(r[3]) for r in outbox_rows(db, "inv1") if r[1] == "gap"]
        assert any(g["reason"] == "dropped_unacknowledged" and g["missed"] >= 1 for g in gaps), gaps
        wait_until(lambda: http(port, "/api/health")[2]["status"] == "ok", timeout=30, what="health ok again")
        assert actor_pid(port, "harvest") == harvest_pid
