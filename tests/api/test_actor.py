"""The API actor under the real supervisor, in a real multiprocess actor system.

The root supervisor runs the API actor beside a worker and a device supervisor; the
data dir holds real SQLite stores (outbox, chargers, transactions) and a real gateway
key. Requests go over loopback HTTP to the actor's own aiohttp server.
"""

from __future__ import annotations

import json
import os
import signal
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from actors.api.actor import api_child_spec
from actors.device.specs import devices_part
from actors.harvest.specs import harvest_child_specs
from storage.registry import apply_changes, apply_transport_changes
from storage.api_token import read_token, token_path
from storage import chargers as charger_store
from storage import ocpp_transactions
from storage.db import connect
from storage.identity import load_or_create_signer
from supervisor.messages import GetTree, Tree
from simulators.ingest.server import IngestServerThread
from simulators.inverter import InverterSimulator
from supervisor.spec import Backoff, Heartbeat, SupervisorSpec
from tests.api.test_fuzz import fuzz_no_500
from tests.conftest import ask_typed, free_port, wait_until
from supervisor.embedded import start_root

def http(port: int, path: str, method: str = "GET", body: dict | None = None, token: str | None = None, timeout: float = 5.0):
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=data, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, dict(response.headers), json.loads(response.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), json.loads(exc.read() or b"null")


def _populate(data_dir: Path) -> str:
    """Real stores the charger family would have written, and the gateway key."""
    db = data_dir / "egw.db"
    now = time.time()
    conn = connect(db)
    charger_store.init(conn)
    ocpp_transactions.init(conn)
    charger_store.record_boot(conn, "CP-1", vendor="ACME", model="Wallbox", serial_number="W1", firmware_version="1.0", registration_status="Accepted", now=now)
    charger_store.record_status(conn, "CP-1", 1, status="Charging", error_code="NoError", timestamp=now, received=now)
    charger_store.set_connected(conn, "CP-1", False, now)
    first, _ = ocpp_transactions.start_transaction(conn, "CP-1", connector_id=1, id_tag="TAG1", meter_start=1000, start_time=now - 7200, received=now)
    ocpp_transactions.stop_transaction(conn, "CP-1", first, meter_stop=8000, stop_time=now - 3600, reason="Local", received=now)
    ocpp_transactions.start_transaction(conn, "CP-1", connector_id=1, id_tag="TAG2", meter_start=8000, start_time=now - 600, received=now)
    conn.close()
    return load_or_create_signer(data_dir).key_id


def _device(device_id: str, sim: InverterSimulator) -> dict:
    return {"id": device_id, "profile": sim.profile_name, "host": "127.0.0.1", "port": sim.port, "unit_id": next(iter(sim.units)),
            "poll_interval": 0.25, "timeout": 0.5, "backoff_cap": 1.0}


@pytest.fixture
def simulator():
    with InverterSimulator("huawei_sun2000", units=(1, 2)) as sim:  # unit 2: a second device behind the same endpoint
        yield sim


@pytest.fixture
def gateway(multiproc_system, tmp_path, simulator):
    """A gateway subtree as `egw run` builds it: harvest (real outbox), device actors polling the
    inverter simulator over Modbus TCP, and the API; chargers and the key in the data dir."""
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    serial = _populate(data_dir)
    api_port = free_port()
    config = {"data_dir": str(data_dir), "api_host": "127.0.0.1", "api_port": api_port, "gateway_name": "site-7",
              "devices": [_device("inv1", simulator)], "uploads": [{"name": "ingest", "url": f"http://127.0.0.1:{free_port()}/v1/batches", "backoff_max_s": 1.0}],
              "ocpp_tls_key": "secret-key-pem", "wifi_backend": "none"}  # never the host's NetworkManager
    spec = SupervisorSpec(
        children=(*harvest_child_specs(config), *devices_part(config), api_child_spec(config)),
        backoff=Backoff(min_delay=0.01, max_delay=0.2, factor=2.0, jitter=0.1, reset_after=60),
        heartbeat=Heartbeat(0.5, 5.0),
    )
    root = start_root(multiproc_system, spec)
    wait_until(lambda: http_ok(api_port, "/api/hello"), timeout=15, what="the API serving")
    expected = {"harvest", "transports", "transports/ingest", "devices", "devices/inv1", "api"}
    wait_until(lambda: (p := tree_pids(multiproc_system, root)).keys() == expected and all(p.values()), timeout=10, what="every actor running")
    return multiproc_system, root, api_port, data_dir, serial


