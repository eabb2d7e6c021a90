"""A child that keeps failing is parked as failed; its siblings and the gateway keep running."""

from __future__ import annotations

import signal
import time

from supervisor.embedded import start_root
from supervisor.procs import is_alive
from supervisor.spec import Backoff, ChildSpec, Containment, SupervisorSpec, supervisor_child
from tests.api.test_actor import http
from tests.conftest import wait_until
from tests.supervisor.test_launcher import _config, _start
from tests.supervisor.test_supervision import ECHO, records, running, who

FAST = Backoff(min_delay=0.01, max_delay=0.2, factor=2.0, jitter=0.0, reset_after=60)


def test_a_child_failing_forever_is_parked_as_failed_and_retried_rarely_while_its_siblings_keep_running(multiproc_system):
    asys = multiproc_system
    containment = Containment(max_restarts=3, period=60, park_delay=1.0)
    devices = SupervisorSpec(children=(ChildSpec("broken", ECHO, config={"fail_on_start": True}), ChildSpec("inv1", ECHO), ChildSpec("inv2", ECHO)), backoff=FAST, containment=containment)
    root = start_root(asys, SupervisorSpec(children=(supervisor_child("devices", devices), ChildSpec("api", ECHO)), backoff=FAST))
    before = wait_until(lambda: running(asys, root, "devices", "devices/inv1", "devices/inv2", "api"))

    parked = wait_until(lambda: (t := records(asys, root)) and t["devices/broken"]["state"] == "failed" and t, what="broken parked")
    broken = parked["devices/broken"]
    assert broken["restarts"] == 3 and broken["pid"] is None
    assert broken["last_error"] == "RuntimeError: configured to fail on start"
    assert broken["info"]["reason"].startswith("parked: more than 3 restarts in 60 s")
    assert broken["info"]["retry_at"] > time.time() - 1

    # still retried, rarely: one attempt per park_delay, each failing back into "failed"
    retried = wait_until(lambda: (t := records(asys, root)) and t["devices/broken"]["restarts"] >= 4 and t["devices/broken"]["state"] == "failed" and t, what="a parked retry")
    assert retried["devices/broken"]["restarts"] <= 5

    after = records(asys, root)
    for path in ("devices", "devices/inv1", "devices/inv2", "api"):
        assert after[path]["pid"] == before[path]["pid"], f"{path} was restarted"
        assert after[path]["restarts"] == 0
    assert who(asys, root, "devices/inv1").handled == 1


def test_a_parked_child_is_not_counted_towards_the_intensity_but_several_failing_children_are(multiproc_system):
    """One child over its own limit is contained; failures spread over the tree still escalate."""
    asys = multiproc_system
    inner = SupervisorSpec(
        children=tuple(ChildSpec(n, ECHO, config={"fail_on_start": True}) for n in ("a", "b", "c")) + (ChildSpec("ok", ECHO),),
        backoff=FAST,
        containment=Containment(max_restarts=2, period=60, park_delay=3600),
    )
    # each failing child may restart twice: 3 x 2 = 6 restarts, over the intensity of 5
    root = start_root(asys, SupervisorSpec(children=(supervisor_child("devices", inner),), backoff=Backoff(min_delay=30, max_delay=30)))
    # the escalating supervisor's exit notice may come before its Escalate: wait for the reason, not the first error
    tree = wait_until(lambda: (t := records(asys, root)) and (t["devices"]["last_error"] or "").startswith("escalated: ") and t, what="devices escalated")
    assert tree["devices"]["last_error"].startswith("escalated: ") and "restarted more than 5 times in 60 s" in tree["devices"]["last_error"]


def test_a_running_gateway_shows_a_parked_part_as_failed_in_the_api_and_keeps_going(tmp_path, gateway_env):
    config = _config(tmp_path, [("healthy", None), ("broken", {"fail_on_start": True})])
    proc, log = _start(config, gateway_env)
    port = int(gateway_env["EGW_API_PORT"])
    try:
        parked = wait_until(lambda: log.find(actor="root", msg="child parked as failed; retried rarely", child="broken"), timeout=30, what="broken parked")
        assert parked["error"] == "RuntimeError: configured to fail on start"
        healthy = log.find(actor="root", msg="child started", child="healthy")["pid"]

        def actors():
            status, _, body = http(port, "/api/actors")
            return status == 200 and {a["name"]: a for a in body["actors"]}

        tree = wait_until(lambda: (t := actors()) and t.get("broken", {}).get("state") == "failed" and "api" in t and t, timeout=30, what="the API showing broken as failed")
        assert tree["broken"]["restarts"] == 3  # the root's limit: half its budget of 5, rounded up
        assert tree["healthy"]["pid"] == healthy and tree["healthy"]["restarts"] == 0
        def parked_in_health():
            health = http(port, "/api/health")[2]
            return any(reason.startswith("broken: failed (parked: more than 3 restarts in 60 s") for reason in health.get("reasons", [])) and health

        health = wait_until(parked_in_health, timeout=10, what="/api/health naming the parked part")
        assert health["status"] == "degraded"
        assert proc.poll() is None and is_alive(healthy)
        assert not log.find(msg="restart intensity exceeded; escalating")
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
