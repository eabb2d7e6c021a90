"""The API of a real `egw run` process: simulated inverter, the whole tree, the CLI, SIGKILL."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from storage.api_token import read_token, token_path
from simulators.inverter import InverterSimulator
from tests.api.test_actor import http, http_ok
from tests.conftest import EGW, wait_until


@pytest.fixture
def running_gateway(tmp_path: Path, gateway_env: dict[str, str]):
    with InverterSimulator("huawei_sun2000") as sim:
        device = {"id": "inv1", "profile": sim.profile_name, "host": "127.0.0.1", "port": sim.port, "unit_id": next(iter(sim.units)), "poll_interval": 0.5}
        config = tmp_path / "gateway.toml"
        config.write_text("[[devices]]\n" + "".join(f"{k} = {json.dumps(v)}\n" for k, v in device.items()))
        log = (tmp_path / "gateway.log").open("wb")
        proc = subprocess.Popen([*EGW, "run", "--config", str(config)], env=gateway_env, stdout=log, stderr=subprocess.STDOUT)
        port = int(gateway_env["EGW_API_PORT"])
        try:
            wait_until(lambda: proc.poll() is None and http_ok(port, "/api/health"), timeout=30, what="the gateway's API")
            yield proc, port, gateway_env, sim
        finally:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(5)
            log.close()


def actor_pids(port: int, timeout: float = 5.0) -> dict[str, int | None]:
    def walk(records, out):
        for record in records:
            out[record["path"]] = record["pid"]
            walk(record.get("children", []), out)
        return out

    status, _, body = http(port, "/api/actors", timeout=timeout)
    assert status == 200
    return walk(body["actors"], {})


def test_a_running_gateway_answers_about_its_devices_and_the_cli_reads_it(running_gateway):
    proc, port, env, sim = running_gateway
    expected = {"harvest", "transports", "devices", "devices/inv1", "chargers", "ocpp", "api"}
    wait_until(lambda: expected <= set(actor_pids(port)), timeout=15, what="the whole tree")
    device = wait_until(lambda: (d := http(port, "/api/devices/inv1")[2]).get("online") and d.get("values") and d, timeout=15, what="inv1 polled")
    assert device["serial"] == next(iter(sim.units.values())).serial
    outbox = wait_until(lambda: (o := http(port, "/api/outbox")[2])["available"] and o["pending_items"] and o, timeout=15, what="readings committed")
    assert outbox["bytes"] > 0

    status = subprocess.run([*EGW, "status"], env=env, capture_output=True, text=True, timeout=30)
    assert status.returncode in (0, 1), status.stderr
    assert "Devices" in status.stdout and any(line.startswith("inv1 ") for line in status.stdout.splitlines())
    as_json = subprocess.run([*EGW, "status", "--json"], env=env, capture_output=True, text=True, timeout=30)
    assert [d["id"] for d in json.loads(as_json.stdout)["devices"]["devices"]] == ["inv1"]

    token = subprocess.run([*EGW, "token"], env=env, capture_output=True, text=True, timeout=30)
    assert token.returncode == 0
    assert token.stdout.strip() == read_token(token_path(env["EGW_DATA_DIR"]))
    assert http(port, "/api/chargers/CP-1/reset", "POST", {"type": "Soft"})[0] == 401
    assert http(port, "/api/chargers/CP-1/reset", "POST", {"type": "Soft"}, token=token.stdout.strip())[0] == 404


def test_sigkill_of_the_api_actor_in_a_running_gateway(running_gateway):
    proc, port, _, _ = running_gateway
    expected = {"harvest", "transports", "devices", "devices/inv1", "chargers", "ocpp", "api"}
    before = wait_until(lambda: (pids := actor_pids(port)).keys() >= expected and all(pids.values()) and pids, timeout=15, what="every actor running")
    uptime_before = http(port, "/api/uptime")[2]["msek"]
    killed_at = time.monotonic()
    os.kill(before["api"], signal.SIGKILL)

    def serving_again():
        try:
            pids = actor_pids(port, timeout=0.5)  # short: one stuck request must not eat the 2 s budget
        except (OSError, AssertionError):
            return None
        return pids if pids.get("api") not in (None, before["api"]) else None

    after = wait_until(serving_again, timeout=2.0, interval=0.02, what="the API serving again")
    elapsed = time.monotonic() - killed_at
    changed = {k: (before.get(k), v) for k, v in after.items() if k != "api" and before.get(k) != v}
    assert not changed, f"other actors restarted too: {changed}"
    assert proc.poll() is None
    assert elapsed < 2.0
    assert http(port, "/api/uptime")[2]["msek"] >= uptime_before  # the gateway's uptime, not the API process's


def test_a_device_added_over_rest_is_still_polled_after_the_gateway_restarts(tmp_path, running_gateway):
    proc, port, env, _ = running_gateway
    token = read_token(token_path(env["EGW_DATA_DIR"]))
    with InverterSimulator("sunspec") as second:
        added = {"id": "roof2", "profile": "sunspec", "host": "127.0.0.1", "port": second.port, "unit_id": next(iter(second.units)), "poll_interval": 0.5}
        assert http(port, "/api/devices", "POST", added, token=token)[0] == 201
        wait_until(lambda: http(port, "/api/devices/roof2")[2].get("online"), timeout=15, what="roof2 polled")

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
        config = tmp_path / "gateway.toml"  # the same file: it does not list roof2
        assert "roof2" not in config.read_text()
        again = subprocess.Popen([*EGW, "run", "--config", str(config)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            device = wait_until(lambda: http_ok(port, "/api/health") and (d := http(port, "/api/devices/roof2")[2]).get("online") and d, timeout=30, what="roof2 polled after restart")
            assert device["serial"] == next(iter(second.units.values())).serial
        finally:
            again.send_signal(signal.SIGTERM)
            assert again.wait(15) == 0