def http_ok(port: int, path: str) -> bool:
    try:
        return http(port, path, timeout=0.5)[0] == 200
    except OSError:
        return False


def tree_pids(asys, root) -> dict[str, int | None]:
    records = ask_typed(asys, root, GetTree(), Tree).records
    pids = {}
    for record in records:
        pids[record["name"]] = record["pid"]
        for child in record.get("children", []):
            pids[f"{record['name']}/{child['name']}"] = child["pid"]
    return pids


def test_api_actor_answers_from_the_tree_and_the_stores(gateway, simulator):
    asys, root, port, data_dir, serial = gateway
    status, _, body = http(port, "/api/actors")
    assert status == 200
    names = {a["path"]: a for a in body["actors"]}
    assert {"harvest", "transports", "devices", "api"} <= set(names)
    assert [c["path"] for c in names["devices"]["children"]] == ["devices/inv1"]
    assert [c["path"] for c in names["transports"]["children"]] == ["transports/ingest"]
    assert names["api"]["pid"] != os.getpid() and names["api"]["info"]["port"] == port

    def polled() -> dict | None:
        status, _, devices = http(port, "/api/devices")
        device = devices["devices"][0] if status == 200 and devices["devices"] else None
        return device if device and device["online"] and device["values"] else None

    device = wait_until(polled, timeout=10, what="inv1 online with values")
    assert device["id"] == "inv1" and device["serial"] == next(iter(simulator.units.values())).serial
    assert device["model"].startswith("SUN2000")  # read from the identity registers, as scan recognises it
    assert device["connection"] == {"host": "127.0.0.1", "port": simulator.port, "unit_id": next(iter(simulator.units))}
    assert device["values"]["grid_frequency_hz"] == pytest.approx(50.0, abs=0.06)
    assert http(port, "/api/devices/inv1")[2]["serial"] == device["serial"]

    outbox = wait_until(lambda: (o := http(port, "/api/outbox")[2])["available"] and (o["pending_items"] or 0) > 0 and o, timeout=10, what="readings in the outbox")
    assert outbox["oldest_pending"] is not None and outbox["bytes"] > 0

    status, _, chargers = http(port, "/api/chargers")
    assert status == 200
    charger = chargers["chargers"][0]
    assert charger["id"] == "CP-1" and charger["vendor"] == "ACME" and charger["connected"] is False
    assert charger["connectors"][0]["status"] == "Charging"
    assert charger["connectors"][0]["transaction_id"] is not None

    token = read_token(token_path(data_dir))
    assert http(port, "/api/transactions?idTag=TAG2")[0] == 401  # drivers' idTags are not for anyone on the LAN
    status, _, transactions = http(port, "/api/transactions?idTag=TAG2", token=token)
    assert status == 200 and [t["id_tag"] for t in transactions["transactions"]] == ["TAG2"]
    assert http(port, "/api/transactions?charger=CP-1", token=token)[2]["transactions"][1]["energy_wh"] == 7000
    assert http(port, "/api/transactions/999", token=token)[0] == 404

    status, _, crypto = http(port, "/api/crypto")
    assert status == 200 and crypto["serial"] == crypto["serialNumber"] == serial
    assert crypto["deviceName"] == "site-7" and crypto["publicKey"].startswith("04")

    status, _, config = http(port, "/api/config")
    assert status == 200 and config["ocpp_tls_key"] == "***" and config["api_port"] == port

    status, _, health = http(port, "/api/health")
    assert status == 200 and health["version"] and health["uptime_s"] >= 0
    assert stat_mode(token_path(data_dir)) == 0o600

    metrics = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    assert 'egw_device_online{device="inv1"} 1.0' in metrics.splitlines()
    assert 'egw_actor_restarts_total{actor="devices/inv1"} 0.0' in metrics.splitlines()


def stat_mode(path: Path) -> int:
    return path.stat().st_mode & 0o777


