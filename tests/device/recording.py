"""Records the poll sequence replayed by test_replay.py from the real simulator over Modbus TCP.

Run `python -m tests.device.recording` to regenerate `data/huawei_poll_sequence.json`.
Each step is what the device answered at t seconds after the start: register blocks, a
dead connection ("down"), or a Modbus exception code for the power block.
"""

from __future__ import annotations

import json
from pathlib import Path

from actors.device.decode import block_key, poll_plan
from actors.device.link import ModbusLink
from actors.device.profile import load_profile
from simulators.inverter import InverterSimulator

START = 1_699_956_000.0  # 10:00 UTC: the simulated plant produces
OUT = Path(__file__).parent / "data" / "huawei_poll_sequence.json"
SCRIPT = [(0, "ok"), (10, "ok"), (20, "down"), (30, "down"), (40, "ok"), (75, "ok"), (80, "exception"), (90, "reset")]


def record() -> dict:
    now = [START]
    profile = load_profile("huawei_sun2000")
    plan = poll_plan(profile)
    with InverterSimulator("huawei_sun2000", units=(1,), clock=lambda: now[0]) as sim:
        link = ModbusLink({"host": "127.0.0.1", "port": sim.port, "timeout": 1.0})
        link.connect()
        identity = {block_key(b): link.read(1, b.function, b.start, b.count) for b in plan.identity_blocks}
        steps = []
        for t, what in SCRIPT:
            now[0] = START + t
            if what == "down":
                steps.append({"t": t, "down": True})
                continue
            if what == "reset":
                sim.units[1].model.energy_wh = 1000.0  # the inverter was replaced / its counter reset
            blocks = {block_key(b): link.read(1, b.function, b.start, b.count) for b in plan.blocks}
            step = {"t": t, "blocks": blocks}
            if what == "exception":
                step["exception"] = {"block": block_key(plan.blocks[0]), "code": 4}
            steps.append(step)
        link.close()
    return {"profile": "huawei_sun2000", "unit_id": 1, "poll_interval": 10.0, "start": START, "identity": identity, "steps": steps}


if __name__ == "__main__":
    OUT.write_text(json.dumps(record(), indent=1) + "\n")
    print(f"wrote {OUT}")
