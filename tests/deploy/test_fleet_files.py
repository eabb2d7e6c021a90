"""The balena deployment: what a gateway deployed from the three files gets.

There is no Docker engine here, so each test reads the files for what they do, not for
what they say: the environment the container gets goes through `egw config` to the
settings the gateway ends up with, and the ports, the volume and the health check are
checked against those settings, against the API's route table and against the CLI; the
image's command runs from a tree holding only the files the Dockerfile copies; the
container's command and health check run in a plain virtualenv with the container's
environment.
"""

from __future__ import annotations

import ast
import functools
import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import sysconfig
import tomllib
import urllib.request
from pathlib import Path, PurePosixPath

import yaml
from packaging.specifiers import SpecifierSet

from actors.api.routes import ROUTES
from supervisor.config import ENV_PREFIX, settings_table
from tests.conftest import ROOT, free_port, wait_until

EGW_BIN = Path(sys.executable).parent / "egw"


# ------------------------------------------------------------------ reading the files
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


def gateway_service() -> dict:
    return compose()["services"]["gateway"]


def balena() -> dict:
    return yaml.safe_load((ROOT / "balena.yml").read_text())


def pyproject() -> dict:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def container_env() -> dict[str, str]:
    """The variables the gateway process sees in the container: the image's ENV, then the
    service's environment, then the fleet variables balena.yml sets (balena applies them last)."""
    env = dict(image_env())
    env.update({k: str(v) for k, v in gateway_service().get("environment", {}).items()})
    for entry in balena()["data"]["applicationEnvironmentVariables"]:
        env.update({k: str(v) for k, v in entry.items()})
    return env


@functools.cache
def deployed() -> tuple[dict, dict, str]:
    """`egw config` under the container's environment: (values, sources, stderr)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)} | container_env()
    done = subprocess.run([str(EGW_BIN), "config"], env=env, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    document = json.loads(done.stdout)
    return document["values"], document["sources"], done.stderr


def image_volumes() -> list[str]:
    return [v for args in instructions("VOLUME") for v in (json.loads(args) if args.startswith("[") else args.split())]


def published_ports() -> list[tuple[int, int]]:
    """(host port, container port) of each of the service's `ports` entries."""
    out = []
    for entry in gateway_service().get("ports", []):
        parts = str(entry).split("/")[0].split(":")
        out.append((int(parts[-2]) if len(parts) > 1 else int(parts[-1]), int(parts[-1])))
    return out


def healthcheck_command() -> list[str]:
    options, _, command = instructions("HEALTHCHECK")[0].partition("CMD ")
    assert options.startswith("--") or not options, options
    return json.loads(command)


def copies() -> list[tuple[list[str], str]]:
    """The Dockerfile's COPY instructions as (sources, destination relative to WORKDIR)."""
    out = []
    for args in instructions("COPY"):
        *sources, destination = args.split()
        assert not any(s.startswith("--") for s in sources), "COPY options are not modelled here"
        out.append((sources, destination))
    return out


def copied_top_level() -> set[str]:
    return {PurePosixPath(source).parts[0] for sources, _ in copies() for source in sources}


