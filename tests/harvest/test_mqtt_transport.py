"""The MQTT transport in the gateway: its settings, and the real transport actor SIGKILLed mid-stream.

The actor test runs the harvest family as the gateway does (harvest, the transports
supervisor with one `kind = "mqtt"` transport, a simulated poller) against a real
mosquitto and a real `egw ingest serve` worker on PostgreSQL.
"""

from __future__ import annotations

import dataclasses
import json
import os
import signal
from types import SimpleNamespace

from actors.harvest.specs import config_problems, harvest_child_specs
from storage.identity import load_or_create_signer
from supervisor.embedded import ask_typed, start_root
from supervisor.messages import Lookup, LookupResult
from supervisor.spec import ChildSpec, Heartbeat, SupervisorSpec
from tests.conftest import wait_until
from tests.fleet.conftest import broker, dsn, fleet_db, pg_server, register, workers  # noqa: F401 - fixtures
from tests.harvest.poller_actor import GetPollerStats, PollerStats, StopProducing
from tests.harvest.test_sigkill import FAST, MANY, NEVER_PARK, pid_of

DEVICES = ["inv1", "inv2", "meter1"]


def _problems(entry: dict, gateway_id: str = "") -> list[str]:
    return [problem for _key, problem in config_problems({"uploads": [entry], "upload_batch_max": 1000, "upload_batch_max_kb": 512, "gateway_id": gateway_id})]


def test_mqtt_upload_settings_are_checked_with_what_is_wrong(tmp_path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    assert _problems({"name": "fleet", "kind": "mqtt", "url": "mqtts://gw:secret@broker.example.net:8883", "tls_ca": str(ca), "mqtt_version": "3.1.1"}) == []
    assert _problems({"name": "fleet", "kind": "mqtt", "url": "mqtt://broker.example.net"}) == []
    assert _problems({"name": "fleet", "kind": "mqtt", "url": "https://broker.example.net/v1/batches"}) == [
        "uploads[0].url: scheme must be mqtt or mqtts for kind 'mqtt', got 'https' in 'https://broker.example.net/v1/batches' (expected mqtt(s)://[user:password@]host[:port])"
    ]
    assert _problems({"name": "fleet", "kind": "mqtt", "url": "mqtt://broker/egw"}) == [
        "uploads[0].url: must be just the broker, no path, query or #fragment (the topics come from topic_prefix), got 'mqtt://broker/egw'"
    ]
    (problem,) = _problems({"name": "fleet", "kind": "mqtt", "url": "mqtt://broker", "topic_prefix": "egw/#", "mqtt_version": "4", "tls_ca": str(ca)})
    assert "topic_prefix 'egw/#' must not contain the MQTT wildcards" in problem
    assert "mqtt_version must be one of 5, 3.1.1, got '4'" in problem
    assert "tls_ca is set but the url is not mqtts:// (TLS is off)" in problem
    (problem,) = _problems({"name": "fleet", "kind": "mqtt", "url": "mqtts://u:hunter2@broker", "tls_cert": str(tmp_path / "missing.pem")})
    assert f"tls_cert: no such file {str(tmp_path / 'missing.pem')!r}" in problem and "hunter2" not in problem
    assert _problems({"name": "fleet", "kind": "carrier-pigeon", "url": "http://x/"}) == ["uploads[0]: transport 'fleet': kind must be 'http' or 'mqtt', got 'carrier-pigeon'"]
    assert _problems({"name": "fleet", "kind": "mqtt", "url": "mqtt://broker", "topic_prefx": "x"})[0].startswith("uploads[0].topic_prefx: unknown setting (did you mean topic_prefix?)")
    assert _problems({"name": "fleet", "kind": "mqtt", "url": "mqtt://broker"}, gateway_id="site/7") == [
        "uploads[0]: gateway_id: gateway id 'site/7' must not contain '/' (it is a level of the MQTT topics)"
    ]
    assert _problems({"name": "fleet", "url": "https://ingest.example.net/v1/batches"}, gateway_id="site/7") == []  # over HTTP any id goes


def test_transport_actor_over_mqtt_sigkilled_mid_stream_delivers_every_reading_once(multiproc_system, tmp_path, fleet_db, dsn, broker, workers) -> None:  # noqa: F811
    server, name = fleet_db
    worker = workers(dsn, broker.url)
    signer = load_or_create_signer(tmp_path / "data")
    register(dsn, SimpleNamespace(signer=signer, name="gw-actor"))
    worker.ready()
    asys = multiproc_system
    upload = {"name": "fleet", "kind": "mqtt", "url": broker.url, "max_count": 100, "linger_s": 0.05, "backoff_min_s": 0.05, "backoff_max_s": 0.5, "timeout_s": 2.0}
    harvest, transports = harvest_child_specs({"data_dir": str(tmp_path / "data"), "gateway_id": "gw-actor", "uploads": [upload], "harvest_commit_window_s": 0.05})
    transports = dataclasses.replace(transports, config=dataclasses.replace(transports.config, intensity=MANY, containment=NEVER_PARK, backoff=FAST, heartbeat=Heartbeat(1.0, 5.0)))
    poller = ChildSpec("poller", "tests.harvest.poller_actor.SimulatedPoller", config={"devices": DEVICES, "period_s": 0.02, "resend_s": 0.3})
    root = start_root(asys, SupervisorSpec(children=(harvest, transports, poller), intensity=MANY, containment=NEVER_PARK, backoff=FAST, heartbeat=Heartbeat(1.0, 5.0)))
    wait_until(lambda: pid_of(asys, root, "harvest") and pid_of(asys, root, "transports/fleet") and pid_of(asys, root, "poller"), timeout=30, what="tree running")

    def stored() -> int:
        return server.query(name, "SELECT count(*) AS n FROM fleet_items")[0]["n"]

    for kill in range(4):
        before, pid = stored(), wait_until(lambda: pid_of(asys, root, "transports/fleet"), what="transport running")
        wait_until(lambda b=before: stored() > b, timeout=30, what=f"uploads flowing before kill {kill + 1}")
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda p=pid: (q := pid_of(asys, root, "transports/fleet")) and q != p, timeout=30, what=f"transport restarted after kill {kill + 1}")

    poller_address = ask_typed(asys, root, Lookup("poller"), LookupResult).address
    asys.tell(poller_address, StopProducing())
    stats = wait_until(lambda: (s := ask_typed(asys, poller_address, GetPollerStats(), PollerStats)) and not s.producing and s.unacked == 0 and s, timeout=20, what="harvest has every batch")

    def all_there() -> bool:
        rows = server.query(name, "SELECT stream, max(seq) AS top FROM fleet_items GROUP BY stream")
        return {r["stream"]: r["top"] for r in rows} == {d: stats.produced[d] for d in DEVICES}

    wait_until(all_there, timeout=60, what="every reading at the receiver")
    for device in DEVICES:
        rows = server.query(name, "SELECT seq, body FROM fleet_items WHERE gateway = 'gw-actor' AND stream = $1 ORDER BY seq", device)
        assert [r["seq"] for r in rows] == list(range(1, stats.produced[device] + 1)), device  # each once, none missing
        assert [json.loads(r["body"])["v"]["n"] for r in rows] == list(range(stats.produced[device])), device
    status = worker.get("/v1/status")["gateways"][0]
    assert status["chain_breaks"] == 0 and status["refused"] == 0
    assert {s: v["acked"] for s, v in status["streams"].items()} == {d: stats.produced[d] for d in DEVICES}
