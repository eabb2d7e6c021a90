"""Device actors in a real supervision tree (multiprocess thespian) against the real simulator."""

from __future__ import annotations

import os
import signal

import pytest

from actors.device.specs import devices_part
from supervisor.messages import GetTree, Lookup, LookupResult, Tree
from supervisor.spec import Backoff, ChildSpec, Heartbeat, SupervisorSpec
from simulators.inverter import InverterSimulator
from tests.conftest import ask_typed, wait_until
from tests.device.stub_actors import Batches, GetBatches
from supervisor.embedded import start_root

FAST = Backoff(min_delay=0.01, max_delay=0.2, factor=2.0, jitter=0.1, reset_after=60)


def _device(device_id: str, sim: InverterSimulator, unit: int | None = None, **extra) -> dict:
    settings = {"id": device_id, "profile": sim.profile_name, "host": "127.0.0.1", "port": sim.port, "unit_id": unit or next(iter(sim.units)), "poll_interval": 0.25, "timeout": 0.5, "backoff_cap": 1.0}
    settings.update(extra)
    return settings


def start_tree(asys, devices: list[dict], ack: bool = True):
    children = (ChildSpec("harvest", "tests.device.stub_actors.HarvestStub", config={"ack": ack}), *devices_part({"devices": devices}))
    spec = SupervisorSpec(children=children, backoff=FAST, heartbeat=Heartbeat(0.5, 5.0))
    root = start_root(asys, spec)
    return root


def device_records(asys, root) -> dict[str, dict]:
    tree = ask_typed(asys, root, GetTree(), Tree).records
    devices = next(r for r in tree if r["name"] == "devices")
    return {r["name"]: r for r in devices["children"]}


def batches(asys, root) -> list:
    harvest = ask_typed(asys, root, Lookup("harvest"), LookupResult).address
    return sorted(ask_typed(asys, harvest, GetBatches(), Batches).batches, key=lambda b: (b.producer, b.batch_id))


def test_polls_ship_batches_and_publish_values(multiproc_system):
    asys = multiproc_system
    with InverterSimulator("huawei_sun2000") as sim:
        root = start_tree(asys, [_device("inv1", sim)])
        got = wait_until(lambda: len(b := batches(asys, root)) >= 3 and b, what="three batches")
        readings = [r for b in got for r in b.readings]
        assert {r.device_id for r in readings} == {"inv1"}
        # polls faster than SHIP_EVERY travel together: one message per ~2 s, not one per poll
        assert all(len(b.readings) >= 1 for b in got) and max(len(b.readings) for b in got) > 1
        assert [b.batch_id for b in got] == list(range(1, len(got) + 1))
        assert readings[0].values["energy_total_wh"] > 0 and readings[0].raw
        record = wait_until(lambda: (r := device_records(asys, root).get("inv1")) and r["state"] == "online" and r["info"].get("serial") and r, what="online with serial")
        info = record["info"]
        assert info["serial"] == sim.units[1].serial
        assert info["profile"] == "huawei_sun2000"
        assert info["connection"] == f"tcp:127.0.0.1:{sim.port}"
        assert info["values"]["grid_frequency_hz"] == pytest.approx(50.0, abs=0.06)
        assert info["errors"] == 0 and info["unacknowledged"] <= 1


def test_outage_goes_offline_records_gaps_and_reconnects_within_the_backoff_cap(multiproc_system):
    asys = multiproc_system
    sim = InverterSimulator("sma").start()
    try:
        root = start_tree(asys, [_device("inv1", sim)])
        wait_until(lambda: device_records(asys, root).get("inv1", {}).get("state") == "online", what="online")
        sim.stop()  # mid-poll: the simulator goes away under an open connection
        wait_until(lambda: device_records(asys, root)["inv1"]["state"] == "offline", what="offline")
        sim.start()  # same port, counters continue
        # Back within one backoff cap (1 s) plus a poll interval; generous slack for a loaded CI box.
        wait_until(lambda: device_records(asys, root)["inv1"]["state"] == "online", timeout=5.0, what="online again")
        gaps = wait_until(lambda: [g for b in batches(asys, root) for g in b.gaps if g.reason == "offline"], what="offline gap shipped")
        assert gaps[0].device_id == "inv1" and gaps[0].missed_polls >= 1 and gaps[0].end_wall > gaps[0].start_wall
        record = device_records(asys, root)["inv1"]
        assert record["restarts"] == 0, "an outage is handled inside the actor, not by crashing it"
        assert record["info"]["gaps"] >= 1
    finally:
        sim.stop()


