"""The supervisor restarts what breaks, alone, with real processes and real signals."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import pytest

from supervisor.messages import ChildStopped, GetTree, Lookup, LookupResult, StartChild, StopChild, Tree
from supervisor.embedded import start_root
from supervisor.procs import is_alive
from supervisor.spec import Backoff, ChildSpec, Heartbeat, Intensity, SupervisorSpec, supervisor_child
from tests.conftest import ask_typed, wait_until
from tests.supervisor.sample_actors import Block, Hello, Raise, Segfault, WhoAmI

ECHO = "tests.supervisor.sample_actors.Echo"
FAST = Backoff(min_delay=0.01, max_delay=0.2, factor=2.0, jitter=0.1, reset_after=60)


def records(asys, root, path: str = "") -> dict[str, dict]:
    """The tree as {path: record}, flattened."""
    flat: dict[str, dict] = {}

    def walk(nodes, prefix):
        for node in nodes:
            name = f"{prefix}{node['name']}"
            flat[name] = node
            walk(node["children"], name + "/")

    walk(ask_typed(asys, root, GetTree(), Tree).records, "")
    return flat


def running(asys, root, *names: str) -> dict[str, dict] | None:
    tree = records(asys, root)
    if all(n in tree and tree[n]["state"] == "running" and tree[n]["pid"] for n in names):
        return tree
    return None


def who(asys, root, path: str) -> WhoAmI:
    address = ask_typed(asys, root, Lookup(path), LookupResult).address
    assert address is not None, f"{path} has no address"
    return ask_typed(asys, address, Hello(), WhoAmI)


def test_sigkilled_worker_is_back_with_a_new_pid_and_its_siblings_keep_theirs(multiproc_system):
    asys = multiproc_system
    spec = SupervisorSpec(children=tuple(ChildSpec(n, ECHO) for n in ("inverter", "meter", "charger")), backoff=FAST)
    root = start_root(asys, spec)
    before = wait_until(lambda: running(asys, root, "inverter", "meter", "charger"), what="children running")

    killed_at = time.monotonic()
    os.kill(before["inverter"]["pid"], signal.SIGKILL)
    after = wait_until(
        lambda: (t := running(asys, root, "inverter")) and t["inverter"]["pid"] != before["inverter"]["pid"] and t,
        timeout=1.0,
        what="inverter back within 1 s",
    )
    assert time.monotonic() - killed_at < 1.0
    assert after["inverter"]["restarts"] == 1
    assert who(asys, root, "inverter").pid == after["inverter"]["pid"]
    for sibling in ("meter", "charger"):
        assert after[sibling]["pid"] == before[sibling]["pid"]
        assert after[sibling]["restarts"] == 0
        assert who(asys, root, sibling).handled == 1  # still the same process, still answering


def test_an_exception_in_a_handler_restarts_the_actor_with_fresh_state(multiproc_system):
    asys = multiproc_system
    root = start_root(asys, SupervisorSpec(children=(ChildSpec("device", ECHO),), backoff=FAST))
    wait_until(lambda: running(asys, root, "device"))
    assert who(asys, root, "device").handled == 1
    assert who(asys, root, "device").handled == 2
    first_pid = records(asys, root)["device"]["pid"]

    asys.tell(ask_typed(asys, root, Lookup("device"), LookupResult).address, Raise())
    tree = wait_until(lambda: (t := running(asys, root, "device")) and t["device"]["restarts"] == 1 and t, what="restart")
    assert tree["device"]["last_error"] == "RuntimeError: asked to fail"
    assert tree["device"]["pid"] != first_pid
    assert who(asys, root, "device").handled == 1  # counter starts again: fresh state


def test_a_segfaulting_actor_dies_and_is_restarted_instead_of_spinning(multiproc_system):
    asys = multiproc_system
    root = start_root(asys, SupervisorSpec(children=(ChildSpec("driver", ECHO), ChildSpec("other", ECHO)), backoff=FAST))
    before = wait_until(lambda: running(asys, root, "driver", "other"))
    crashed_pid = before["driver"]["pid"]

    asys.tell(ask_typed(asys, root, Lookup("driver"), LookupResult).address, Segfault())
    after = wait_until(lambda: (t := running(asys, root, "driver")) and t["driver"]["pid"] != crashed_pid and t, what="driver restarted")
    assert not is_alive(crashed_pid), "the segfaulted process is still there (spinning)"
    assert after["other"]["pid"] == before["other"]["pid"]
    assert who(asys, root, "driver").pid == after["driver"]["pid"]


def test_an_actor_stuck_in_a_blocking_call_is_killed_by_the_heartbeat_and_restarted(multiproc_system):
    asys = multiproc_system
    spec = SupervisorSpec(children=(ChildSpec("modbus", ECHO), ChildSpec("other", ECHO)), backoff=FAST, heartbeat=Heartbeat(interval=0.2, timeout=1.0))
    root = start_root(asys, spec)
    before = wait_until(lambda: running(asys, root, "modbus", "other"))
    stuck_pid = before["modbus"]["pid"]

    asys.tell(ask_typed(asys, root, Lookup("modbus"), LookupResult).address, Block(3600))
    after = wait_until(lambda: (t := running(asys, root, "modbus")) and t["modbus"]["pid"] != stuck_pid and t, timeout=10, what="hung actor replaced")
    assert after["modbus"]["last_error"].startswith("missed heartbeat")
    assert not is_alive(stuck_pid)
    assert after["other"]["pid"] == before["other"]["pid"]
    assert who(asys, root, "modbus").handled == 1


def test_too_many_crashes_make_a_supervisor_escalate_and_its_parent_restart_the_subtree(multiproc_system):
    asys = multiproc_system
    inner = SupervisorSpec(children=(ChildSpec("flaky", ECHO),), backoff=FAST, intensity=Intensity(max_restarts=2, period=60))
    spec = SupervisorSpec(children=(supervisor_child("devices", inner), ChildSpec("api", ECHO)), backoff=FAST)
    root = start_root(asys, spec)
    before = wait_until(lambda: running(asys, root, "devices", "devices/flaky", "api"))

    for crash in range(3):
        wait_until(lambda: running(asys, root, "devices/flaky"), what=f"flaky running before crash {crash}")
        asys.tell(ask_typed(asys, root, Lookup("devices/flaky"), LookupResult).address, Raise())
        if crash < 2:
            wait_until(lambda c=crash: (t := running(asys, root, "devices/flaky")) and t["devices/flaky"]["restarts"] == c + 1, what="flaky restarted")

    after = wait_until(lambda: (t := running(asys, root, "devices", "devices/flaky")) and t["devices"]["restarts"] == 1 and t, what="devices supervisor restarted")
    assert after["devices"]["last_error"].startswith("escalated: flaky restarted more than 2 times")
    assert after["devices"]["pid"] != before["devices"]["pid"]
    assert after["devices/flaky"]["restarts"] == 0  # a fresh supervisor, fresh counts
    assert after["api"]["pid"] == before["api"]["pid"]


def test_sigkill_of_a_mid_level_supervisor_takes_its_children_down_and_the_subtree_comes_back_once(multiproc_system):
    asys = multiproc_system
    inner = SupervisorSpec(children=(ChildSpec("inv1", ECHO), ChildSpec("inv2", ECHO)), backoff=FAST)
    root = start_root(asys, SupervisorSpec(children=(supervisor_child("devices", inner), ChildSpec("api", ECHO)), backoff=FAST))
    before = wait_until(lambda: running(asys, root, "devices", "devices/inv1", "devices/inv2", "api"))
    old_children = [before["devices/inv1"]["pid"], before["devices/inv2"]["pid"]]

    os.kill(before["devices"]["pid"], signal.SIGKILL)
    wait_until(lambda: not any(is_alive(p) for p in old_children), timeout=5, what="orphaned children to die with their supervisor")
    after = wait_until(
        lambda: (t := running(asys, root, "devices", "devices/inv1", "devices/inv2")) and t["devices"]["pid"] != before["devices"]["pid"] and t,
        what="subtree back",
    )
    assert after["devices"]["restarts"] == 1
    assert after["devices/inv1"]["restarts"] == 0 and after["devices/inv2"]["restarts"] == 0
    assert after["api"]["pid"] == before["api"]["pid"]
    assert who(asys, root, "devices/inv2").handled == 1


def test_rest_for_one_restarts_the_failed_child_and_those_started_after_it(multiproc_system):
    asys = multiproc_system
    spec = SupervisorSpec(strategy="rest_for_one", children=tuple(ChildSpec(n, ECHO) for n in ("storage", "harvest", "transport")), backoff=FAST)
    root = start_root(asys, spec)
    before = wait_until(lambda: running(asys, root, "storage", "harvest", "transport"))

    os.kill(before["harvest"]["pid"], signal.SIGKILL)
    after = wait_until(
        lambda: (t := running(asys, root, "harvest", "transport")) and t["transport"]["pid"] != before["transport"]["pid"] and t["harvest"]["pid"] != before["harvest"]["pid"] and t,
        what="harvest and transport restarted",
    )
    assert after["storage"]["pid"] == before["storage"]["pid"]
    assert not is_alive(before["transport"]["pid"])


def test_dynamic_children_start_on_demand_and_stop_for_good(multiproc_system):
    asys = multiproc_system
    root = start_root(asys, SupervisorSpec(children=(supervisor_child("chargers", SupervisorSpec(backoff=FAST)),), backoff=FAST))
    wait_until(lambda: running(asys, root, "chargers"))
    chargers = ask_typed(asys, root, Lookup("chargers"), LookupResult).address

    reply = ask_typed(asys, chargers, StartChild(ChildSpec("CP1", ECHO, restart="temporary")), LookupResult)
    assert reply.address is not None
    tree = wait_until(lambda: running(asys, root, "chargers/CP1"))
    assert who(asys, root, "chargers/CP1").pid == tree["chargers/CP1"]["pid"]

    assert ask_typed(asys, chargers, StopChild("CP1"), ChildStopped).name == "CP1"
    wait_until(lambda: "chargers/CP1" not in records(asys, root), what="CP1 removed")
    wait_until(lambda: not is_alive(tree["chargers/CP1"]["pid"]), what="CP1 process gone")


@pytest.mark.parametrize("restart, comes_back", [("permanent", True), ("temporary", False)])
def test_restart_types(multiproc_system, restart, comes_back):
    asys = multiproc_system
    root = start_root(asys, SupervisorSpec(children=(ChildSpec("child", ECHO, restart=restart),), backoff=FAST))
    before = wait_until(lambda: running(asys, root, "child"))
    os.kill(before["child"]["pid"], signal.SIGKILL)
    if comes_back:
        wait_until(lambda: (t := running(asys, root, "child")) and t["child"]["pid"] != before["child"]["pid"])
    else:
        state = wait_until(lambda: records(asys, root)["child"]["state"] == "stopped" and records(asys, root)["child"])
        assert state["pid"] is None and state["restarts"] == 0


def test_child_specs_are_readable_plain_data():
    spec = SupervisorSpec(children=(ChildSpec("inv1", ECHO, config={"host": "127.0.0.1"}),))
    assert "ChildSpec(name='inv1', actor='tests.supervisor.sample_actors.Echo'" in repr(spec)
    assert Path(__file__).exists()


def test_one_for_all_restarts_every_child_when_one_fails(multiproc_system):
    asys = multiproc_system
    spec = SupervisorSpec(strategy="one_for_all", children=tuple(ChildSpec(n, ECHO) for n in ("storage", "harvest", "transport")), backoff=FAST)
    root = start_root(asys, spec)
    before = wait_until(lambda: running(asys, root, "storage", "harvest", "transport"))

    os.kill(before["harvest"]["pid"], signal.SIGKILL)
    after = wait_until(
        lambda: (t := running(asys, root, "storage", "harvest", "transport")) and all(t[n]["pid"] != before[n]["pid"] for n in ("storage", "harvest", "transport")) and t,
        what="every child restarted",
    )
    assert [after[n]["restarts"] for n in ("storage", "harvest", "transport")] == [1, 1, 1]
    assert not any(is_alive(before[n]["pid"]) for n in ("storage", "harvest", "transport"))
