"""The receiver's HTTP path, its REST registration, its command line and its schema migrations."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from actors.harvest.signing import build_signed_batch
from storage.identity import load_or_create_signer
from storage.outbox import OutboxItem
from tests.fleet.conftest import register
from tests.fleet.servers import ROOT

STREAMS = ["inv-1", "meter"]


def _post(url: str, body: bytes, headers: dict[str, str] | None = None) -> tuple[int, dict[str, Any]]:
    request = urllib.request.Request(url, data=body, method="POST", headers=headers or {})
    try:
        with urllib.request.urlopen(request, timeout=10) as reply:
            return reply.status, json.loads(reply.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def _egw(*args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EGW_")} | {"PYTHONPATH": str(ROOT)}
    return subprocess.run([sys.executable, "-m", "supervisor.cli", *args], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)


def test_http_and_mqtt_gateways_land_in_the_same_database(fleet_db, dsn, broker, workers, gateways, tmp_path: Path) -> None:
    server, name = fleet_db
    token = tmp_path / "token"
    token.write_text("s3cret-token\n")
    worker = workers(dsn, broker.url, extra=["--token-file", str(token)]).ready()
    over_http = gateways("gw-http", f"{worker.url}/v1/batches", kind="http", max_count=25)
    over_mqtt = gateways("gw-mqtt", broker.url, max_count=25)

    pem = over_http.signer.public_key_pem()
    url = f"{worker.url}/v1/gateways?gateway=gw-http"
    assert _post(url, pem)[0] == 401  # no token, no registration
    assert _post(url, pem, {"Authorization": "Bearer wrong"})[0] == 401
    status, body = _post(url, b"not a key", {"Authorization": "Bearer s3cret-token"})
    assert status == 400 and body["error"].startswith("not a PEM public key")
    assert _post(url, pem, {"Authorization": "Bearer s3cret-token"}) == (201, {"kid": over_http.signer.key_id, "gateway": "gw-http"})
    assert _post(url, pem, {"Authorization": "Bearer s3cret-token"})[0] == 200  # again: already there
    claim = _post(url, over_mqtt.signer.public_key_pem(), {"Authorization": "Bearer s3cret-token"})
    assert claim[0] == 409 and "already registered with another key" in claim[1]["error"]
    register(dsn, over_mqtt)

    for gateway in (over_http, over_mqtt):
        gateway.produce(STREAMS, 50)
        gateway.drain()
    rows = server.query(name, "SELECT gateway, count(*) AS n, count(DISTINCT (stream, seq)) AS d FROM fleet_items GROUP BY gateway ORDER BY gateway")
    assert [(r["gateway"], r["n"], r["d"]) for r in rows] == [("gw-http", 100, 100), ("gw-mqtt", 100, 100)]
    vias = server.query(name, "SELECT gateway, via, count(*) AS n FROM fleet_batches GROUP BY gateway, via ORDER BY gateway")
    assert [(r["gateway"], r["via"], r["n"]) for r in vias] == [("gw-http", "http", 4), ("gw-mqtt", "mqtt", 4)]
    assert worker.metric("egw_ingest_batches_total", via="http", outcome="stored") == 4
    assert worker.metric("egw_ingest_batches_total", via="mqtt", outcome="stored") == 4
    assert worker.metric("egw_ingest_items_stored_total") == 200

    # a forged batch over HTTP: refused with the reason, the same as over MQTT
    stranger = load_or_create_signer(tmp_path / "stranger")
    forged = build_signed_batch(stranger, "gw-http", None, [OutboxItem(1, "inv-1", 999, 999, "reading", 1.0, "{}", 10)])
    status, body = _post(f"{worker.url}/v1/batches", forged.jws.encode())
    assert status == 401 and "unknown gateway key id" in body["error"]
    status, body = _post(f"{worker.url}/v1/batches", b"\xff\xfe")
    assert status == 400 and body["error"] == "body must be a compact JWS (ASCII)"
    # the same signed batch under another text (padding on the signature) would have another hash: refused
    genuine = build_signed_batch(over_http.signer, "gw-http", None, [OutboxItem(1, "inv-1", 1, 1, "reading", 1.0, "{}", 10)])
    status, body = _post(f"{worker.url}/v1/batches", (genuine.jws + "==").encode())
    assert status == 400 and body["error"].startswith("malformed JWS: not base64url")
    assert server.query(name, "SELECT count(*) AS n FROM fleet_items")[0]["n"] == 200
    metrics = worker.get("/metrics")
    assert 'egw_ingest_refused_total{worker="' in metrics and 'reason="unknown_key"} 1' in metrics
    assert "s3cret" not in "\n".join(worker.lines)  # the token never reaches the log


def test_cli_register_migrate_status_and_a_newer_schema_refused(fleet_db, dsn, tmp_path: Path) -> None:
    server, name = fleet_db
    signer = load_or_create_signer(tmp_path / "gw")
    key = tmp_path / "gw.pub.pem"
    key.write_bytes(signer.public_key_pem())

    assert json.loads(_egw("ingest", "migrate", "--db", dsn).stdout) == {"schema_version": 1}
    assert json.loads(_egw("ingest", "migrate", "--db", dsn).stdout) == {"schema_version": 1}  # idempotent
    done = _egw("ingest", "register", "--db", dsn, str(key), "--gateway", "site-7")
    assert done.returncode == 0 and json.loads(done.stdout) == {"kid": signer.key_id, "gateway": "site-7", "created": True}
    again = _egw("ingest", "register", "--db", dsn, str(key), "--gateway", "site-8")
    assert again.returncode == 2 and f"key {signer.key_id} is already registered for gateway 'site-7'" in again.stderr
    missing = _egw("ingest", "register", "--db", dsn, str(tmp_path / "nope.pem"))
    assert missing.returncode == 2 and "nope.pem: No such file or directory" in missing.stderr
    bad = tmp_path / "bad.pem"
    bad.write_text("-----BEGIN PUBLIC KEY-----\nAAAA\n-----END PUBLIC KEY-----\n")
    refused = _egw("ingest", "register", "--db", dsn, str(bad))
    assert refused.returncode == 2 and "not a PEM public key" in refused.stderr and "Traceback" not in refused.stderr
    status = json.loads(_egw("ingest", "status", "--db", dsn).stdout)
    assert [(g["gateway"], g["kid"], g["batches"]) for g in status["gateways"]] == [("site-7", signer.key_id, 0)]

    assert _egw("ingest", "serve").returncode == 2  # no --db: a one-line error
    unreachable = _egw("ingest", "status", "--db", "postgresql://egw@127.0.0.1:1/none")
    assert unreachable.returncode == 1 and "cannot use the database" in unreachable.stderr and "Traceback" not in unreachable.stderr

    server.query(name, "UPDATE fleet_schema SET version = 99")
    newer = _egw("ingest", "migrate", "--db", dsn)
    assert newer.returncode == 1 and "database schema version 99 is newer than this receiver knows (1)" in newer.stderr
