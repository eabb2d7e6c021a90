"""Coinciding crashes: siblings SIGKILLed at the same instant, round after round, all come back.

Thespian reports each dead child with one `ChildActorExited`, and when siblings die at
the same instant one of those notices is sometimes never delivered. The supervisor
reconciles its children against the processes that exist on every heartbeat tick, so a
lost notice costs at most one heartbeat interval, never a child.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import pytest

from supervisor.embedded import start_root
from supervisor.procs import descendants, is_alive
from supervisor.spec import Backoff, ChildSpec, Containment, Heartbeat, Intensity, SupervisorSpec, supervisor_child
from tests.conftest import wait_until
from tests.supervisor.test_launcher import _config, _start
from tests.supervisor.test_supervision import ECHO, records, who

FAST = Backoff(min_delay=0.01, max_delay=0.05, factor=2.0, jitter=0.1, reset_after=60)
UNLIMITED = dict(intensity=Intensity(max_restarts=100_000, period=60), containment=Containment(max_restarts=100_000, period=60))
NAMES = ("inv1", "inv2", "inv3", "meter")
ROUNDS = 10
SOAK_ROUNDS = 50
# the supervisor's promise: a lost exit notice is found within one heartbeat interval and the
# child restarted after its backoff; the wait below is a generous bound on that, not a measurement
RECOVERY_WAIT = 10.0


def kill_at_once(pids: list[int]) -> None:
    """SIGKILL every pid back to back, as close to the same instant as Python allows."""
    for pid in pids:
        os.kill(pid, signal.SIGKILL)


def _all_running(asys, root, prefix: str, names: tuple[str, ...]) -> dict[str, dict] | None:
    tree = records(asys, root)
    nodes = {n: tree.get(prefix + n) for n in names}
    if all(node and node["state"] == "running" and node["pid"] for node in nodes.values()):
        return nodes
    return None


def _rounds(asys, root, prefix: str, victims: tuple[str, ...], bystanders: tuple[str, ...], rounds: int) -> list[float]:
    """Kill `victims` together `rounds` times; each must come back with a pid never seen before."""
    seen: set[int] = set()
    recovery: list[float] = []
    calm = wait_until(lambda: _all_running(asys, root, prefix, victims + bystanders), what="every child running")
    bystander_pids = {n: calm[n]["pid"] for n in bystanders}
    for round_no in range(rounds):
        nodes = wait_until(lambda: _all_running(asys, root, prefix, victims), timeout=RECOVERY_WAIT, what=f"victims running before round {round_no}")
        pids = [nodes[n]["pid"] for n in victims]
        assert not seen & set(pids), "a pid was reused for a new incarnation"
        seen.update(pids)
        killed = time.monotonic()
        kill_at_once(pids)
        back = wait_until(
            lambda p=pids: (n := _all_running(asys, root, prefix, victims)) and all(n[v]["pid"] not in p for v in victims) and n,
            timeout=RECOVERY_WAIT,
            what=f"all of {victims} back with new pids in round {round_no}",
        )
        recovery.append(time.monotonic() - killed)
        assert not any(is_alive(p) for p in pids)
        for name in victims:
            assert who(asys, root, prefix + name).pid == back[name]["pid"]
    after = _all_running(asys, root, prefix, bystanders) or {}
    assert {n: after.get(n, {}).get("pid") for n in bystanders} == bystander_pids, "a bystander was disturbed"
    return recovery


def _spec() -> SupervisorSpec:
    inner = SupervisorSpec(children=tuple(ChildSpec(n, ECHO) for n in NAMES), backoff=FAST, heartbeat=Heartbeat(interval=0.2, timeout=5.0), **UNLIMITED)
    return SupervisorSpec(children=(supervisor_child("devices", inner), ChildSpec("api", ECHO)), backoff=FAST, **UNLIMITED)


CASES = {"two": NAMES[:2], "three": NAMES[:3], "all": NAMES}


def _run_case(asys, victims: tuple[str, ...], rounds: int) -> None:
    root = start_root(asys, _spec())
    before = wait_until(lambda: _all_running(asys, root, "", ("devices", "api")))
    bystanders = tuple(n for n in NAMES if n not in victims)
    recovery = _rounds(asys, root, "devices/", victims, bystanders, rounds)
    after = records(asys, root)
    assert after["devices"]["pid"] == before["devices"]["pid"] and after["devices"]["restarts"] == 0, "the supervisor itself was disturbed"
    assert after["api"]["pid"] == before["api"]["pid"]
    print(f"{len(victims)} killed x {rounds} rounds: recovered every round, max {max(recovery):.2f} s, median {sorted(recovery)[len(recovery) // 2]:.2f} s")


@pytest.mark.parametrize("case", CASES)
def test_children_sigkilled_at_the_same_instant_all_come_back_every_round(multiproc_system, case):
    _run_case(multiproc_system, CASES[case], ROUNDS)


@pytest.mark.soak
@pytest.mark.parametrize("case", CASES)
def test_children_sigkilled_at_the_same_instant_50_rounds(multiproc_system, case):
    _run_case(multiproc_system, CASES[case], SOAK_ROUNDS)


def _started(log, supervisor: str, names: tuple[str, ...], after: int, old: set[int]) -> dict[str, int] | None:
    """The pid of each of `names` from `supervisor`'s "child started" lines after line `after`."""
    found: dict[str, int] = {}
    for line in log.poll()[after:]:
        if line.get("actor") == supervisor and line.get("msg") == "child started" and line.get("child") in names and line.get("pid") not in old:
            found[line["child"]] = line["pid"]
    return found if set(found) == set(names) else None


