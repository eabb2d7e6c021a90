"""Hardware absent by design is reported in /api/health, never counted as degradation.

A gateway on a machine without Bluetooth, or configured without BLE or Wi-Fi
provisioning, is healthy: `/api/health` says "ok", names each such part under
`hardware` with its reason, and `egw status` exits 0.
"""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.api.test_actor import http, http_ok
from tests.conftest import EGW, wait_until


@contextmanager
def gateway(tmp_path: Path, env: dict[str, str]) -> Iterator[int]:
    log = (tmp_path / "gateway.log").open("wb")
    proc = subprocess.Popen([*EGW, "run"], env=env, stdout=log, stderr=subprocess.STDOUT)
    port = int(env["EGW_API_PORT"])
    try:
        wait_until(lambda: proc.poll() is None and http_ok(port, "/api/health"), timeout=30, what="the gateway's API")
        yield port
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
        log.close()


def states(port: int) -> dict[str, str]:
    """Each actor's state by tree path (from /api/actors)."""

    def walk(records: list[dict], out: dict[str, str]) -> dict[str, str]:
        for record in records:
            out[record["path"]] = record["state"]
            walk(record.get("children", []), out)
        return out

    return walk(http(port, "/api/actors")[2]["actors"], {})


def settled(port: int) -> bool:
    """BLE has found no BlueZ and every other actor is up (a part still starting is degradation too)."""
    current = states(port)
    return current.get("ble") == "unavailable" and all(state in ("running", "online", "idle") for path, state in current.items() if path != "ble")


def egw_status(env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*EGW, "status"], env=env, capture_output=True, text=True, timeout=30)


def test_no_bluetooth_adapter_is_reported_unavailable_and_the_gateway_is_healthy(tmp_path, gateway_env):
    # BLE enabled, but no BlueZ to reach (a bus address nothing listens on): what a machine without Bluetooth offers
    env = dict(gateway_env, EGW_BLE_ENABLED="true", EGW_BLE_DBUS_ADDRESS=f"unix:path={tmp_path / 'no-bluez'}", EGW_WIFI_BACKEND="none")
    with gateway(tmp_path, env) as port:
        wait_until(lambda: settled(port), timeout=30, what="the BLE actor reporting no BlueZ and the rest of the tree up")
        status, _, health = http(port, "/api/health")
        assert status == 200
        assert health["status"] == "ok" and health["reasons"] == []
        ble = health["hardware"]["ble"]
        assert ble["state"] == "unavailable" and ble["adapter"] == "hci0" and ble["reason"]
        assert health["hardware"]["wifi"] == {"state": "absent", "reason": "no Wi-Fi provisioning by configuration (wifi_backend = none)"}
        result = egw_status(env)
        assert result.returncode == 0, result.stdout + result.stderr
        assert "status: ok" in result.stdout


def test_ble_disabled_by_configuration_is_reported_absent(tmp_path, gateway_env):
    with gateway(tmp_path, gateway_env) as port:
        wait_until(lambda: http(port, "/api/health")[2]["status"] == "ok", timeout=30, what="a healthy gateway")
        health = http(port, "/api/health")[2]
        assert health["hardware"]["ble"] == {"state": "absent", "reason": "disabled by configuration (ble_enabled = false)"}


@pytest.mark.parametrize(("state", "absent"), [("unavailable", True), ("failed", False), ("hung", False)])
def test_only_missing_hardware_is_excused(state, absent):
    """A BLE actor that failed or hung is still degradation; only "no hardware" is not."""
    from actors.api.hardware import is_absent_hardware

    assert is_absent_hardware({"name": "ble", "path": "ble", "state": state}) is absent
    assert not is_absent_hardware({"name": "inv1", "path": "devices/inv1", "state": "unavailable"})
