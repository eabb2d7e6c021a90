"""No upload setting, however it got stored, takes the gateway down with it."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from actors.harvest.uplink import url_problem
from storage import registry
from storage.db import database_path
from tests.api.test_actor import http, http_ok
from tests.conftest import EGW, wait_until


def test_broken_upload_urls_are_refused_with_what_is_wrong():
    assert "bracket '[' is not closed" in url_problem("http://[x")
    assert "missing host" in url_problem("http:///v1")
    assert "scheme" in url_problem("ftp://ingest.example.net/")
    assert "bad port" in url_problem("https://ingest.example.net:99999/")
    assert "secret" not in url_problem("http://u:secret@[x")  # unquoted: a transport's error never shows the password
    assert url_problem("https://fleet:secret@ingest.example.net:8443/v1/batches?site=7") is None


def _walk(records, prefix=""):
    for record in records:
        yield prefix + record["name"], record
        yield from _walk(record.get("children", []), prefix + record["name"] + "/")


def test_a_stored_upload_url_that_cannot_work_parks_that_transport_and_the_rest_runs(tmp_path: Path, gateway_env: dict[str, str]):
    """An older version stored `http://[x` from a PUT; on every start its transport fails.
    The gateway must keep running: the transport parked as failed, everything else up."""
    config = tmp_path / "gateway.toml"
    config.write_text('[[uploads]]\nname = "fleet"\nurl = "http://127.0.0.1:9/v1/batches"\n')
    data = Path(gateway_env["EGW_DATA_DIR"])
    registry.record_transport(database_path({"data_dir": str(data)}), "fleet", {"url": "http://[x"})
    port = int(gateway_env["EGW_API_PORT"])
    with (tmp_path / "gateway.log").open("wb") as log:
        proc = subprocess.Popen([*EGW, "run", "--config", str(config)], env=gateway_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: proc.poll() is None and http_ok(port, "/api/health"), timeout=30, what="the gateway's API")

            def parked():
                status, _, body = http(port, "/api/actors")
                nodes = dict(_walk(body["actors"])) if status == 200 else {}
                fleet = nodes.get("transports/fleet")
                return fleet if fleet and fleet["state"] == "failed" else None

            fleet = wait_until(parked, timeout=60, what="the broken transport parked as failed")
            assert proc.poll() is None, "the gateway exited"
            nodes = dict(_walk(http(port, "/api/actors")[2]["actors"]))
            assert all(nodes[name]["state"] == "running" for name in ("harvest", "api", "ocpp", "chargers")), {n: nodes[n]["state"] for n in nodes}
            status, _, health = http(port, "/api/health")
            assert "fleet" in json.dumps(health)  # the failed part is named where an installer looks
            assert fleet["restarts"] >= 1
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    assert proc.returncode == 0


def test_a_stored_device_that_is_no_longer_valid_is_parked_and_the_rest_runs(tmp_path: Path, gateway_env: dict[str, str]):
    """A device added over REST by an older version, with a profile this one does not have."""
    config = tmp_path / "gateway.toml"
    config.write_text("")
    data = Path(gateway_env["EGW_DATA_DIR"])
    registry.record_added(database_path({"data_dir": str(data)}), {"id": "old-inverter", "profile": "no_such_profile", "host": "127.0.0.1", "port": 9})
    port = int(gateway_env["EGW_API_PORT"])
    with (tmp_path / "gateway.log").open("wb") as log:
        proc = subprocess.Popen([*EGW, "run", "--config", str(config)], env=gateway_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: proc.poll() is None and http_ok(port, "/api/health"), timeout=30, what="the gateway's API")

            def parked():
                status, _, body = http(port, "/api/actors")
                node = dict(_walk(body["actors"])).get("devices/old-inverter") if status == 200 else None
                return node if node and node["state"] == "failed" else None

            wait_until(parked, timeout=60, what="the broken device parked as failed")
            nodes = dict(_walk(http(port, "/api/actors")[2]["actors"]))
            assert all(nodes[name]["state"] == "running" for name in ("harvest", "api", "ocpp", "devices")), {n: nodes[n]["state"] for n in nodes}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    assert proc.returncode == 0
