"""Helpers of bench.dataplane: simulator hosts, the plain baseline loop, /proc and strace accounting, py-spy.

Two small programs live here as well, started by bench.dataplane as their own processes
so that their CPU and memory stay out of the figures they are compared with:

    python -m bench.dataplane_support sims PROFILE[,PROFILE...]
        many Modbus TCP simulator servers in one process and one asyncio loop; prints
        one JSON line [{"profile", "port", "unit"}, ...] once listening, runs until
        stdin is closed.
    python -m bench.dataplane_support plain SPEC.json
        the baseline: one process polling every device's register blocks with
        synchronous pymodbus clients once a second and committing the readings of that
        second in one transaction into SQLite (WAL, synchronous=FULL); runs until SIGTERM.

Why one module: the programs and /proc, strace and py-spy helpers bench.dataplane runs in
child processes, kept out of the measured processes' imports; they are one benchmark's
tooling, not a library.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

CLK_TCK = os.sysconf("SC_CLK_TCK")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------- /proc accounting
def _children_map() -> dict[int, list[int]]:
    children: dict[int, list[int]] = defaultdict(list)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        children[int(stat.rsplit(")", 1)[1].split()[1])].append(int(entry))
    return children


def family(root: int) -> list[int]:
    """`root` and every living descendant (parent links in /proc; zombies excluded)."""
    return list(family_parents(root))


def family_parents(root: int) -> dict[int, int]:
    """pid -> parent pid for `root` and every living descendant."""
    children = _children_map()
    found, stack = {root: 0}, [root]
    while stack:
        parent = stack.pop()
        for child in children.get(parent, []):
            found[child] = parent
            stack.append(child)
    return {p: pp for p, pp in found.items() if _state(p) not in ("Z", "")}


def _state(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return ""


def machine_busy() -> float:
    """Seconds of CPU the whole machine has spent busy (not idle or iowait), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().splitlines()[0].split()[1:]]
    return (sum(fields[:8]) - fields[3] - fields[4]) / CLK_TCK


@dataclass
class ProcSample:
    cpu: float  # utime + stime, seconds
    write_bytes: int
    pss_kb: int | None = None
    stime: float = 0.0  # the part of cpu spent in the kernel


def sample_pid(pid: int, pss: bool = False) -> ProcSample | None:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(fields[11]) + int(fields[12])) / CLK_TCK
        io = dict(line.split(": ") for line in Path(f"/proc/{pid}/io").read_text().splitlines())
        sample = ProcSample(cpu, int(io["write_bytes"]), stime=int(fields[12]) / CLK_TCK)
        if pss:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    sample.pss_kb = int(line.split()[1])
                    break
        return sample
    except (OSError, ValueError, KeyError, IndexError):
        return None


