"""A counter that wrapped stays unwrapped across a restart of its device actor."""

from __future__ import annotations

import json
import os
import signal
import sqlite3

from actors.device.specs import devices_part
from actors.harvest.specs import harvest_child_specs
from simulators.inverter import InverterSimulator
from supervisor.embedded import start_root
from supervisor.spec import SupervisorSpec
from tests.conftest import wait_until
from tests.device.conftest import MIDDAY
from tests.device.test_actor import FAST, _device, device_records

SPAN = 10 * 2**32  # Huawei's U32 energy register in 0.01 kWh rolls over here


def committed(db_path, kind: str) -> list[dict]:
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        return [json.loads(body) for (body,) in conn.execute("SELECT body FROM outbox_items WHERE stream = 'inv1' AND kind = ? ORDER BY seq", (kind,))]
    finally:
        conn.close()


def test_after_a_wrap_a_restarted_device_actor_goes_on_from_the_committed_offset(multiproc_system, tmp_path):
    asys = multiproc_system
    db = tmp_path / "egw.db"
    with InverterSimulator("huawei_sun2000", clock=lambda: MIDDAY) as sim:
        model = sim.units[1].model
        model.energy_wh = SPAN - 50
        children = (*harvest_child_specs({"data_dir": str(tmp_path), "uploads": [], "harvest_commit_window_s": 0.05}), *devices_part({"devices": [_device("inv1", sim)]}))
        root = start_root(asys, SupervisorSpec(children=children, backoff=FAST))

        def energies():
            try:
                return [r["v"]["energy_total_wh"] for r in committed(db, "reading")]
            except sqlite3.OperationalError:  # the harvest has not created the outbox yet
                return []

        wait_until(lambda: SPAN - 50 in energies(), timeout=30, what="a reading just below the wrap committed")
        model.energy_wh = 440  # the register rolls over
        wait_until(lambda: SPAN + 440 in energies(), timeout=30, what="the wrapped reading, unwrapped")
        assert [e["kind"] for e in committed(db, "event")] == ["counter_wrap"]

        before = device_records(asys, root)["inv1"]["pid"]
        os.kill(before, signal.SIGKILL)
        wait_until(lambda: (r := device_records(asys, root).get("inv1")) and r["pid"] not in (None, before) and r["state"] == "online", timeout=30, what="inv1 restarted")
        model.energy_wh = 1240
        wait_until(lambda: SPAN + 1240 in energies() or 1240 in energies(), timeout=30, what="a reading after the restart")
    values = energies()
    assert 1240 not in values, "the new actor started from the bare register: the counter fell back by a whole span"
    assert [e["kind"] for e in committed(db, "event")] == ["counter_wrap"]  # and no false reset
    assert values[-1] == SPAN + 1240