def test_garbage_and_exception_codes_are_errors_not_crashes(multiproc_system):
    asys = multiproc_system
    with InverterSimulator("huawei_sun2000") as sim:
        root = start_tree(asys, [_device("inv1", sim)])
        wait_until(lambda: device_records(asys, root).get("inv1", {}).get("state") == "online", what="online")
        sim.faults.garbage = 3
        wait_until(lambda: device_records(asys, root)["inv1"]["info"]["errors"] >= 1, what="garbage counted as an error")
        sim.faults.exception_code, sim.faults.exception_count = 4, 3  # three of the nine blocks refused
        partial = wait_until(lambda: [r for b in batches(asys, root) for r in b.readings if "block_errors" in r.raw], what="the partial reading stored")
        assert all("exception code 4" in e for e in partial[0].raw["block_errors"].values())
        values = partial[0].values
        assert any(v is None for v in values.values()) and any(v is not None for v in values.values())  # the readable blocks were kept
        sim.faults.exception_count = 27  # now every block, for a few polls: no reading at all, a gap
        wait_until(lambda: "device_error" in {g.reason for b in batches(asys, root) for g in b.gaps}, what="a poll with every block refused is a gap")
        wait_until(lambda: sim.faults.exception_count == 0 and device_records(asys, root)["inv1"]["info"]["last_error"] is None, what="recovered again")
        record = device_records(asys, root)["inv1"]
        assert record["state"] == "online" and record["restarts"] == 0
        assert record["info"]["errors"] >= 2


def test_sigkill_of_one_device_actor_leaves_the_others_on_schedule(multiproc_system):
    asys = multiproc_system
    with InverterSimulator("huawei_sun2000") as sim_a, InverterSimulator("eastron_sdm630") as sim_b:
        root = start_tree(asys, [_device("inv1", sim_a, poll_interval=0.5), _device("meter", sim_b, poll_interval=0.5)])
        before = wait_until(lambda: (r := device_records(asys, root)) and all(r.get(n, {}).get("state") == "online" and r[n]["pid"] for n in ("inv1", "meter")) and r, what="both online")
        meter_before = len([b for b in batches(asys, root) if b.producer == "meter"])
        os.kill(before["inv1"]["pid"], signal.SIGKILL)
        after = wait_until(lambda: (r := device_records(asys, root)) and r["inv1"]["restarts"] == 1 and r["inv1"]["state"] == "online" and r, what="inv1 restarted")
        wait_until(lambda: len([b for b in batches(asys, root) if b.producer == "meter"]) >= meter_before + 4, what="meter kept polling")
        assert after["meter"]["pid"] == before["meter"]["pid"] and after["meter"]["restarts"] == 0
        meter = [r for b in batches(asys, root) if b.producer == "meter" for r in b.readings]
        slots = [round((r.mono_time - meter[0].mono_time) / 0.5) for r in meter]
        assert slots == list(range(len(slots))), "the meter's deadlines stayed on its grid: no slot skipped"
        assert not [g for b in batches(asys, root) if b.producer == "meter" for g in b.gaps]


def test_unacknowledged_batches_are_bounded_and_their_loss_is_a_gap(multiproc_system):
    asys = multiproc_system
    with InverterSimulator("goodwe") as sim:
        root = start_tree(asys, [_device("inv1", sim, poll_interval=0.05)], ack=False)
        got = wait_until(lambda: [g for b in batches(asys, root) for g in b.gaps if g.reason == "dropped_unacknowledged"], timeout=40, what="a dropped-batch gap")
        assert got[0].device_id == "inv1" and got[0].missed_polls >= 1  # every reading of the batch given up
        record = wait_until(lambda: (r := device_records(asys, root)["inv1"])["info"].get("unacknowledged") == 8 and r, what="outbox at its bound")
        assert record["restarts"] == 0 and record["state"] == "online"


def test_a_device_answering_every_request_late_keeps_its_actor_and_its_healthy_neighbour_on_schedule(multiproc_system):
    """Each request answered 0.3 s late: a poll of the Huawei's blocks takes longer than the
    heartbeat timeout (1.5 s), yet the actor answers its heartbeat between requests, so
    neither it nor the healthy device beside it is ever restarted, and both deliver readings."""
    asys = multiproc_system
    with InverterSimulator("huawei_sun2000") as slow, InverterSimulator("fronius") as healthy:
        slow.faults.delay_s = 0.3
        children = (ChildSpec("harvest", "tests.device.stub_actors.HarvestStub", config={"ack": True}),
                    *devices_part({"devices": [_device("slow", slow, poll_interval=1.0, timeout=1.0), _device("ok", healthy, poll_interval=0.25)]}))
        root = start_root(asys, SupervisorSpec(children=children, backoff=FAST, heartbeat=Heartbeat(0.2, 1.5)))
        got = wait_until(lambda: sum(1 for b in batches(asys, root) for r in b.readings if r.device_id == "slow") >= 2 and batches(asys, root),
                         timeout=30, what="two readings from the slow device")
        records = device_records(asys, root)
        assert (records["slow"]["restarts"], records["ok"]["restarts"]) == (0, 0)
        healthy_readings = [r for b in got for r in b.readings if r.device_id == "ok"]
        assert len(healthy_readings) >= 8
        slow_readings = [r for b in got for r in b.readings if r.device_id == "slow"]
        assert all(r.values.get("energy_total_wh") for r in slow_readings)
        assert records["slow"]["info"]["poll_latency_ms"] >= 300 * 2  # it really was slow: several late requests per poll