@dataclass
class FamilyWindow:
    """CPU, bytes written and PSS of a process family over a window, sampled about once a second.

    A process alive at the start counts from its value then; one that appears later counts
    from zero (counters start at zero on fork); one that disappears counts up to its last
    sample (what it used between that sample and its exit is lost: at most a second's worth).
    """

    root: int
    first: dict[int, ProcSample] = field(default_factory=dict)
    last: dict[int, ProcSample] = field(default_factory=dict)
    appeared: set[int] = field(default_factory=set)
    t0: float = 0.0
    t1: float = 0.0
    wall0: float = 0.0
    wall1: float = 0.0
    pss_end: dict[int, int] = field(default_factory=dict)
    parents: dict[int, int] = field(default_factory=dict)
    pss_peak_kb: int = 0  # the largest family PSS sum seen (sampled every few seconds)
    processes_peak: int = 0
    ticks: int = 0
    machine: float = 0.0  # cores the whole machine was busy over the window (everything, not just this family)

    def start(self) -> None:
        self.t0, self.wall0 = time.monotonic(), time.time()
        self.machine = machine_busy()
        members = family_parents(self.root)
        self.parents.update(members)
        for pid in members:
            s = sample_pid(pid)
            if s is not None:
                self.first[pid] = self.last[pid] = s

    def tick(self, pss: bool = False) -> list[int]:
        members = family_parents(self.root)
        pids = list(members)
        self.ticks += 1
        pss = pss or self.ticks % 5 == 0
        pss_sum = 0
        for pid, parent in members.items():
            self.parents.setdefault(pid, parent)
            s = sample_pid(pid, pss)
            if s is None:
                continue
            if pid not in self.first:
                self.first[pid] = ProcSample(0.0, 0)
                self.appeared.add(pid)
            self.last[pid] = s
            pss_sum += s.pss_kb or 0
        if pss:
            self.pss_peak_kb = max(self.pss_peak_kb, pss_sum)
        self.processes_peak = max(self.processes_peak, len(pids))
        return pids

    def finish(self) -> None:
        pids = self.tick(pss=True)
        self.t1, self.wall1 = time.monotonic(), time.time()
        self.machine = (machine_busy() - self.machine) / (self.t1 - self.t0)
        self.pss_end = {p: self.last[p].pss_kb or 0 for p in pids if p in self.last}

    def run(self, seconds: float, on_tick: Any = None) -> None:
        self.start()
        end = self.t0 + seconds
        while (now := time.monotonic()) < end:
            time.sleep(min(1.0, end - now))
            self.tick()
            if on_tick is not None:
                on_tick()
        self.finish()

    @property
    def seconds(self) -> float:
        return self.t1 - self.t0

    @property
    def disappeared(self) -> set[int]:
        return set(self.first) - set(self.pss_end)

    def cpu(self, pid: int) -> float:
        return self.last[pid].cpu - self.first[pid].cpu

    def kernel_cpu(self, pid: int) -> float:
        return self.last[pid].stime - self.first[pid].stime

    def written(self, pid: int) -> int:
        return self.last[pid].write_bytes - self.first[pid].write_bytes

    def total_cpu(self) -> float:
        return sum(self.cpu(p) for p in self.first) / self.seconds

    def total_written(self) -> int:
        return sum(self.written(p) for p in self.first)

    def total_pss_mib(self) -> float:
        return sum(self.pss_end.values()) / 1024

    def peak_pss_mib(self) -> float:
        return max(self.pss_peak_kb, sum(self.pss_end.values())) / 1024


# ---------------------------------------------------------------- strace
def strace_binary() -> str | None:
    return shutil.which("strace")


def strace_prefix(out: Path) -> list[str]:
    """Follow forks, stop only on the sync calls (seccomp-bpf), wall-clock timestamps."""
    return [strace_binary() or "strace", "-f", "--seccomp-bpf", "-qq", "-e", "signal=none", "-ttt",
            "-e", "trace=fsync,fdatasync,sync_file_range,syncfs,msync", "-o", str(out)]


_SYNC = re.compile(r"^(\d+)\s+(\d+\.\d+)\s+(fsync|fdatasync|sync_file_range|syncfs|msync)\(")


def count_syncs(path: Path, wall0: float, wall1: float) -> Counter[int] | None:
    """Sync calls per pid between two wall-clock times, from an `strace -f -ttt` log."""
    if not path.exists():
        return None
    per_pid: Counter[int] = Counter()
    with path.open(errors="replace") as fh:
        for line in fh:
            m = _SYNC.match(line)
            if m and wall0 <= float(m.group(2)) < wall1:
                per_pid[int(m.group(1))] += 1
    return per_pid


def strace_usable() -> str | None:
    """None when `strace -f --seccomp-bpf` can trace a child here, else why not."""
    if strace_binary() is None:
        return "strace is not installed (apt-get install strace): fsync figures need it"
    try:
        out = subprocess.run([*strace_prefix(Path("/dev/null")), "true"], capture_output=True, timeout=20)
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"strace did not run: {exc}"
    if out.returncode != 0:
        return f"strace cannot trace here ({out.stderr.decode(errors='replace').strip()[:200]})"
    return None