def _kill_rounds(log, supervisor: str, victims: tuple[str, ...], rounds: int) -> None:
    """Kill `victims` of `supervisor` together `rounds` times; each round all come back with new pids."""
    pids = wait_until(lambda: _started(log, supervisor, victims, 0, set()), timeout=30, what=f"{supervisor}'s children started")
    seen = set(pids.values())
    for round_no in range(rounds):
        mark = len(log.poll())
        kill_at_once(list(pids.values()))
        pids = wait_until(lambda m=mark, s=set(seen): _started(log, supervisor, victims, m, s), timeout=RECOVERY_WAIT, what=f"{victims} back in round {round_no}")
        seen.update(pids.values())


def _sigterm_ends_the_family_within_5_s(proc, log) -> float:
    family = descendants(proc.pid)
    proc.send_signal(signal.SIGTERM)
    sent = time.monotonic()
    assert proc.wait(timeout=5) == 0
    wait_until(lambda: not any(is_alive(p) for p in family), timeout=max(0.1, 5 - (time.monotonic() - sent)), what="the family gone within 5 s of SIGTERM")
    assert log.find(actor="launcher", msg="gateway stopped", exit_code=0, reason="SIGTERM")
    return time.monotonic() - sent


def _print_tail(log, lines: int = 80) -> None:
    """The gateway's last log lines: pytest shows them when the test fails."""
    for line in log.poll()[-lines:]:
        print(json.dumps(line))


def _chaos_supervisor() -> dict:
    """A configured subtree in the real gateway: four workers, fast backoff, limits out of the way."""
    return {
        "name": "chaos",
        "kind": "supervisor",
        "config": {
            "children": [{"name": n, "actor": ECHO} for n in NAMES],
            "backoff": {"min_delay": 0.01, "max_delay": 0.05},
            "intensity": {"max_restarts": 100_000, "period": 60},
            "containment": {"max_restarts": 100_000, "period": 60},
        },
    }


def _gateway_case(tmp_path: Path, gateway_env: dict, victims: tuple[str, ...], rounds: int) -> None:
    env = dict(gateway_env, EGW_EXTRA_CHILDREN=json.dumps([_chaos_supervisor()]), EGW_HEARTBEAT_INTERVAL="0.5")
    proc, log = _start(_config(tmp_path, []), env)
    try:
        _kill_rounds(log, "chaos", victims, rounds)
        took = _sigterm_ends_the_family_within_5_s(proc, log)
        print(f"gateway: {len(victims)} of chaos's children killed together x {rounds} rounds, all back; SIGTERM took {took:.2f} s")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        _print_tail(log)


@pytest.mark.parametrize("case", CASES)
def test_in_the_gateway_children_killed_together_come_back_and_sigterm_ends_the_family_in_5_s(tmp_path, gateway_env, case):
    _gateway_case(tmp_path, gateway_env, CASES[case], ROUNDS)


@pytest.mark.soak
@pytest.mark.parametrize("case", CASES)
def test_in_the_gateway_children_killed_together_50_rounds_then_sigterm_in_5_s(tmp_path, gateway_env, case):
    _gateway_case(tmp_path, gateway_env, CASES[case], SOAK_ROUNDS)


def test_harvest_and_transports_killed_together_come_back_and_the_gateway_stops_in_5_s(tmp_path, gateway_env):
    """The field report's case: the outbox writer and the upload supervisor SIGKILLed at once.

    The root's own backoff doubles per consecutive failure (0.05 s, 0.1 s, ...), so a few
    rounds stay well inside the wait; the soak variants above run 50 rounds.
    """
    proc, log = _start(_config(tmp_path, [], restart_max=100_000, restart_period=60, heartbeat_interval=0.5), gateway_env)
    try:
        _kill_rounds(log, "root", ("harvest", "transports"), 5)
        _sigterm_ends_the_family_within_5_s(proc, log)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(timeout=5)
        _print_tail(log)