def test_charger_commands_need_the_token_and_never_hang_on_an_absent_charger(gateway):
    _, _, port, data_dir, _ = gateway
    token = read_token(token_path(data_dir))
    assert http(port, "/api/chargers/CP-1/reset", "POST", {"type": "Soft"})[0] == 401
    status, headers, body = http(port, "/api/chargers/CP-1/reset", "POST", {"type": "Soft"}, token=token)
    assert status == 503 and int(headers["Retry-After"]) >= 1, body
    assert "not connected" in body["message"]
    assert http(port, "/api/chargers/CP-9/reset", "POST", {"type": "Soft"}, token=token)[0] == 404


def test_devices_added_and_removed_over_the_api_start_and_stop_live_and_are_persisted(gateway, simulator):
    asys, root, port, data_dir, _ = gateway
    token = read_token(token_path(data_dir))
    with InverterSimulator("huawei_sun2000") as second:
        settings = {k: v for k, v in _device("inv2", second).items() if k != "backoff_cap"}
        assert http(port, "/api/devices", "POST", settings)[0] == 401
        status, _, body = http(port, "/api/devices", "POST", {**settings, "unit_id": 999}, token=token)
        assert status == 400 and body["field"] == "unit_id"
        status, _, body = http(port, "/api/devices", "POST", {**settings, "port": simulator.port}, token=token)
        assert status == 409 and "inv1" in body["message"]  # same endpoint as inv1: one connection per endpoint
        status, _, body = http(port, "/api/devices", "POST", settings, token=token)
        assert status == 201, body
        assert http(port, "/api/devices", "POST", settings, token=token)[0] == 409
        wait_until(lambda: (d := http(port, "/api/devices/inv2")[2]).get("online") and d.get("serial") == next(iter(second.units.values())).serial, timeout=10, what="inv2 polled")
        assert [d["id"] for d in apply_changes([{"id": "inv1"}], data_dir / "egw.db")] == ["inv1", "inv2"]
        before = tree_pids(asys, root)

        status, _, body = http(port, "/api/devices/inv2", "DELETE", token=token)
        assert status == 200 and body["status"] == "removed"
        status, _, body = http(port, "/api/devices/inv2", "DELETE", token=token)  # at once, while the tree may still show it
        assert status == 404 and body["error"] == "not_found"
        wait_until(lambda: "devices/inv2" not in tree_pids(asys, root), timeout=10, what="inv2's actor stopped")
        assert http(port, "/api/devices/inv2")[0] == 404
        status, _, body = http(port, "/api/devices/inv1", "DELETE", token=token)  # a configured device
        assert status == 200
        assert apply_changes([{"id": "inv1"}], data_dir / "egw.db") == []
        after = tree_pids(asys, root)
        assert {k: after[k] for k in ("harvest", "devices", "api")} == {k: before[k] for k in ("harvest", "devices", "api")}


def test_sigkilled_api_actor_serves_again_within_2_s_and_no_other_actor_restarts(gateway):
    asys, root, port, _, _ = gateway
    before = tree_pids(asys, root)
    assert all(before.values()), before
    killed_at = time.monotonic()
    os.kill(before["api"], signal.SIGKILL)
    wait_until(lambda: not http_ok(port, "/api/hello") or tree_pids(asys, root)["api"] != before["api"], timeout=2.0, what="the kill to take effect")

    def serving_again() -> bool:
        return http_ok(port, "/api/health") and tree_pids(asys, root)["api"] not in (None, before["api"])

    wait_until(serving_again, timeout=2.0, interval=0.02, what="the API serving again")
    elapsed = time.monotonic() - killed_at
    after = tree_pids(asys, root)
    assert {k: v for k, v in after.items() if k != "api"} == {k: v for k, v in before.items() if k != "api"}
    records = {r["name"]: r for r in ask_typed(asys, root, GetTree(), Tree).records}
    assert records["api"]["restarts"] == 1
    assert records["harvest"]["restarts"] == 0 and records["devices"]["restarts"] == 0
    assert elapsed < 2.0


