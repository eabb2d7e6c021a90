"""Restart latency and memory per actor.

1. Restart latency: SIGKILL a supervised child, then time until the restarted actor
   answers (median, p99 over 40 crashes), next to thespian's bare primitive measured in
   the same run: a parent that re-creates its child on ChildActorExited. Both are
   observed the same way (the bench process polls the parent for the child's address
   and asks it who it is), so the ratio is the supervisor's own overhead. The
   supervisor runs with zero backoff here: its real default waits 50 ms on purpose.
2. Memory per actor (PSS from /proc/PID/smaps_rollup) of 12 actors that use the heavy
   libraries, with the launcher's pre-import and without it, each in a fresh process.
"""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import time
from typing import Any

from thespian.actors import ActorTypeDispatcher

CRASHES = 40
ACTORS_FOR_MEMORY = 12


class BareChild(ActorTypeDispatcher):
    def receiveMsg_str(self, msg: str, sender: Any) -> None:  # noqa: N802
        self.send(sender, os.getpid())


class BareParent(ActorTypeDispatcher):
    """Thespian's primitive: recreate the child when it exits, nothing else."""

    child: Any = None

    def receiveMsg_str(self, msg: str, sender: Any) -> None:  # noqa: N802
        if msg == "start":
            self.child = self.createActor(BareChild)
            self.send(sender, "ok")
        elif msg == "child":
            self.send(sender, self.child)

    def receiveMsg_ChildActorExited(self, msg: Any, sender: Any) -> None:  # noqa: N802
        self.child = self.createActor(BareChild)


def _percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(round(pct / 100 * (len(ordered) - 1))))]


def _bare_latencies(asys: Any) -> list[float]:
    parent = asys.createActor(BareParent)
    asys.ask(parent, "start", 5)
    latencies = []
    for _ in range(CRASHES):
        child = asys.ask(parent, "child", 5)
        pid = asys.ask(child, "pid?", 5)
        killed = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:
            child = asys.ask(parent, "child", 5)
            answer = asys.ask(child, "pid?", 0.5) if child is not None else None
            if isinstance(answer, int) and answer != pid:
                latencies.append(time.perf_counter() - killed)
                break
    return latencies


def _supervised_latencies(asys: Any) -> list[float]:
    from supervisor.embedded import start_root
    from supervisor.messages import Lookup, LookupResult
    from supervisor.spec import Backoff, ChildSpec, Containment, Intensity, SupervisorSpec
    from tests.supervisor.sample_actors import Hello, WhoAmI

    spec = SupervisorSpec(
        children=(ChildSpec("device", "tests.supervisor.sample_actors.Echo"),),
        backoff=Backoff(min_delay=0.0, max_delay=0.0, jitter=0.0),
        intensity=Intensity(max_restarts=CRASHES * 2, period=3600),
        containment=Containment(max_restarts=CRASHES * 2, period=3600),  # this measures restarts: never park the child
    )
    root = start_root(asys, spec)

    def current() -> WhoAmI | None:
        reply = asys.ask(root, Lookup("device"), 5)
        if not isinstance(reply, LookupResult) or reply.address is None:
            return None
        answer = asys.ask(reply.address, Hello(), 0.5)
        return answer if isinstance(answer, WhoAmI) else None

    while current() is None:
        time.sleep(0.01)
    latencies = []
    for _ in range(CRASHES):
        pid = current().pid
        killed = time.perf_counter()
        os.kill(pid, signal.SIGKILL)
        while True:
            answer = current()
            if answer is not None and answer.pid != pid:
                latencies.append(time.perf_counter() - killed)
                break
    return latencies


def restart_latency() -> None:
    from supervisor.embedded import private_actor_system
    from supervisor.logs import log_definitions

    with private_actor_system(log_definitions("ERROR")) as asys:
        bare = _bare_latencies(asys)
        supervised = _supervised_latencies(asys)
    for label, pct in (("median", 50), ("p99", 99)):
        b, s = _percentile(bare, pct) * 1000, _percentile(supervised, pct) * 1000
        print(f"restart latency {label:6s}: supervisor {s:7.2f} ms   bare thespian {b:7.2f} ms   ratio {s / b:5.2f}x  (n={CRASHES})")
    print(f"restart latency mean  : supervisor {statistics.mean(supervised) * 1000:7.2f} ms   bare thespian {statistics.mean(bare) * 1000:7.2f} ms")


MEMORY_PROBE = r"""
import json, os, sys, time
sys.path.insert(0, os.getcwd())
if sys.argv[1] == "preimport":
    from supervisor.launcher import preimport_heavy_libraries
    preimport_heavy_libraries()
from supervisor.embedded import private_actor_system
from supervisor.logs import log_definitions
with private_actor_system(log_definitions("ERROR")) as asys:
    pids = [asys.ask(asys.createActor("bench.restart_support.HeavyActor"), "pid?", 10) for _ in range(int(sys.argv[2]))]
    time.sleep(0.5)
    total = 0
    for pid in pids:
        for line in open(f"/proc/{pid}/smaps_rollup"):
            if line.startswith("Pss:"):
                total += int(line.split()[1])
    print(json.dumps({"pss_kib_per_actor": total / len(pids)}))
"""


def memory_per_actor() -> None:
    results = {}
    for mode in ("preimport", "plain"):
        out = subprocess.run([sys.executable, "-c", MEMORY_PROBE, mode, str(ACTORS_FOR_MEMORY)], capture_output=True, text=True, timeout=300)
        results[mode] = json.loads(out.stdout.strip().splitlines()[-1])["pss_kib_per_actor"] / 1024
    ratio = results["preimport"] / results["plain"]
    print(f"memory per actor (PSS): with pre-import {results['preimport']:6.1f} MiB   without {results['plain']:6.1f} MiB   ratio {ratio:5.2f}x  ({ACTORS_FOR_MEMORY} actors)")


def main(argv: list[str] | None = None) -> None:
    restart_latency()
    memory_per_actor()


if __name__ == "__main__":
    main()
