"""The loadpoint endpoints over the real app and a real SQLite store (the in-memory gateway backend).

What a user of the web page sees: the configured loadpoints with the energy manager's
latest decision and its reason, a mode change stored (it outlives restarts) and
answered, pv refused with a clear error where no surplus can be measured, bad bodies
refused without changing anything.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from actors.api.app import build_app
from storage import loadpoints as store
from storage.db import connect
from tests.api.conftest import TOKEN, MemoryBackend, ServedApp

LOADPOINTS = [
    {"id": "garage", "charger": "CP-1", "grid_meter": "meter1", "pv": ["inv1"], "phases": "switchable"},
    {"id": "street", "charger": "CP-2", "mode": "now"},  # no grid meter, no measured loads: pv and minpv are refused
]
DECISION = {"limit_a": 8.0, "phases": 1, "enabled": True, "managed": True, "reason": "surplus 1900 W on 1 phase: 8 A", "surplus_w": 1900.0,
            "fuse_limit_a": None, "timers": {"enable_wh": 0.0}, "at": 1795766400.0}


class LoadpointBackend(MemoryBackend):
    def __init__(self, db_path: Path) -> None:
        super().__init__()
        self.db_path = db_path
        self.config_data["loadpoints"] = LOADPOINTS
        self.energy_running = True

    async def tree(self) -> list[dict[str, Any]]:
        records = await super().tree()
        if self.energy_running:
            records.append({"name": "energy", "path": "energy", "kind": "worker", "pid": 900, "state": "running", "restarts": 0, "last_error": None,
                            "since": 1795766400.0, "info": {"loadpoints": {"garage": {"id": "garage", "mode": "pv", "mode_source": "config", "decision": DECISION,
                                                                                      "starts": 1, "stops": 0, "accepted": True}}}})
        return records


@pytest.fixture
def served(tmp_path: Path):
    backend = LoadpointBackend(tmp_path / "egw.db")
    with ServedApp(build_app(backend, token=TOKEN, backend_timeout=1.0, command_timeout=2.0)) as server:
        yield server, backend


def request(server: ServedApp, method: str, path: str, body: Any = None, token: str | None = TOKEN) -> tuple[int, dict]:
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", **({"Authorization": f"Bearer {token}"} if token else {})}
    try:
        with urllib.request.urlopen(urllib.request.Request(server.url + path, data=data, method=method, headers=headers), timeout=10) as answer:
            return answer.status, json.loads(answer.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def test_the_list_shows_each_configured_loadpoint_with_the_decision_and_why(served):
    server, _ = served
    status, body = request(server, "GET", "/api/loadpoints")
    assert status == 200
    garage, street = body["loadpoints"]
    assert garage["id"] == "garage" and garage["state"] == "running" and garage["mode"] == "pv"
    assert garage["decision"]["limit_a"] == 8.0 and garage["decision"]["reason"] == "surplus 1900 W on 1 phase: 8 A"
    assert garage["surplus_source"] == "grid" and garage["phases_config"] == "switchable"
    assert street["state"] == "not running" and street["decision"] is None and street["surplus_source"] is None
    status, one = request(server, "GET", "/api/loadpoints/garage")
    assert status == 200 and one == garage
    status, missing = request(server, "GET", "/api/loadpoints/nope")
    assert status == 404 and missing["field"] == "path.id"


def test_a_mode_change_is_stored_and_survives_the_energy_actor_being_away(served):
    server, backend = served
    backend.energy_running = False  # restarting: the mode is stored, and taken when it starts
    status, body = request(server, "PUT", "/api/loadpoints/garage/mode", {"mode": "now"})
    assert status == 200
    assert body["mode"] == "now" and body["applied"] is False and body["loadpoint"]["mode"] == "now" and body["loadpoint"]["mode_source"] == "rest"
    conn = connect(backend.db_path)
    assert store.modes(conn) == {"garage": "now"}
    conn.close()
    status, body = request(server, "GET", "/api/loadpoints/garage")
    assert body["mode"] == "now" and body["mode_source"] == "rest"


def test_pv_is_refused_where_no_surplus_can_be_measured_and_bad_bodies_change_nothing(served):
    server, backend = served
    status, body = request(server, "PUT", "/api/loadpoints/street/mode", {"mode": "pv"})
    assert status == 409 and body["error"] == "mode_unavailable" and body["field"] == "mode"
    assert "grid_meter" in body["message"] and "loads" in body["message"]
    for bad in ({"mode": "turbo"}, {}, {"mode": "pv", "extra": 1}, ["pv"]):
        status, body = request(server, "PUT", "/api/loadpoints/garage/mode", bad)
        assert status == 400, bad
    status, body = request(server, "PUT", "/api/loadpoints/garage/mode", {"mode": "off"}, token=None)
    assert status == 401
    status, body = request(server, "PUT", "/api/loadpoints/nope/mode", {"mode": "off"})
    assert status == 404
    assert not backend.db_path.exists() or store.modes(connect(backend.db_path)) == {}


def test_egw_status_shows_the_loadpoints(served):
    import argparse
    import io

    from actors.api import cli

    server, _ = served
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    out = io.StringIO()
    cli.run(parser.parse_args(["--url", server.url]), stdout=out, stderr=io.StringIO())
    lines = out.getvalue().splitlines()
    at = lines.index("Loadpoints")
    assert lines[at + 1].split()[:4] == ["ID", "CHARGER", "MODE", "LIMIT"]
    garage = next(line for line in lines[at:] if line.startswith("garage "))
    assert "CP-1/1" in garage and " pv " in garage and "surplus 1900 W on 1 phase: 8 A" in garage
    assert any(line.startswith("street ") and "not running" in line for line in lines[at:])