# ---------------------------------------------------------------- simulators
def simulator_hosts(profiles: list[str], per_process: int, env: dict[str, str]) -> tuple[list[subprocess.Popen], list[dict]]:
    """Start ceil(len/per_process) simulator processes; returns them and one entry per device."""
    procs, devices = [], []
    chunks = [profiles[i : i + per_process] for i in range(0, len(profiles), per_process)]
    for chunk in chunks:
        procs.append(subprocess.Popen(
            [sys.executable, "-m", "bench.dataplane_support", "sims", ",".join(chunk)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True,
        ))
    for proc in procs:
        line = proc.stdout.readline() if proc.stdout else ""
        if not line:
            stop_all(procs)
            raise RuntimeError("a simulator host did not start")
        devices.extend(json.loads(line))
    return procs, devices


def stop_all(procs: list[subprocess.Popen], sig: int = signal.SIGTERM) -> None:
    for proc in procs:
        if proc.poll() is None:
            try:
                if proc.stdin:
                    proc.stdin.close()
                proc.send_signal(sig)
            except OSError:
                pass
    for proc in procs:
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)


def _sims_main(profiles: list[str]) -> int:
    import asyncio
    import logging

    from simulators.inverter import InverterSimulator

    logging.basicConfig(level=logging.WARNING)
    logging.getLogger("pymodbus").setLevel(logging.ERROR)

    async def host() -> None:
        loop = asyncio.get_running_loop()
        sims = []
        for profile in profiles:
            sim = InverterSimulator(profile)
            sim._loop = loop  # noqa: SLF001 - many servers on one loop instead of one thread each
            await sim._serve()  # noqa: SLF001
            sims.append(sim)
        print(json.dumps([{"profile": s.profile_name, "port": s.port, "unit": min(s.units)} for s in sims]), flush=True)
        await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin

    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    asyncio.run(host())
    return 0


def discover_blocks(device: dict) -> list[tuple[int, int, int]]:
    """The register blocks the gateway's poll loop reads for this device, found by its own discovery."""
    from actors.device.poller import EndpointPoller
    from actors.device.link import ModbusLink

    settings = {"id": "probe", "profile": device["profile"], "host": "127.0.0.1", "port": device["port"],
                "unit_id": device["unit"], "poll_interval": 1.0, "timeout": 1.0}
    poller = EndpointPoller([settings], ModbusLink(settings))
    try:
        for _ in range(20):
            outcomes = poller.run_due()
            if outcomes and outcomes[0].reading is not None:
                break
            time.sleep(0.1)
        plan = poller.devices[0].plan
        if plan is None:
            raise RuntimeError(f"discovery failed for {device['profile']}")
        return [(b.function, b.start, b.count) for b in plan.blocks]
    finally:
        poller.link.close()


# ---------------------------------------------------------------- the plain loop
def _plain_main(spec_path: str) -> int:
    from pymodbus.client import ModbusTcpClient

    spec = json.loads(Path(spec_path).read_text())
    conn = sqlite3.connect(spec["db"], isolation_level=None)
    conn.execute("PRAGMA journal_mode=WAL")
    conn.execute("PRAGMA synchronous=FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS readings (id INTEGER PRIMARY KEY, device TEXT NOT NULL, t REAL NOT NULL, body TEXT NOT NULL)")
    clients = []
    for d in spec["devices"]:
        c = ModbusTcpClient("127.0.0.1", port=d["port"], timeout=1.0, retries=0)
        c.connect()
        clients.append((d["id"], d["unit"], [tuple(b) for b in d["blocks"]], c))
    stop = []
    signal.signal(signal.SIGTERM, lambda *_: stop.append(1))
    next_tick = time.monotonic()
    while not stop:
        rows = []
        for device_id, unit, blocks, c in clients:
            t = time.time()
            regs: list[int] = []
            try:
                for fc, start, count in blocks:
                    read = c.read_holding_registers if fc == 3 else c.read_input_registers
                    r = read(start, count=count, device_id=unit)
                    if r.isError():
                        raise OSError(str(r))
                    regs.extend(r.registers)
            except Exception:  # noqa: BLE001 - a missed poll is simply not stored
                continue
            rows.append((device_id, t, json.dumps(regs)))
        conn.execute("BEGIN")
        conn.executemany("INSERT INTO readings (device, t, body) VALUES (?, ?, ?)", rows)
        conn.execute("COMMIT")
        next_tick += 1.0
        delay = next_tick - time.monotonic()
        if delay > 0:
            time.sleep(delay)
        else:
            next_tick = time.monotonic()
    conn.close()
    return 0


