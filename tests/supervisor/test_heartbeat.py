"""Heartbeats reach every level of the tree, and a busy supervisor still answers its own."""

from __future__ import annotations

from dataclasses import replace

from supervisor.config import load_config
from supervisor.embedded import start_root
from supervisor.messages import Lookup, LookupResult
from supervisor.procs import is_alive
from supervisor.spec import Backoff, ChildSpec, Heartbeat, SupervisorSpec, supervisor_child
from supervisor.tree import root_spec
from tests.conftest import ask_typed, wait_until
from tests.supervisor.sample_actors import Block, Burst
from tests.supervisor.test_supervision import ECHO, records, running

FAST = Backoff(min_delay=0.01, max_delay=0.2, factor=2.0, jitter=0.1, reset_after=60)
MARGIN = 1.0
MANY = 200
CHURNER = "tests.supervisor.sample_actors.Churner"


def test_a_nested_supervisor_without_heartbeat_settings_uses_its_parents(multiproc_system):
    asys = multiproc_system
    beat = Heartbeat(interval=0.1, timeout=0.5)  # the default (5 s) would not kill within the wait below
    inner = SupervisorSpec(children=(ChildSpec("modbus", ECHO),), backoff=FAST)
    root = start_root(asys, SupervisorSpec(children=(supervisor_child("devices", inner),), backoff=FAST, heartbeat=beat))
    before = wait_until(lambda: running(asys, root, "devices/modbus"))
    stuck = before["devices/modbus"]["pid"]

    asys.tell(ask_typed(asys, root, Lookup("devices/modbus"), LookupResult).address, Block(3600))
    wait_until(lambda: not is_alive(stuck), timeout=beat.timeout + beat.interval + MARGIN, what="the stuck grandchild killed on the inherited heartbeat")
    after = wait_until(lambda: (t := running(asys, root, "devices/modbus")) and t["devices/modbus"]["pid"] != stuck and t)
    assert after["devices/modbus"]["last_error"].startswith("missed heartbeat")
    assert after["devices"]["restarts"] == 0


def test_the_configured_heartbeat_is_the_roots_and_nested_supervisors_inherit_it_unless_they_name_their_own(tmp_path):
    config = load_config(env={"EGW_HEARTBEAT_INTERVAL": "0.5", "EGW_HEARTBEAT_TIMEOUT": "7", "EGW_DATA_DIR": str(tmp_path), "EGW_BLE_ENABLED": "false"})
    spec = root_spec(config)
    assert spec.heartbeat == Heartbeat(0.5, 7.0)
    nested = {c.name: c.config.heartbeat for c in spec.children if c.kind == "supervisor"}
    assert nested["devices"] is None and nested["transports"] is None  # inherit 0.5 s / 7 s when started
    assert nested["chargers"] == Heartbeat(5.0, 30.0)  # the charger family names its own


BUSY_BEAT = Heartbeat(interval=0.2, timeout=1.0)
"""The parent's heartbeat: creating 200 processes in one go takes longer than its timeout."""


def _busy_tree(children: tuple[ChildSpec, ...]) -> SupervisorSpec:
    chargers = SupervisorSpec(children=children, backoff=FAST, heartbeat=Heartbeat(interval=5.0, timeout=30.0))
    # a supervisor creates its children after on_start, in steps: it reports Started at once
    spec = replace(supervisor_child("chargers", chargers), start_timeout=BUSY_BEAT.timeout)
    return SupervisorSpec(children=(spec, ChildSpec("listener", CHURNER)), backoff=FAST, heartbeat=BUSY_BEAT)


def _all_running(asys, root, count: int) -> bool:
    tree = records(asys, root)
    return sum(1 for path, rec in tree.items() if path.startswith("chargers/") and rec["state"] == "running") == count


def test_a_supervisor_starting_200_children_answers_its_heartbeat_and_is_never_killed_as_hung(multiproc_system):
    asys = multiproc_system
    root = start_root(asys, _busy_tree(tuple(ChildSpec(f"CP{i}", ECHO) for i in range(MANY))))
    wait_until(lambda: _all_running(asys, root, MANY), timeout=120, interval=0.2, what=f"{MANY} children running")
    chargers = records(asys, root)["chargers"]
    assert chargers["restarts"] == 0 and chargers["last_error"] is None, chargers["last_error"]


def test_a_burst_of_200_start_child_requests_does_not_get_the_supervisor_killed_as_hung(multiproc_system):
    asys = multiproc_system
    root = start_root(asys, _busy_tree(()))
    wait_until(lambda: running(asys, root, "chargers", "listener"))
    supervisor = ask_typed(asys, root, Lookup("chargers"), LookupResult).address
    listener = ask_typed(asys, root, Lookup("listener"), LookupResult).address
    asys.tell(listener, Burst(supervisor, MANY))  # all queued at the supervisor at once
    wait_until(lambda: _all_running(asys, root, MANY), timeout=120, interval=0.2, what=f"{MANY} dynamic children running")
    chargers = records(asys, root)["chargers"]
    assert chargers["restarts"] == 0 and chargers["last_error"] is None, chargers["last_error"]