def test_fuzzing_the_running_gateway_gives_no_500(gateway):
    """The document-driven fuzzer against the real backend (tree, stores, charger lookups).

    Adding devices is left out here: every valid body would fork a device actor polling
    a made-up host; the in-memory fuzz run covers that route's input handling.
    """
    _, _, port, data_dir, _ = gateway
    status, _, document = http(port, "/api/openapi.json")
    assert status == 200
    seen = fuzz_no_500(port, document, max_examples=150, exclude=frozenset({("POST", "/api/devices")}), token=read_token(token_path(data_dir)))
    assert seen[200] > 0 and seen[400] > 0 and seen[503] > 0, seen  # reads answered, bad input named, the absent charger 503


def test_transport_settings_changed_over_the_api_restart_the_transport_and_persist(gateway, tmp_path):
    asys, root, port, data_dir, _ = gateway
    token = read_token(token_path(data_dir))
    before = tree_pids(asys, root)
    assert http(port, "/api/transports/ingest", "PUT", {"timeout_s": 2.0})[0] == 401
    status, _, body = http(port, "/api/transports/ingest", "PUT", {"backoff_min_s": 10.0, "backoff_max_s": 5.0}, token=token)
    assert status == 400 and body["field"] == "backoff_max_s"
    assert http(port, "/api/transports/nope", "PUT", {"timeout_s": 2.0}, token=token)[0] == 404
    with IngestServerThread(tmp_path / "ingest.db") as receiver:
        receiver.call(receiver.app.store.register, load_or_create_signer(data_dir).public_key_pem())
        status, _, body = http(port, "/api/transports/ingest", "PUT", {"url": receiver.url, "timeout_s": 2.0}, token=token)
        assert status == 200, body
        assert body["transport"]["url"] == receiver.url
        wait_until(lambda: tree_pids(asys, root).get("transports/ingest") not in (None, before["transports/ingest"]), timeout=10, what="the transport restarted")
        transport = wait_until(lambda: (t := http(port, "/api/outbox")[2]["transports"][0])["last_success"] and t, timeout=15, what="an upload to the new URL")
        assert transport["url"] == receiver.url
    assert apply_transport_changes([{"name": "ingest", "url": "http://old"}], data_dir / "egw.db") == [{"name": "ingest", "url": receiver.url, "timeout_s": 2.0}]
    after = tree_pids(asys, root)
    assert {k: after[k] for k in ("harvest", "devices/inv1", "api")} == {k: before[k] for k in ("harvest", "devices/inv1", "api")}


def test_a_second_unit_id_on_a_configured_endpoint_is_added_and_removed_over_the_api(gateway, simulator):
    """Two meters behind one RS485-to-TCP gateway: the second joins the first's connection."""
    asys, root, port, data_dir, _ = gateway
    token = read_token(token_path(data_dir))
    wait_until(lambda: "devices/inv1" in tree_pids(asys, root), timeout=10, what="inv1 running")
    settings = {k: v for k, v in _device("inv1b", simulator).items() if k != "backoff_cap"} | {"unit_id": 2}
    status, _, body = http(port, "/api/devices", "POST", settings, token=token)
    assert status == 201, body

    def both_polled():
        devices = {d["id"]: d for d in http(port, "/api/devices")[2]["devices"]}
        return devices if all(devices.get(i, {}).get("online") for i in ("inv1", "inv1b")) else None

    devices = wait_until(both_polled, timeout=15, what="inv1 and inv1b polled over one connection")
    assert devices["inv1b"]["serial"] == simulator.units[2].serial != devices["inv1"]["serial"]
    assert [p for p in tree_pids(asys, root) if p.startswith("devices/")] == ["devices/inv1+inv1b"]

    status, _, body = http(port, "/api/devices", "POST", {**settings, "id": "inv1c"}, token=token)
    assert status == 409 and "inv1b" in body["message"]  # unit 2 is taken on that endpoint

    status, _, body = http(port, "/api/devices/inv1b", "DELETE", token=token)
    assert status == 200, body
    wait_until(lambda: [p for p in tree_pids(asys, root) if p.startswith("devices/")] == ["devices/inv1"], timeout=15, what="inv1 polled alone again")
    wait_until(lambda: http(port, "/api/devices/inv1")[2].get("online"), timeout=15, what="inv1 online")
    assert http(port, "/api/devices/inv1b")[0] == 404
