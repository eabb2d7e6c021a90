"""Every way a child can stop making progress ends in SIGKILL and a restart, within a deadline.

The deadlines the supervisor promises (docs/supervision.md):

* stuck in on_start: killed within `ChildSpec.start_timeout` + one heartbeat interval;
* ignoring its exit request: killed `ChildSpec.shutdown_timeout` after the request;
* stopped (SIGSTOP) or stuck in a handler: killed within the heartbeat timeout + one interval.

Each wait below is that deadline plus MARGIN for scheduling on a busy machine.
"""

from __future__ import annotations

import os
import signal
import time

from supervisor.embedded import start_root
from supervisor.messages import ChildStopped, Lookup, LookupResult, StartChild, StopChild
from supervisor.procs import is_alive
from supervisor.spec import Backoff, ChildSpec, Heartbeat, SupervisorSpec, supervisor_child
from tests.conftest import ask_typed, wait_until
from tests.supervisor.test_supervision import ECHO, records, running, who

FAST = Backoff(min_delay=0.01, max_delay=0.2, factor=2.0, jitter=0.1, reset_after=60)
BEAT = Heartbeat(interval=0.2, timeout=1.0)
MARGIN = 1.0


def test_a_child_stuck_in_on_start_is_killed_within_start_timeout_and_restarted(multiproc_system, tmp_path):
    asys = multiproc_system
    marker = tmp_path / "hung-once"
    start_timeout = 1.0
    spec = SupervisorSpec(
        children=(ChildSpec("modbus", ECHO, config={"hang_on_first_start": str(marker)}, start_timeout=start_timeout), ChildSpec("other", ECHO)),
        backoff=FAST,
        heartbeat=BEAT,
    )
    root = start_root(asys, spec)
    wait_until(marker.exists, what="the first incarnation hanging in on_start")
    hung_pid = int(marker.read_text())
    hung = records(asys, root)["modbus"]
    assert hung["state"] == "starting" and hung["pid"] == hung_pid, "the pid is known before the child answers"

    wait_until(lambda: not is_alive(hung_pid), timeout=start_timeout + BEAT.interval + MARGIN, what="the hung child killed")
    after = wait_until(lambda: (t := running(asys, root, "modbus")) and t["modbus"]["pid"] != hung_pid and t, what="modbus restarted")
    assert after["modbus"]["restarts"] == 1
    assert after["modbus"]["last_error"] == f"no Started within {start_timeout:g} s (hung in on_start)"
    assert who(asys, root, "modbus").pid == after["modbus"]["pid"]
    assert after["other"]["restarts"] == 0


def test_a_child_ignoring_its_exit_request_is_killed_after_shutdown_timeout(multiproc_system):
    asys = multiproc_system
    shutdown_timeout = 1.0
    chargers = SupervisorSpec(backoff=FAST, heartbeat=BEAT)
    root = start_root(asys, SupervisorSpec(children=(supervisor_child("chargers", chargers),), backoff=FAST))
    wait_until(lambda: running(asys, root, "chargers"))
    supervisor = ask_typed(asys, root, Lookup("chargers"), LookupResult).address
    ask_typed(asys, supervisor, StartChild(ChildSpec("CP1", ECHO, config={"block_on_stop": 3600}, shutdown_timeout=shutdown_timeout)), LookupResult)
    pid = wait_until(lambda: running(asys, root, "chargers/CP1"))["chargers/CP1"]["pid"]

    asked = time.monotonic()
    assert ask_typed(asys, supervisor, StopChild("CP1"), ChildStopped).name == "CP1"
    wait_until(lambda: records(asys, root).get("chargers/CP1", {}).get("state") == "stopping" or not is_alive(pid), what="CP1 stopping")
    wait_until(lambda: not is_alive(pid), timeout=shutdown_timeout + MARGIN, what="the child killed after its shutdown_timeout")
    assert time.monotonic() - asked >= shutdown_timeout * 0.9, "killed before its shutdown_timeout"
    wait_until(lambda: "chargers/CP1" not in records(asys, root), what="CP1 removed")


def test_a_group_restart_kills_a_sibling_that_ignores_its_exit_request_and_starts_it_again(multiproc_system):
    asys = multiproc_system
    spec = SupervisorSpec(
        strategy="rest_for_one",
        children=(ChildSpec("harvest", ECHO), ChildSpec("transport", ECHO, config={"block_on_stop": 3600}, shutdown_timeout=0.5)),
        backoff=FAST,
        heartbeat=BEAT,
    )
    root = start_root(asys, spec)
    before = wait_until(lambda: running(asys, root, "harvest", "transport"))
    os.kill(before["harvest"]["pid"], signal.SIGKILL)
    wait_until(lambda: not is_alive(before["transport"]["pid"]), timeout=0.5 + MARGIN, what="the stubborn sibling killed")
    after = wait_until(
        lambda: (t := running(asys, root, "harvest", "transport")) and t["transport"]["pid"] != before["transport"]["pid"] and t["harvest"]["pid"] != before["harvest"]["pid"] and t,
        what="both restarted",
    )
    assert after["transport"]["restarts"] == 1


def test_a_sigstopped_child_is_killed_within_the_heartbeat_timeout_and_restarted(multiproc_system):
    asys = multiproc_system
    root = start_root(asys, SupervisorSpec(children=(ChildSpec("meter", ECHO), ChildSpec("other", ECHO)), backoff=FAST, heartbeat=BEAT))
    before = wait_until(lambda: running(asys, root, "meter", "other"))
    stopped_pid = before["meter"]["pid"]

    os.kill(stopped_pid, signal.SIGSTOP)
    try:
        wait_until(lambda: not is_alive(stopped_pid), timeout=BEAT.timeout + BEAT.interval + MARGIN, what="the stopped child killed")
    finally:
        if is_alive(stopped_pid):
            os.kill(stopped_pid, signal.SIGCONT)
    after = wait_until(lambda: (t := running(asys, root, "meter")) and t["meter"]["pid"] != stopped_pid and t, what="meter restarted")
    assert after["meter"]["last_error"].startswith("missed heartbeat")
    assert after["other"]["pid"] == before["other"]["pid"]
    assert who(asys, root, "meter").handled == 1


def test_a_stopping_gateway_kills_a_child_that_ignores_its_exit_request(multiproc_system):
    """An exiting supervisor gets no timers from thespian: its watchdog keeps the deadline."""
    asys = multiproc_system
    inner = SupervisorSpec(children=(ChildSpec("stubborn", ECHO, config={"block_on_stop": 3600}, shutdown_timeout=0.5), ChildSpec("fine", ECHO)), backoff=FAST)
    root = start_root(asys, SupervisorSpec(children=(supervisor_child("devices", inner),), backoff=FAST))
    tree = wait_until(lambda: running(asys, root, "devices", "devices/stubborn", "devices/fine"))
    pids = [tree[p]["pid"] for p in ("devices", "devices/stubborn", "devices/fine")]

    from thespian.actors import ActorExitRequest

    asys.tell(root, ActorExitRequest())
    wait_until(lambda: not any(is_alive(p) for p in pids), timeout=0.5 + MARGIN, what="the subtree gone, the stubborn child killed")
