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


def _parked_while_the_rest_runs(tmp_path: Path, gateway_env: dict[str, str], config_text: str, child: str, others: tuple[str, ...]) -> dict:
    """Run `egw run` until `child` is parked as failed; check `others` run and the gateway
    stops cleanly afterwards. Returns the child's record and the gateway's health."""
    config = tmp_path / "gateway.toml"
    config.write_text(config_text)
    port = int(gateway_env["EGW_API_PORT"])
    with (tmp_path / "gateway.log").open("wb") as log:
        proc = subprocess.Popen([*EGW, "run", "--config", str(config)], env=gateway_env, stdout=log, stderr=subprocess.STDOUT)
        try:
            wait_until(lambda: proc.poll() is None and http_ok(port, "/api/health"), timeout=30, what="the gateway's API")

            def parked():
                status, _, body = http(port, "/api/actors")
                node = dict(_walk(body["actors"])).get(child) if status == 200 else None
                return node if node and node["state"] == "failed" else None

            record = wait_until(parked, timeout=60, what=f"{child} parked as failed")
            assert proc.poll() is None, "the gateway exited"
            # the rest runs: the parts a slow machine is still starting come up, and the parked one stays parked

            def the_rest_running():
                nodes = dict(_walk(http(port, "/api/actors")[2]["actors"]))
                return nodes if all(nodes[name]["state"] == "running" for name in others) else None

            nodes = wait_until(the_rest_running, timeout=30, what=f"{', '.join(others)} running beside the parked {child}")
            assert nodes[child]["state"] == "failed" and proc.poll() is None
            assert {name: nodes[name]["restarts"] for name in others} == dict.fromkeys(others, 0), "a part beside the parked one was restarted"
            health = http(port, "/api/health")[2]
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    assert proc.returncode == 0
    return {"record": record, "health": health}


def test_a_stored_upload_url_that_cannot_work_parks_that_transport_and_the_rest_runs(tmp_path: Path, gateway_env: dict[str, str]):
    """An older version stored `http://[x` from a PUT; on every start its transport fails.
    The gateway must keep running: the transport parked as failed, everything else up."""
    data = Path(gateway_env["EGW_DATA_DIR"])
    registry.record_transport(database_path({"data_dir": str(data)}), "fleet", {"url": "http://[x"})
    seen = _parked_while_the_rest_runs(tmp_path, gateway_env, '[[uploads]]\nname = "fleet"\nurl = "http://127.0.0.1:9/v1/batches"\n',
                                       "transports/fleet", ("harvest", "api", "ocpp", "chargers"))
    assert "fleet" in json.dumps(seen["health"])  # the failed part is named where an installer looks
    assert seen["record"]["restarts"] >= 1


def test_a_stored_device_that_is_no_longer_valid_is_parked_and_the_rest_runs(tmp_path: Path, gateway_env: dict[str, str]):
    """A device added over REST by an older version, with a profile this one does not have."""
    data = Path(gateway_env["EGW_DATA_DIR"])
    registry.record_added(database_path({"data_dir": str(data)}), {"id": "old-inverter", "profile": "no_such_profile", "host": "127.0.0.1", "port": 9})
    _parked_while_the_rest_runs(tmp_path, gateway_env, "", "devices/old-inverter", ("harvest", "api", "ocpp", "devices"))
