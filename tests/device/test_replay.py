"""A recorded poll sequence replayed under a frozen clock gives exactly the expected output.

The recording (tests/device/data/huawei_poll_sequence.json, made by
tests/device/recording.py from the simulator over Modbus TCP) holds what a Huawei
inverter answered at t = 0, 10, 20, ... s: good polls, a dead connection at 20 and 30,
a poll that comes 25 s late, a Modbus exception at 80, and a counter reset at 90.
"""

from __future__ import annotations

import json
from datetime import datetime, timezone
from pathlib import Path

from freezegun import freeze_time

from supervisor.backoff import RetryBackoff as Backoff
from actors.device.poller import EndpointPoller
from actors.device.link import DeviceError
from actors.harvest.messages import DeviceEvent, Gap
from tests.device.conftest import ScriptedLink

RECORDING = json.loads((Path(__file__).parent / "data" / "huawei_poll_sequence.json").read_text())
T0 = RECORDING["start"]


def _u32(block: list[int], offset: int = 0) -> int:
    return (block[offset] << 16) | block[offset + 1]


def _expected_energy_wh(step: dict) -> int:
    return _u32(step["blocks"]["3:32106"]) * 10  # U32 in 0.01 kWh = 10 Wh


def _replay():
    link = ScriptedLink({})
    outcomes = []
    settings = {"id": "inv1", "profile": RECORDING["profile"], "host": "192.0.2.1", "unit_id": 1, "poll_interval": RECORDING["poll_interval"]}
    with freeze_time(datetime.fromtimestamp(T0, timezone.utc)) as frozen:
        poller = EndpointPoller([settings], link, backoff=Backoff(initial=5.0, cap=60.0, jitter=0.0), boot="boot-1")
        for step in RECORDING["steps"]:
            frozen.move_to(datetime.fromtimestamp(T0 + step["t"], timezone.utc))
            link.down = bool(step.get("down"))
            answers = {(1, 3, int(k.split(":")[1])): v for k, v in {**RECORDING["identity"], **step.get("blocks", {})}.items()}
            if "exception" in step:
                start = int(step["exception"]["block"].split(":")[1])
                answers[(1, 3, start)] = DeviceError(step["exception"]["code"], "power block")
            link.answers = answers
            outcomes.extend(poller.run_due())
            assert poller.next_wakeup() > poller.clock.monotonic(), "nothing left due after a run"
    return poller, outcomes, link


def test_replay_gives_exact_readings_gaps_and_events():
    poller, outcomes, link = _replay()
    readings = [o.reading for o in outcomes if o.reading is not None]
    gaps = [g for o in outcomes for g in o.gaps]
    events = [e for o in outcomes for e in o.events]
    steps = {s["t"]: s for s in RECORDING["steps"]}

    # at 80 the device refused one block (exception 4 on 3:32064): the other eight still make a reading
    assert [r.wall_time - T0 for r in readings] == [0, 10, 40, 75, 80, 90]
    full = [r for r in readings if r.wall_time - T0 != 80]
    assert [r.values["energy_total_wh"] for r in full] == [_expected_energy_wh(steps[t]) for t in (0, 10, 40, 75, 90)]
    assert [r.values["ac_power_w"] for r in readings] == [_u32(steps[t]["blocks"]["3:32080"]) for t in (0, 10, 40, 75, 80, 90)]
    assert all(r.boot_id == "boot-1" for r in readings)
    assert [r.flags for r in readings] == [(), (), (), (), (), ("reset:energy_total_wh",)]  # the reset reading says so
    assert [r.mono_time - readings[0].mono_time for r in readings] == [0, 10, 40, 75, 80, 90]
    partial = readings[4]
    assert list(partial.raw["block_errors"]) == ["3:32064"] and "exception code 4" in partial.raw["block_errors"]["3:32064"] and "3:32064" not in partial.raw

    assert gaps == [
        Gap("inv1", T0 + 20, T0 + 40, "offline", 2),
        Gap("inv1", T0 + 50, T0 + 75, "late", 2),
    ]
    before, after = _expected_energy_wh(steps[75]), _expected_energy_wh(steps[90])
    assert after < before
    span = 10 * 2**32  # U32 in 0.01 kWh
    assert events == [DeviceEvent("inv1", T0 + 90, "counter_reset", {
        "quantity": "energy_total_wh", "previous": before, "value": after, "register_value": after, "offset": 0, "modulus": 2**32, "span": span,
    })]

    state = poller.devices[0].state
    assert state.online and state.gaps == 2
    assert state.errors == 3  # the broken read at 20, the refused connect at 30, the exception at 80
    assert state.serial == "SIM00132468"
    # Backoff: after the failure at 20 the next attempt waited 5 s (so it came with the 30 slot),
    # after the failure at 30 it waited 10 s: three connects in total.
    assert link.connects == 3


def test_replay_is_deterministic():
    first = [(o.device_id, o.reading and o.reading.values, o.gaps, o.events) for o in _replay()[1]]
    second = [(o.device_id, o.reading and o.reading.values, o.gaps, o.events) for o in _replay()[1]]
    assert first == second