# ---------------------------------------------------------------- counting readings
def ro_connect(path: Path) -> sqlite3.Connection:
    return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)


def query(path: Path, sql: str, args: tuple = ()) -> list[tuple]:
    try:
        conn = ro_connect(path)
        try:
            return conn.execute(sql, args).fetchall()
        finally:
            conn.close()
    except sqlite3.Error:
        return []


# ---------------------------------------------------------------- the gateway's log
def name_of(pid: int, names: dict[int, str], parents: dict[int, int]) -> str:
    """The actor path the log gave `pid`, else its parent's path + '/?' (an actor that never reported started)."""
    if pid in names:
        return names[pid]
    parent = parents.get(pid)
    if parent in names and names[parent] != "launcher":
        return f"{names[parent]}/?"
    return "unnamed (thespian admin/logger)"


def actor_names(log_path: Path) -> dict[int, str]:
    """pid -> actor path ('root', 'harvest', 'devices/inv003', ...) from the gateway's JSON-lines log."""
    names: dict[int, str] = {}
    try:
        lines = log_path.read_text(errors="replace").splitlines()
    except OSError:
        return names
    for line in lines:
        if not line.startswith("{"):
            continue
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        msg, pid = entry.get("msg"), entry.get("pid")
        if not isinstance(pid, int):
            continue
        if msg == "child started" and entry.get("child"):
            parent = entry.get("actor", "")
            names[pid] = entry["child"] if parent in ("root", "") else f"{parent}/{entry['child']}"
        elif msg == "root supervisor running":
            names[pid] = "root"
        elif msg == "gateway starting":
            names[pid] = "launcher"
    return names


# ---------------------------------------------------------------- py-spy
def py_spy_binary() -> str | None:
    here = Path(sys.executable).parent / "py-spy"
    return str(here) if here.exists() else shutil.which("py-spy")


def py_spy_record(pids: dict[int, str], seconds: float, outdir: Path, rate: int = 100) -> dict[int, tuple[Path, subprocess.Popen]]:
    """Start one `py-spy record --nonblocking` per pid (in parallel); wait with `py_spy_wait`."""
    binary = py_spy_binary()
    assert binary is not None
    running = {}
    for pid in pids:
        out = outdir / f"pyspy-{pid}.txt"
        cmd = [binary, "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", str(rate),
               "--nonblocking", "--gil", "--format", "raw", "--output", str(out)]
        running[pid] = (out, subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True))
    return running


def py_spy_wait(running: dict[int, tuple[Path, subprocess.Popen]], timeout: float) -> dict[int, tuple[Counter, Counter, int, str]]:
    """pid -> (self samples by function, inclusive samples by function, total samples, error)."""
    results = {}
    for pid, (out, proc) in running.items():
        try:
            _, err = proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            _, err = proc.communicate()
        own: Counter[str] = Counter()
        inclusive: Counter[str] = Counter()
        total = 0
        if out.exists():
            for line in out.read_text(errors="replace").splitlines():
                stack, _, count = line.rpartition(" ")
                if not count.isdigit():
                    continue
                n = int(count)
                frames = [_frame(f) for f in stack.split(";") if f and not f.startswith(("process ", "thread "))]
                if not frames:
                    continue
                total += n
                own[frames[-1]] += n
                for f in set(frames):
                    inclusive[f] += n
        lines = (err or "").strip().splitlines()
        error = "" if total or proc.returncode == 0 else (lines[-1] if lines else f"py-spy exited {proc.returncode}")
        results[pid] = (own, inclusive, total, error)
    return results


_LINE = re.compile(r":\d+\)$")
def _frame(text: str) -> str:
    """'poll (actors/device/poller.py:218)' -> 'poll (actors/device/poller.py)'."""
    return _LINE.sub(")", text.strip())


def main(argv: list[str]) -> int:
    if len(argv) == 2 and argv[0] == "sims":
        return _sims_main(argv[1].split(","))
    if len(argv) == 2 and argv[0] == "plain":
        return _plain_main(argv[1])
    print(__doc__, file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