def image_tree(into: Path) -> Path:
    """The image's WORKDIR as the Dockerfile's COPY instructions fill it."""
    [workdir] = instructions("WORKDIR")
    app = into / workdir.lstrip("/")
    app.mkdir(parents=True)
    for sources, destination in copies():
        for source in sources:
            target = app / destination / Path(source).name if destination.endswith("/") else app / destination
            if (ROOT / source).is_dir():
                shutil.copytree(ROOT / source, target, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(ROOT / source, target)
    return app


def first_party_packages() -> set[str]:
    return {p.name for p in ROOT.iterdir() if (p / "__init__.py").is_file()}


def first_party_references(package: Path, first_party: set[str]) -> dict[str, str]:
    """Top-level first-party names a package's modules import, or name as a dotted module path in a
    string (importlib targets, actor classes created by name): {name: a file that does}."""
    found: dict[str, str] = {}
    dotted = re.compile(r"^[a-z_][a-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)+$")
    for path in package.rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            elif isinstance(node, ast.Constant) and isinstance(node.value, str) and dotted.match(node.value):
                names = [node.value]
            for name in names:
                top = name.split(".")[0]
                if top in first_party:
                    found.setdefault(top, str(path.relative_to(ROOT)))
    return found


# ------------------------------------------------------------------------ the image
def test_the_image_runs_a_python_the_project_supports_and_installs_it_the_way_make_install_does():
    [base] = instructions("FROM")
    version = re.match(r"python:(\d+\.\d+)-slim", base)
    assert version, f"one stage on the official multi-arch slim Python image, not {base}"
    assert version.group(1) + ".0" in SpecifierSet(pyproject()["project"]["requires-python"])
    assert any(re.search(r"\bmake install\b", run) for run in instructions("RUN"))
    assert re.search(r"^install:", (ROOT / "Makefile").read_text(), re.M), "the Makefile has no install target"


def test_the_image_holds_every_file_make_install_reads_and_every_package_the_gateway_uses():
    copied = copied_top_level()
    assert {"pyproject.toml", "Makefile", pyproject()["project"]["readme"]} <= copied
    packages = pyproject()["tool"]["setuptools"]["packages"]["find"]["include"]
    first_party = first_party_packages()
    for top in sorted(copied & first_party):
        assert any(re.fullmatch(pattern.replace("*", ".*"), top) for pattern in packages), f"{top} is copied but not installed"
        missing = {name: where for name, where in first_party_references(ROOT / top, first_party).items() if name not in copied}
        assert not missing, f"the image lacks packages its code uses (COPY them): {missing}"


def test_the_images_command_is_the_egw_run_command_and_starts_from_the_files_the_image_copies(tmp_path):
    cmd = json.loads(instructions("CMD")[0])
    [workdir] = instructions("WORKDIR")
    venv = re.search(r"^VENV\s*:?=\s*(\S+)", (ROOT / "Makefile").read_text(), re.M).group(1)
    script = PurePosixPath(cmd[0])
    assert script.parent == PurePosixPath(workdir) / venv / "bin", "the command is not where `make install` puts the scripts"
    entry = pyproject()["project"]["scripts"][script.name]  # KeyError: no such console script
    module, _, function = entry.partition(":")
    # the console script, importing only the image's files (no editable install, no checkout on the path)
    app = image_tree(tmp_path)
    boot = (f"import sys; sys.path[:0] = [{str(app)!r}]; sys.path.append({sysconfig.get_paths()['purelib']!r}); "
            f"from {module} import {function}; sys.exit({function}(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-S", "-c", boot, *cmd[1:], "--help"], cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("usage: egw run"), done.stdout[:300]  # `run` is a command of the CLI, not a typo it refuses


def test_the_healthcheck_asks_an_endpoint_the_api_serves_without_a_token():
    command = " ".join(healthcheck_command())
    [path] = re.findall(r"/api/[A-Za-z0-9_/.-]*", command)
    routes = [r for r in ROUTES if r.method == "GET" and r.path == path]
    assert routes, f"the healthcheck asks {path}, which the API does not serve"
    assert not routes[0].protected  # Docker's probe has no token
    assert "EGW_API_PORT" in command  # it follows the configured port (run below against a gateway on another port)


# ------------------------------------------------------------- what a deployment gets
def test_every_variable_the_deployment_sets_is_a_setting_the_gateway_takes():
    values, sources, stderr = deployed()
    assert "warning" not in stderr, stderr  # a misspelled EGW_* variable is warned about (and ignored)
    for var in (v for v in container_env() if v.startswith(ENV_PREFIX)):
        assert var in sources.values(), f"{var} is not a setting the gateway takes (see `egw config --table`)"


def test_the_service_publishes_exactly_the_ports_the_deployed_gateway_listens_on():
    values, _, _ = deployed()
    listening = {values["api_port"], values["ocpp_port"]}
    assert {container for _, container in published_ports()} == listening
    assert all(host == container for host, container in published_ports())  # chargers are configured with ws://host:9000
    assert {int(p) for args in instructions("EXPOSE") for p in args.split()} == listening
    assert values["api_host"] == values["ocpp_host"] == "0.0.0.0"  # a published port reaches a socket bound to all interfaces


def test_nothing_publishes_the_actor_systems_port():
    values, _, _ = deployed()
    assert values["actor_port"] not in {port for pair in published_ports() for port in pair}
    assert str(values["actor_port"]) not in " ".join(instructions("EXPOSE")).split()
    assert "network_mode" not in gateway_service() and "privileged" not in gateway_service()


def test_the_data_dir_is_on_a_named_volume_that_survives_updates():
    values, _, _ = deployed()
    data_dir = PurePosixPath(values["data_dir"])
    assert data_dir.is_absolute()
    mounts = [str(v).split(":")[:2] for v in gateway_service()["volumes"]]
    covering = [source for source, target in mounts if data_dir.is_relative_to(target)]
    assert covering and covering[0] in (compose().get("volumes") or {}), "the data dir is not on a named volume"
    assert any(data_dir.is_relative_to(v) for v in image_volumes()), "the image declares no volume for the data dir"


def test_the_service_restarts_the_gateway_and_reaches_the_hosts_dbus():
    service = gateway_service()
    assert service["restart"] == "always"  # the gateway exits 1 when its root supervisor gives up, for the container to restart it
    assert str(service["labels"]["io.balena.features.dbus"]) == "1"  # balena mounts the host's D-Bus socket under /host/run/dbus
    address = container_env()["DBUS_SYSTEM_BUS_ADDRESS"]
    assert address.startswith("unix:path=/host/run/dbus/")


def test_balena_yml_names_the_application_and_its_device_types():
    meta = balena()
    assert meta["type"] == "sw.application" and meta["name"] and meta["version"] == pyproject()["project"]["version"] and meta["description"]
    data = meta["data"]
    assert data["defaultDeviceType"] in data["supportedDeviceTypes"]


def test_readme_lists_every_setting_with_its_default():
    readme = (ROOT / "README.md").read_text()
    assert settings_table() in readme, "README's settings table is out of date: regenerate with `egw config --table`"
    assert "## Deploy to a fleet" in readme


def test_the_containers_command_with_its_environment_serves_api_health_and_passes_the_healthcheck(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(ENV_PREFIX)} | container_env()
    # the same command in a plain virtualenv; only paths and ports differ from the image
    api_port = free_port()
    env.update(EGW_DATA_DIR=str(tmp_path / "data"), EGW_API_PORT=str(api_port), EGW_OCPP_PORT=str(free_port()), EGW_ACTOR_PORT=str(free_port()),
               EGW_BLE_ENABLED="false", PYTHONPATH=str(ROOT))
    cmd = json.loads(instructions("CMD")[0])
    egw = Path(sys.executable).parent / Path(cmd[0]).name
    probe = [sys.executable, *healthcheck_command()[1:]]  # the image's python is this virtualenv's
    stop_signal = getattr(signal, instructions("STOPSIGNAL")[0])
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
        assert subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode == 0  # Docker would call it healthy
    finally:
        proc.send_signal(stop_signal)
        assert proc.wait(timeout=15) == 0  # `docker stop` is a clean exit
    assert subprocess.run(probe, env=env, capture_output=True, timeout=30).returncode != 0  # and a stopped gateway unhealthy


def test_the_serial_mapping_the_readme_describes_is_in_compose_and_matches_the_device_example():
    """Following the README's "Serial meters" steps gives a valid service and a valid device."""
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
