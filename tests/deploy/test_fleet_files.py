"""The balena deployment: the three files say what a fleet needs, and the image's command works.

There is no Docker engine here, so the files are parsed and checked for the properties
that matter in the field, and the container's command runs in a plain virtualenv with
the same environment variables the image and the compose file set.
"""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import urllib.request
from pathlib import Path

import yaml

from supervisor.config import ENV_PREFIX, SETTINGS, settings_table
from tests.conftest import ROOT, free_port, wait_until

SETTING_VARS = {ENV_PREFIX + s.key.upper() for s in SETTINGS}
ACTOR_PORT_DEFAULT = next(s.default for s in SETTINGS if s.key == "actor_port")


def dockerfile() -> list[tuple[str, str]]:
    """(instruction, arguments) pairs, continuation lines joined, comments dropped."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    out = []
    for line in text.splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            instruction, _, args = line.partition(" ")
            out.append((instruction.upper(), " ".join(args.split())))
    return out


def instructions(name: str) -> list[str]:
    return [args for instruction, args in dockerfile() if instruction == name]


def image_env() -> dict[str, str]:
    env = {}
    for args in instructions("ENV"):
        for pair in shlex.split(args):
            key, _, value = pair.partition("=")
            env[key] = value
    return env


def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def balena() -> dict:
    return yaml.safe_load((ROOT / "balena.yml").read_text())


def test_dockerfile_builds_a_slim_multiarch_python_311_image_the_way_make_installs():
    base = instructions("FROM")
    assert len(base) == 1 and base[0].startswith("python:3.11-slim"), "one stage on the official multi-arch slim image"
    assert any("make install" in run for run in instructions("RUN"))
    assert "install:" in (ROOT / "Makefile").read_text()
    assert instructions("VOLUME") == ["/data"]
    assert image_env()["EGW_DATA_DIR"] == "/data"


def test_dockerfile_runs_egw_run_and_checks_api_health():
    cmd = json.loads(instructions("CMD")[0])
    assert cmd[1:] == ["run"]
    assert cmd[0].endswith("/egw")
    healthcheck = instructions("HEALTHCHECK")[0]
    assert "/api/health" in healthcheck and "--interval" in healthcheck
    assert instructions("STOPSIGNAL") == ["SIGTERM"]


def test_dockerfile_exposes_only_rest_and_ocpp():
    exposed = {int(p) for args in instructions("EXPOSE") for p in args.split()}
    assert exposed == {8080, 9000}


def test_compose_service_has_ports_volume_restart_and_dbus_for_ble_and_wifi():
    services = compose()["services"]
    assert list(services) == ["gateway"]
    gateway = services["gateway"]
    assert gateway["restart"] == "always"
    published = sorted(int(p.split(":")[-1]) for p in gateway["ports"])
    assert published == [8080, 9000]
    assert any(v.split(":")[1] == "/data" for v in gateway["volumes"])
    assert gateway["volumes"][0].split(":")[0] in compose()["volumes"]
    assert str(gateway["labels"]["io.balena.features.dbus"]) == "1"
    assert gateway["environment"]["DBUS_SYSTEM_BUS_ADDRESS"] == "unix:path=/host/run/dbus/system_bus_socket"
    assert "network_mode" not in gateway and "privileged" not in gateway


def test_nothing_exposes_the_actor_systems_ports():
    gateway = compose()["services"]["gateway"]
    ports = {int(part) for p in gateway.get("ports", []) for part in str(p).split(":")}
    assert ACTOR_PORT_DEFAULT not in ports
    assert "EGW_ACTOR_PORT" not in gateway.get("environment", {})
    assert str(ACTOR_PORT_DEFAULT) not in " ".join(instructions("EXPOSE"))


def test_balena_yml_names_the_application_devices_and_fleet_variables():
    meta = balena()
    assert meta["type"] == "sw.application" and meta["name"] and meta["version"] and meta["description"]
    data = meta["data"]
    assert data["defaultDeviceType"] == "raspberrypi4-64"
    assert "raspberrypi4-64" in data["supportedDeviceTypes"] and "generic-amd64" in data["supportedDeviceTypes"]
    variables = {k: v for entry in data["applicationEnvironmentVariables"] for k, v in entry.items()}
    assert variables and set(variables) <= SETTING_VARS, f"unknown variables: {set(variables) - SETTING_VARS}"


def test_every_environment_variable_the_files_set_is_a_gateway_setting():
    names = set(image_env()) | set(compose()["services"]["gateway"]["environment"])
    egw = {n for n in names if n.startswith(ENV_PREFIX)}
    assert egw <= SETTING_VARS


def test_readme_lists_every_setting_with_its_default():
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme, "README's settings table is out of date: regenerate with `egw config --table`"
    assert "## Deploy to a fleet" in readme


def test_the_containers_command_with_its_environment_serves_api_health(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)}
    env.update(image_env())
    env.update({k: str(v) for k, v in compose()["services"]["gateway"]["environment"].items() if k.startswith(ENV_PREFIX)})
    for entry in balena()["data"]["applicationEnvironmentVariables"]:
        env.update({k: str(v) for k, v in entry.items()})
    # the same command in a plain virtualenv; only paths and ports differ from the image
    api_port = free_port()
    env.update(EGW_DATA_DIR=str(tmp_path / "data"), EGW_API_PORT=str(api_port), EGW_OCPP_PORT=str(free_port()), EGW_ACTOR_PORT=str(free_port()), EGW_BLE_ENABLED="false", PYTHONPATH=str(ROOT))
    cmd = json.loads(instructions("CMD")[0])
    egw = Path(sys.executable).parent / Path(cmd[0]).name
    proc = subprocess.Popen([str(egw), *cmd[1:]], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:

        def healthy() -> dict | None:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{api_port}/api/health", timeout=2) as response:
                    return json.loads(response.read()) if response.status == 200 else None
            except OSError:
                return None

        health = wait_until(healthy, timeout=60, interval=0.2, what="/api/health")
        assert health["status"] in ("ok", "degraded")
        assert (tmp_path / "data").is_dir()
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=15) == 0


def test_the_serial_mapping_the_readme_describes_is_in_compose_and_matches_the_device_example():
    """Following the README's "Serial meters" steps gives a valid service and a valid device."""
    import json
    import re

    from actors.device.specs import validate_device

    text = (ROOT / "docker-compose.yml").read_text()
    block = re.search(r"^    # devices:\n((?:    #   - .*\n)+)", text, re.M)
    assert block, "docker-compose.yml has no commented serial devices block"
    uncommented = text.replace(block.group(0), "    devices:\n" + block.group(1).replace("    #   -", "      -"))
    service = yaml.safe_load(uncommented)["services"]["gateway"]
    [mapping] = service["devices"]
    host_path, container_path = mapping.split(":")
    assert host_path.startswith("/dev/") and container_path.startswith("/dev/")
    readme = (ROOT / "README.md").read_text()
    example = re.search(r"balena env add EGW_DEVICES '(\[\{[^']*serial_port[^']*\}\])'", readme)
    assert example, "README shows no serial device for a fleet"
    [device] = json.loads(example.group(1))
    assert device["serial_port"] == container_path  # the path inside the container is the one mapped
    validate_device(device)
