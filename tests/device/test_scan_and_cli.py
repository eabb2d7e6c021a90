"""`egw devices scan` and `python -m simulators.inverter`, end to end on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest

from actors.device.scan import Found, main, parse_target, scan
from simulators.inverter import InverterSimulator
from tests.conftest import ROOT, free_port, wait_until


def test_scan_finds_sunspec_and_vendor_devices_with_identity():
    with InverterSimulator("sunspec", units=(1, 2)) as sunspec, InverterSimulator("huawei_sun2000", units=(1,)) as huawei:
        found = scan(f"127.0.0.1:{sunspec.port}", units=(1, 2, 3), timeout=0.5)
        assert [(f.unit_id, f.profile, f.confidence) for f in found] == [(1, "sunspec", "sunspec"), (2, "sunspec", "sunspec")]
        assert found[0].serial == sunspec.units[1].serial and found[0].manufacturer == "SunSpec simulated"
        [hw] = scan(f"127.0.0.1:{huawei.port}", units=(1, 2), timeout=0.5)
        assert replace(hw, score=0, evidence=()) == Found("127.0.0.1", huawei.port, 1, "huawei_sun2000", "match", "Huawei", "SUN2000 simulated", huawei.units[1].serial)
        assert hw.evidence[0] == "model_name at 30000 starts with 'SUN2000'"


def test_scan_cli_prints_each_device_and_reports_nothing_found(capsys):
    with InverterSimulator("sma") as sim:
        assert main(["scan", f"127.0.0.1:{sim.port}", "--units", "3", "--json"]) == 0
        [line] = capsys.readouterr().out.strip().splitlines()
        found = json.loads(line)
        assert {k: found[k] for k in ("host", "port", "unit_id", "profile", "confidence", "manufacturer", "model", "serial", "best")} == \
            {"host": "127.0.0.1", "port": sim.port, "unit_id": 3, "profile": "sma", "confidence": "candidate", "manufacturer": "SMA", "model": "9003", "serial": "2000000003", "best": True}
    closed = free_port()
    assert main(["scan", f"127.0.0.1:{closed}", "--timeout", "0.2"]) == 1
    assert "no devices found" in capsys.readouterr().out


def test_against_a_device_that_answers_every_address_the_right_profile_ranks_first_and_says_why(capsys):
    """Every vendor profile reads back something there; the measurements decide."""
    with InverterSimulator("sma", answer_any=True) as sim:
        found = scan(f"127.0.0.1:{sim.port}", units=(3,), timeout=0.5)
        assert len(found) > 3  # many profiles read back "something" ...
        best, *others = found
        assert best.profile == "sma" and all(best.score > o.score for o in others)  # ... one is plausible
        assert any(e.startswith("grid_frequency_hz at 30803 = ") and e.endswith(", plausible") for e in best.evidence)  # the register that decided
        assert all(any("outside" in e or "not text" in e for e in o.evidence) for o in others)  # and each other one says what ruled it out
        assert main(["scan", f"127.0.0.1:{sim.port}", "--units", "3"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split(": ", 1)[1].startswith("best sma (candidate, score")
    assert all(" " <= c <= "~" for line in lines for c in line)  # junk registers never reach the terminal raw


def test_scan_rejects_bad_targets_precisely(capsys):
    assert parse_target("10.0.0.0/30") == (["10.0.0.1", "10.0.0.2"], 502)
    assert parse_target("host:1502") == (["host"], 1502)
    with pytest.raises(ValueError, match="scan at most 256"):
        parse_target("10.0.0.0/16")
    with pytest.raises(ValueError, match="bad port"):
        parse_target("host:99999")
    assert main(["scan", "10.0.0.0/8"]) == 2
    assert "at most 256" in capsys.readouterr().err


def test_scan_of_a_range_covers_every_host():
    # 127.0.0.0/29: six loopback hosts; a simulator listens on one of them only.
    with InverterSimulator("huawei_sun2000", host="127.0.0.3") as sim:
        found = scan(f"127.0.0.0/29:{sim.port}", units=(1,), timeout=0.3, concurrency=4)
    assert [(f.host, f.profile) for f in found] == [("127.0.0.3", "huawei_sun2000")]


def test_simulator_runs_as_a_module_and_serves_modbus():
    proc = subprocess.Popen([sys.executable, "-m", "simulators.inverter", "--profile", "solaredge", "--port", "0", "--units", "1,2"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        listening = json.loads(proc.stdout.readline())["listening"]
        assert listening["profile"] == "solaredge" and listening["units"] == [1, 2]
        found = wait_until(lambda: scan(f"127.0.0.1:{listening['port']}", units=(1, 2), timeout=0.5), what="scan finds the simulator")
        assert {(f.unit_id, f.profile) for f in found} == {(1, "solaredge"), (2, "solaredge")}
    finally:
        proc.terminate()
        assert proc.wait(10) == 0


def test_simulator_module_rejects_an_unknown_profile():
    result = subprocess.run([sys.executable, "-m", "simulators.inverter", "--profile", "acme", "--port", "0"], cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert "acme.toml: profile: no such profile" in result.stderr


def test_demo_site_devices_are_valid_and_answer():
    from actors.device.poller import EndpointPoller
    from actors.device.link import ModbusLink
    from actors.device.specs import device_child_specs
    from simulators.inverter.demo import start_demo_site

    sims, devices = start_demo_site()
    try:
        specs = device_child_specs(devices)
        assert [s.name for s in specs] == ["sunspec-1", "huawei-1+huawei-2", "eastron-1"]
        for spec in specs:
            group = spec.config["devices"] if "devices" in spec.config else [spec.config]
            poller = EndpointPoller(group, ModbusLink(group[0]))
            try:
                outcomes = poller.run_due()
            finally:
                poller.link.close()
            assert [o.error for o in outcomes] == [None] * len(group)
            assert all(o.reading.values for o in outcomes)
    finally:
        for sim in sims:
            sim.stop()
