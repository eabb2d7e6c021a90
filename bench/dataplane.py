"""Data-plane benchmark: the whole gateway polling N simulated inverters at 1 Hz, next to a plain loop.

`python -m bench dataplane` (or `python -m bench.dataplane [--profile]`) measures, in one run
and for each device count (default 20, then 100):

* the gateway as a new user runs it: `python -m supervisor.cli run --config FILE` with a
  TOML config listing N devices (simulated SunSpec and vendor inverters, `poll_interval = 1`)
  and one `[[uploads]]` to an `egw sim ingest` receiver process, data dir in a temp dir;
* a plain one-process loop (`bench.dataplane_support plain`) polling the same N servers with
  synchronous pymodbus clients (the same register blocks the gateway's discovery reads) and
  committing each second's readings in one transaction into SQLite (WAL, synchronous=FULL).

Both are measured the same way over the same steady-state window, after a warm-up:

* CPU: utime+stime of every process of the family (/proc/PID/stat), core-seconds per second;
  the family is the launcher and all its descendants, sampled about once a second (a process
  that appears counts from zero, one that exits counts up to its last sample, and the counts
  of both are printed: restarts show up there). The simulators and the receiver run in their
  own processes outside the family, so their CPU is not counted;
* memory: the sum of Pss of every family process (/proc/PID/smaps_rollup) at the window's end;
* bytes written to storage (/proc/PID/io write_bytes) per reading harvested;
* fsync/fdatasync calls per second, counted by running the process under
  `strace -f --seccomp-bpf -e trace=fsync,fdatasync,... -ttt` from its start (only the sync
  calls stop the tracee, so the overhead is small) and counting the calls inside the window.
  strace must be installed (`apt-get install strace`); without it the sync figures say n/a;
* readings harvested: readings whose poll time falls in the window that reached the
  gateway's outbox, counted as the union of what the receiver stored and what is still
  in the outbox once uploads have caught up (rows leave the outbox after upload), against
  N x seconds expected; plus the poll-to-receiver latency of those readings.

The table prints figure | egw | plain loop | ratio | aim, with the aims of issue 12.

Environment:
    BENCH_DATAPLANE_DEVICES   device counts, default "20,100"
    BENCH_DATAPLANE_SECONDS   steady-state window, default 60
    BENCH_DATAPLANE_WARMUP    minimum warm-up, default 10 (and until every device has delivered)
    BENCH_DATAPLANE_PROFILES  simulator profiles, cycled over the devices, default "sunspec,huawei_sun2000"
    BENCH_DATAPLANE_TMP       where the temp dirs go (default /var/tmp: a real disk, not tmpfs)
    BENCH_DATAPLANE_PROFILE=1 (or --profile) also run `py-spy record --nonblocking` for ~10 s
                              on every gateway actor process after the window and print the top
                              functions per actor (py-spy: `.venv/bin/pip install py-spy`)
    BENCH_DATAPLANE_PROFILE_SECONDS  default 10
    BENCH_DATAPLANE_PROFILE_DEVICES  device actors profiled (a sample; they all run the same loop), default 8
    BENCH_DATAPLANE_KEEP=1    keep the temp dirs (configs, logs, databases, strace logs)
    BENCH_DATAPLANE_COMMIT    the commit to print when the tree measured is not a git checkout (git archive)

Why one module: a benchmark script read top to bottom: start the gateway and the plain loop,
measure the same figures for both, print them side by side; its helpers that run in other
processes are already in bench/dataplane_support.py.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

from bench.dataplane_support import (
    FamilyWindow,
    _children_map,
    _state,
    actor_names,
    count_syncs,
    discover_blocks,
    family,
    free_port,
    name_of,
    py_spy_binary,
    py_spy_record,
    py_spy_wait,
    query,
    sample_pid,
    simulator_hosts,
    stop_all,
    strace_prefix,
    strace_usable,
)

REPO = Path(__file__).resolve().parent.parent
DEVICE_COUNTS = [int(n) for n in os.environ.get("BENCH_DATAPLANE_DEVICES", "20,100").split(",") if n.strip()]
SECONDS = float(os.environ.get("BENCH_DATAPLANE_SECONDS", "60"))
WARMUP = float(os.environ.get("BENCH_DATAPLANE_WARMUP", "10"))
PROFILES = [p.strip() for p in os.environ.get("BENCH_DATAPLANE_PROFILES", "sunspec,huawei_sun2000").split(",") if p.strip()]
PROFILE_SECONDS = float(os.environ.get("BENCH_DATAPLANE_PROFILE_SECONDS", "10"))
PROFILE_DEVICES = int(os.environ.get("BENCH_DATAPLANE_PROFILE_DEVICES", "8"))
SIMS_PER_PROCESS = 50
WARMUP_LIMIT = 120.0  # give up waiting for every device's first reading after this long
DRAIN_LIMIT = 60.0  # wait at most this long after the window for uploads to catch up


PROFILE_ARGV: list[str] = []  # main()'s arguments: `python -m bench dataplane --profile`


def _profiling() -> bool:
    return os.environ.get("BENCH_DATAPLANE_PROFILE", "") not in ("", "0") or "--profile" in PROFILE_ARGV


def _env() -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH", "")) if p)
    return env


def _tmp_root() -> str | None:
    wanted = os.environ.get("BENCH_DATAPLANE_TMP")
    if wanted:
        return wanted
    return "/var/tmp" if os.path.isdir("/var/tmp") and os.access("/var/tmp", os.W_OK) else None


def _traced_child(proc: subprocess.Popen, traced: bool, timeout: float = 10.0) -> int:
    """The pid of the program itself (strace's child when run under strace)."""
    if not traced:
        return proc.pid
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        kids = _children_map().get(proc.pid, [])
        if kids:
            return min(kids)
        if proc.poll() is not None:
            break
        time.sleep(0.02)
    raise RuntimeError("the traced program did not start")


PIPELINE_S = 6.0


def _end(proc: subprocess.Popen, pid: int, grace: float = 20.0) -> None:
    """SIGTERM `pid` (the program, not strace), wait, then SIGKILL whatever is left of its family."""
    members = family(pid)

    def alive() -> bool:
        return proc.poll() is None if pid == proc.pid else _state(pid) not in ("", "Z")

    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        pass
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and alive():
        time.sleep(0.1)
    for p in set(members + family(pid)):
        if _state(p) not in ("", "Z"):
            try:
                os.kill(p, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass
    try:
        proc.wait(10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


# ---------------------------------------------------------------- the gateway
def _gateway_config(path: Path, data_dir: Path, devices: list[dict], upload_url: str) -> None:
    lines = [
        'gateway_name = "bench-dataplane"',
        f'data_dir = "{data_dir}"',
        'log_level = "INFO"',
        f"actor_port = {free_port()}",
        'api_host = "127.0.0.1"',
        f"api_port = {free_port()}",
        'ocpp_host = "127.0.0.1"',
        f"ocpp_port = {free_port()}",
        "",
    ]
    for d in devices:
        lines += [
            "[[devices]]",
            f'id = "{d["id"]}"',
            f'profile = "{d["profile"]}"',
            'host = "127.0.0.1"',
            f"port = {d['port']}",
            f"unit_id = {d['unit']}",
            "poll_interval = 1.0",
            "timeout = 1.0",
            "",
        ]
    lines += ["[[uploads]]", 'name = "bench-ingest"', f'url = "{upload_url}"', ""]
    path.write_text("\n".join(lines))


def _start_ingest(tmp: Path, key: Path) -> tuple[subprocess.Popen, str, Path]:
    db = tmp / "ingest.db"
    proc = subprocess.Popen(
        [sys.executable, "-m", "simulators.ingest", "--port", "0", "--db", str(db), "--key", str(key)],
        stdout=subprocess.PIPE, stderr=(tmp / "ingest.log").open("w"), env=_env(), cwd=REPO, text=True,
    )
    line = proc.stdout.readline() if proc.stdout else ""
    if not line:
        proc.kill()
        raise RuntimeError(f"the ingest receiver did not start (see {tmp / 'ingest.log'})")
    return proc, json.loads(line)["listening"], db


def _receiver_readings(db: Path, wall0: float, wall1: float) -> set[tuple[str, int]]:
    rows = query(db, "SELECT stream, seq FROM ingest_items WHERE kind = 'reading' AND wall_time >= ? AND wall_time < ?", (wall0, wall1))
    return {(r[0], r[1]) for r in rows}


def _outbox_readings(db: Path, wall0: float, wall1: float) -> set[tuple[str, int]]:
    rows = query(db, "SELECT stream, seq FROM outbox_items WHERE kind = 'reading' AND wall_time >= ? AND wall_time < ?", (wall0, wall1))
    return {(r[0], r[1]) for r in rows}


def _streams_delivered(db: Path) -> int:
    rows = query(db, "SELECT count(DISTINCT stream) FROM ingest_items WHERE kind = 'reading'")
    return rows[0][0] if rows else 0


def _latencies(db: Path, wall0: float, wall1: float) -> list[float]:
    rows = query(
        db,
        "SELECT b.received - i.wall_time FROM ingest_items i JOIN ingest_batches b ON b.hash = i.batch"
        " WHERE i.kind = 'reading' AND i.wall_time >= ? AND i.wall_time < ?",
        (wall0, wall1),
    )
    return sorted(r[0] for r in rows)


def run_gateway(tmp: Path, devices: list[dict], traced: bool) -> dict[str, Any]:
    from storage.identity import PUBLIC_KEY_FILE, load_or_create_signer

    data_dir = tmp / "data"
    data_dir.mkdir()
    load_or_create_signer(data_dir)  # the key the gateway will use, so the receiver knows it up front
    ingest, url, ingest_db = _start_ingest(tmp, data_dir / PUBLIC_KEY_FILE)
    config = tmp / "gateway.toml"
    _gateway_config(config, data_dir, devices, url)
    log = tmp / "gateway.log"
    strace_log = tmp / "gateway.strace"
    cmd = [sys.executable, "-m", "supervisor.cli", "run", "--config", str(config)]
    if traced:
        cmd = strace_prefix(strace_log) + cmd
    with log.open("w") as log_fh:
        proc = subprocess.Popen(cmd, stdout=log_fh, stderr=subprocess.STDOUT, env=_env(), cwd=REPO)
    n = len(devices)
    try:
        launcher = _traced_child(proc, traced)
        started = time.monotonic()
        while True:
            if proc.poll() is not None:
                raise RuntimeError(f"the gateway exited with {proc.returncode} during warm-up (see {log})")
            waited = time.monotonic() - started
            delivered = _streams_delivered(ingest_db)
            if waited >= WARMUP and delivered >= n:
                break
            if waited >= WARMUP_LIMIT:
                print(f"  warning: after {waited:.0f} s only {delivered} of {n} devices have delivered a reading; measuring anyway")
                break
            time.sleep(0.5)
        warmup = time.monotonic() - started
        window = FamilyWindow(launcher)
        window.run(SECONDS)
        wall0, wall1 = window.wall0, window.wall1
        at_end = _receiver_readings(ingest_db, wall0, wall1)
        names = actor_names(log)
        profile = None
        profile_cpu: dict[int, float] = {}
        running = None
        if _profiling():
            running = _start_profile({p: name_of(p, names, window.parents) for p in window.pss_end}, tmp)
            cpu_before = {pid: sample_pid(pid) for pid in (running or {})}
            profile_t0 = time.monotonic()
        # let uploads catch up: until the receiver holds everything the outbox had in the window
        drain_started = time.monotonic()
        delivered_set = at_end
        while time.monotonic() - drain_started < DRAIN_LIMIT:
            delivered_set = _receiver_readings(ingest_db, wall0, wall1)
            pending = _outbox_readings(data_dir / "egw.db", wall0, wall1) - delivered_set
            # at least the pipeline's own latency: a device actor ships every 2 s, harvest commits
            # within 1 s, so a reading polled at the window's end is in the outbox ~3 s later
            if not pending and time.monotonic() - drain_started >= PIPELINE_S:
                break
            time.sleep(1.0)
        if running is not None:
            profile = py_spy_wait(running, PROFILE_SECONDS + 30)
            profile_cpu = _cpu_rates(cpu_before, time.monotonic() - profile_t0)
        pending = _outbox_readings(data_dir / "egw.db", wall0, wall1) - delivered_set
        syncs = count_syncs(strace_log, wall0, wall1) if traced else None
        latencies = _latencies(ingest_db, wall0, wall1)
        names = actor_names(log)
        alive = proc.poll() is None
    finally:
        try:
            _end(proc, launcher if "launcher" in locals() else proc.pid)
        finally:
            stop_all([ingest])
    harvested = len(delivered_set | pending)
    return {
        "window": window,
        "names": names,
        "syncs": syncs,
        "harvested": harvested,
        "delivered_at_end": len(at_end),
        "pending_after_drain": len(pending),
        "latencies": latencies,
        "warmup": warmup,
        "alive": alive,
        "profile": profile,
        "profile_cpu": profile_cpu,
        "log": log,
    }


def _cpu_rates(before: dict[int, Any], seconds: float) -> dict[int, float]:
    """Cores each process used while py-spy sampled it (py-spy ran after the window)."""
    rates = {}
    for pid, first in before.items():
        last = sample_pid(pid)
        if first is not None and last is not None and seconds > 0:
            rates[pid] = (last.cpu - first.cpu) / seconds
    return rates


def _start_profile(pids: dict[int, str], tmp: Path) -> Any:
    if py_spy_binary() is None:
        print("  profile: py-spy not found (install it: .venv/bin/pip install py-spy)")
        return None
    devices = [pid for pid, name in pids.items() if name.startswith("devices/")]
    for pid in devices[PROFILE_DEVICES:]:  # a sample of the device actors is enough (they all run the same loop)
        del pids[pid]
    print(f"  profiling {len(pids)} gateway processes with py-spy for {PROFILE_SECONDS:.0f} s (after the window) ...", flush=True)
    return py_spy_record(pids, PROFILE_SECONDS, tmp)


# ---------------------------------------------------------------- the plain loop
def run_plain(tmp: Path, devices: list[dict], blocks: dict[str, list], traced: bool) -> dict[str, Any]:
    db = tmp / "plain.db"
    spec = tmp / "plain.json"
    spec.write_text(json.dumps({
        "db": str(db),
        "devices": [{"id": d["id"], "port": d["port"], "unit": d["unit"], "blocks": blocks[d["profile"]]} for d in devices],
    }))
    strace_log = tmp / "plain.strace"
    cmd = [sys.executable, "-m", "bench.dataplane_support", "plain", str(spec)]
    if traced:
        cmd = strace_prefix(strace_log) + cmd
    proc = subprocess.Popen(cmd, env=_env(), cwd=REPO, stdout=subprocess.DEVNULL, stderr=(tmp / "plain.log").open("w"))
    try:
        pid = _traced_child(proc, traced)
        started = time.monotonic()
        while time.monotonic() - started < 3.0 or not query(db, "SELECT 1 FROM readings LIMIT 1"):
            if proc.poll() is not None or time.monotonic() - started > 60:
                raise RuntimeError(f"the plain loop did not start (see {tmp / 'plain.log'})")
            time.sleep(0.2)
        window = FamilyWindow(pid)
        window.run(SECONDS)
        time.sleep(1.5)  # the last second's commit
        rows = query(db, "SELECT count(*) FROM readings WHERE t >= ? AND t < ?", (window.wall0, window.wall1))
        syncs = count_syncs(strace_log, window.wall0, window.wall1) if traced else None
    finally:
        _end(proc, pid if "pid" in locals() else proc.pid)
    return {"window": window, "syncs": syncs, "harvested": rows[0][0] if rows else 0}


# ---------------------------------------------------------------- report
def _fmt(value: float | None, digits: int = 2) -> str:
    if value is None:
        return "n/a"
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.{digits}f}"


def _ratio(a: float | None, b: float | None) -> str:
    if a is None or b is None or b == 0:
        return "n/a"
    return f"{a / b:.1f}x"


def _verdict(ok: bool | None) -> str:
    return "" if ok is None else ("ok" if ok else "MISS")


def figures(side: dict[str, Any], n: int) -> dict[str, float | None]:
    w: FamilyWindow = side["window"]
    syncs = side["syncs"]
    harvested = side["harvested"]
    return {
        "sync_per_s": (sum(syncs.values()) / w.seconds) if syncs is not None else None,
        "bytes_per_reading": w.total_written() / harvested if harvested else None,
        "cpu": w.total_cpu(),
        "pss_mib": w.peak_pss_mib(),
        "pss_end_mib": w.total_pss_mib(),
        "harvested": harvested,
        "expected": n * w.seconds,
        "processes": w.processes_peak,
    }


def print_table(n: int, egw: dict[str, Any], plain: dict[str, Any]) -> dict[str, Any]:
    e, p = figures(egw, n), figures(plain, n)
    rows: list[tuple[str, str, str, str, str, str]] = []
    pss_aim = {20: 150.0, 100: 500.0}.get(n)
    cpu_abs = 0.35 if n == 100 else None
    rows.append(("fsync+fdatasync calls per second", _fmt(e["sync_per_s"]), _fmt(p["sync_per_s"]), _ratio(e["sync_per_s"], p["sync_per_s"]), "<= 1.5/s",
                 _verdict(None if e["sync_per_s"] is None else e["sync_per_s"] <= 1.5)))
    bpr_ok = None if e["bytes_per_reading"] is None or not p["bytes_per_reading"] else e["bytes_per_reading"] <= 2 * p["bytes_per_reading"]
    rows.append(("bytes written to disk per reading", _fmt(e["bytes_per_reading"], 0), _fmt(p["bytes_per_reading"], 0),
                 _ratio(e["bytes_per_reading"], p["bytes_per_reading"]), "<= 2x plain", _verdict(bpr_ok)))
    cpu_ok = e["cpu"] <= 3 * p["cpu"] if p["cpu"] else None
    cpu_aim = "<= 3x plain"
    if cpu_abs is not None:
        cpu_aim += f", <= {cpu_abs} core"
        cpu_ok = bool(cpu_ok) and e["cpu"] <= cpu_abs
    rows.append(("CPU (core-seconds per second)", _fmt(e["cpu"], 3), _fmt(p["cpu"], 3), _ratio(e["cpu"], p["cpu"]), cpu_aim, _verdict(cpu_ok)))
    rows.append((f"memory (peak PSS sum, {e['processes']} / {p['processes']} processes, MiB)", _fmt(e["pss_mib"], 1), _fmt(p["pss_mib"], 1),
                 _ratio(e["pss_mib"], p["pss_mib"]), f"<= {pss_aim:.0f} MiB" if pss_aim else "", _verdict(e["pss_mib"] <= pss_aim if pss_aim else None)))
    frac_e, frac_p = e["harvested"] / e["expected"], p["harvested"] / p["expected"]
    rows.append(("readings harvested on schedule / expected",
                 f"{e['harvested']:.0f}/{e['expected']:.0f} ({frac_e:.1%})", f"{p['harvested']:.0f}/{p['expected']:.0f} ({frac_p:.1%})",
                 _ratio(frac_e, frac_p), "all (>= 99.5 %)", _verdict(frac_e >= 0.995)))
    widths = [max(len(r[i]) for r in [("figure", "egw", "plain loop", "ratio", "aim", "")] + rows) for i in range(6)]
    header = ("figure", "egw", "plain loop", "ratio", "aim", "")
    print("  " + " | ".join(h.ljust(widths[i]) for i, h in enumerate(header)))
    print("  " + "-|-".join("-" * w for w in widths))
    for r in rows:
        print("  " + " | ".join(c.ljust(widths[i]) for i, c in enumerate(r)))
    return {"devices": n, "egw": e, "plain": p}


def print_processes(egw: dict[str, Any], plain: dict[str, Any]) -> None:
    w: FamilyWindow = egw["window"]
    names: dict[int, str] = egw["names"]
    syncs = egw["syncs"]
    groups: dict[str, list[int]] = {}
    device_pids = [p for p in w.first if name_of(p, names, w.parents).startswith("devices/")]
    for pid in w.first:
        name = name_of(pid, names, w.parents)
        if len(device_pids) > 4 and name.startswith("devices/"):
            name = "devices/* (one per device)"
        groups.setdefault(name, []).append(pid)
    print("  gateway processes over the window (CPU core-s/s and the kernel's share of it, PSS MiB at the end, KB written/s, syncs/s):")
    order = sorted(groups.items(), key=lambda kv: -sum(w.cpu(p) for p in kv[1]))
    for name, pids in order:
        cpu = sum(w.cpu(p) for p in pids) / w.seconds
        kernel = sum(w.kernel_cpu(p) for p in pids) / w.seconds
        pss = sum(w.pss_end.get(p, 0) for p in pids) / 1024
        written = sum(w.written(p) for p in pids) / w.seconds / 1024
        sync = f"{sum(syncs.get(p, 0) for p in pids) / w.seconds:6.2f}" if syncs is not None else "   n/a"
        label = f"{name} x{len(pids)}" if len(pids) > 1 else f"{name} ({pids[0]})"
        share = f"{kernel / cpu:4.0%}" if cpu else "  - "
        print(f"    {label:<36} cpu {cpu:6.3f} (kernel {share})  pss {pss:7.1f}  write {written:8.1f}  sync {sync}")
    plain_w: FamilyWindow = plain["window"]
    print(f"  processes: {len(w.pss_end)} alive at the window's end, at most {w.processes_peak} at once;"
          f" PSS {w.total_pss_mib():.1f} MiB at the end, {w.peak_pss_mib():.1f} MiB at the peak")
    print(f"  whole machine busy over the windows: {w.machine:.2f} cores (gateway run), {plain_w.machine:.2f} (plain loop run),"
          " simulators, receiver and anything else running here included")
    if w.appeared or w.disappeared:
        print(f"  processes that appeared during the window: {len(w.appeared)}, disappeared: {len(w.disappeared)}"
              " (actor restarts? see the gateway log)")
    lat = egw["latencies"]
    if lat:
        print(f"  poll-to-receiver latency: p50 {statistics.median(lat):.2f} s, p95 {lat[int(0.95 * (len(lat) - 1))]:.2f} s, max {lat[-1]:.2f} s;"
              f" at the window's end the receiver held {egw['delivered_at_end']}, still only in the outbox after the drain: {egw['pending_after_drain']}")
    if not egw["alive"]:
        print(f"  the gateway had exited by the end of the run (see {egw['log']})")


OWN_CODE = ("actors/", "storage/", "supervisor/", "simulators/")


def print_profile(egw: dict[str, Any], n: int) -> None:
    """Top functions per actor: py-spy's GIL-holding samples, scaled to the CPU /proc measured meanwhile."""
    profile = egw["profile"]
    if not profile:
        return
    names, w, rates = egw["names"], egw["window"], egw["profile_cpu"]
    print(f"  py-spy profile ({PROFILE_SECONDS:.0f} s after the window, --nonblocking --gil): top functions per actor in cores,"
          " each process's samples scaled to the CPU it used meanwhile (/proc); self = in the function, incl = with callees")
    errors = [(pid, err) for pid, (_, _, total, err) in profile.items() if err and not total]
    by_name: dict[str, list[int]] = {}
    for pid in profile:
        name = name_of(pid, names, w.parents)
        by_name.setdefault("devices/*" if name.startswith("devices/") else name, []).append(pid)
    overall: Counter[str] = Counter()
    device_share = n / max(1, len(by_name.get("devices/*", [])))  # profiled device actors stand for all of them
    for name, pids in sorted(by_name.items(), key=lambda kv: -sum(rates.get(p, 0.0) for p in kv[1])):
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        samples = sum(profile[p][2] for p in pids)
        for p in pids:
            _, _, total, _ = profile[p]
            if not total:
                continue
            per_sample = rates.get(p, 0.0) / total / len(pids)  # average cores per process of the group
            for fn, c in profile[p][0].items():
                own[fn] += c * per_sample
            for fn, c in profile[p][1].items():
                inclusive[fn] += c * per_sample
        for fn, c in own.items():
            overall[fn] += c * len(pids) * (device_share if name == "devices/*" else 1)
        cores = sum(own.values())
        if cores < 0.0005:
            continue
        group = f"{len(pids)} processes profiled, per process" if len(pids) > 1 else "1 process"
        print(f"    {name} ({group}: {cores:.3f} core during the profile, {_window_cpu(w, pids):.3f} over the window;"
              f" {samples} samples holding the GIL):")
        for fn, c in own.most_common(8):
            print(f"      self {c:6.3f}  incl {inclusive[fn]:6.3f}  {fn}")
        roots = max(inclusive.values()) * 0.9
        shown = set(dict(own.most_common(8)))
        paths = [(fn, c) for fn, c in inclusive.most_common() if fn not in shown and c < roots and _own(fn)][:6]
        for fn, c in paths:
            print(f"      incl {c:6.3f}                {fn}")
    if overall:
        print(f"  top functions over the whole gateway (self, cores; the profiled device actors scaled to all {n}):")
        for fn, c in overall.most_common(12):
            print(f"      self {c:6.3f}  {fn}")
    if errors:
        sample = errors[0][1]
        print(f"  py-spy could not sample {len(errors)} of {len(profile)} processes: {sample}")
        if any(word in sample.lower() for word in ("ptrace", "permission", "not permitted")):
            print("  (py-spy needs ptrace permission: the same user with kernel.yama.ptrace_scope=0, or root / CAP_SYS_PTRACE)")


def _window_cpu(w: FamilyWindow, pids: list[int]) -> float:
    known = [p for p in pids if p in w.first]
    return sum(w.cpu(p) for p in known) / w.seconds / max(1, len(known))


def _own(frame: str) -> bool:
    inside = frame[frame.rfind("(") + 1 :]
    return inside.startswith(OWN_CODE)


def run_devices(n: int, traced: bool) -> dict[str, Any]:
    profiles = [PROFILES[i % len(PROFILES)] for i in range(n)]
    tmp = Path(tempfile.mkdtemp(prefix=f"egw-dataplane-{n}-", dir=_tmp_root()))
    sims, served = simulator_hosts(profiles, SIMS_PER_PROCESS, _env())
    try:
        devices = [{"id": f"inv{i:03d}", **s} for i, s in enumerate(served)]
        blocks: dict[str, list] = {}
        for d in devices:
            if d["profile"] not in blocks:
                blocks[d["profile"]] = discover_blocks(d)
        print(f"{n} devices ({', '.join(f'{profiles.count(p)} {p} {blocks[p]}' for p in dict.fromkeys(profiles))}) at 1 Hz,"
              f" {SECONDS:.0f} s window, {len(sims)} simulator process(es); temp dir {tmp}", flush=True)
        egw = run_gateway(tmp, devices, traced)
        print(f"  gateway measured (warm-up {egw['warmup']:.0f} s); plain loop next ...", flush=True)
        plain = run_plain(tmp, devices, blocks, traced)
    finally:
        stop_all(sims)
    result = print_table(n, egw, plain)
    print_processes(egw, plain)
    print_profile(egw, n)
    if os.environ.get("BENCH_DATAPLANE_KEEP", "") in ("", "0"):
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"  kept {tmp}")
    return result


def _commit() -> str:
    if os.environ.get("BENCH_DATAPLANE_COMMIT"):  # measuring an exported tree (git archive) of that commit
        return os.environ["BENCH_DATAPLANE_COMMIT"]
    try:
        out = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=REPO, capture_output=True, text=True, timeout=10)
        if out.returncode != 0:
            return "unknown (not a git checkout; set BENCH_DATAPLANE_COMMIT)"
        return out.stdout.strip() + (" (+ uncommitted changes)" if dirty.stdout.strip() else "")
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"


def main(argv: list[str] | None = None) -> None:
    PROFILE_ARGV[:] = argv or []
    why_not = strace_usable()
    traced = why_not is None
    print(f"data plane, whole process family, commit {_commit()}, {os.cpu_count()} cores")
    if why_not:
        print(f"note: {why_not}; fsync/fdatasync figures are n/a")
    results = []
    for n in DEVICE_COUNTS:
        results.append(run_devices(n, traced))
    print("dataplane-json: " + json.dumps(results, default=float))


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
