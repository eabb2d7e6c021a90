"""An upload URL's password and query key never appear in the log or in any read."""

from __future__ import annotations

import json
import signal
import subprocess
from pathlib import Path

from supervisor.redaction import redact_url, redact_urls_in
from tests.api.test_actor import http, http_ok
from tests.conftest import EGW, free_port, wait_until

PASSWORD, KEY = "s3cretPassw0rd", "K3YsecretValue"


def test_urls_keep_where_they_point_and_lose_what_unlocks_them():
    assert redact_url(f"https://fleet:{PASSWORD}@ingest.example.net:8443/v1/batches?api_key={KEY}&site=7") == \
        "https://fleet:***@ingest.example.net:8443/v1/batches?api_key=***&site=***"
    assert redact_url("https://ingest.example.net/v1") == "https://ingest.example.net/v1"
    assert redact_url(f"http://{KEY}@host/") == "http://***@host/"
    assert redact_urls_in(f"POST http://u:{PASSWORD}@h/x?k={KEY} refused") == "POST http://u:***@h/x?k=*** refused"


def test_a_running_gateway_never_shows_or_logs_its_upload_credentials(tmp_path: Path, gateway_env: dict[str, str]):
    url = f"http://fleet:{PASSWORD}@127.0.0.1:{free_port()}/ingest?api_key={KEY}"  # nothing listens: uploads fail and are logged
    config = tmp_path / "gateway.toml"
    config.write_text(f'[[uploads]]\nname = "fleet"\nurl = {json.dumps(url)}\n')
    log_path = tmp_path / "gateway.log"
    with log_path.open("wb") as log:
        proc = subprocess.Popen([*EGW, "run", "--config", str(config)], env=gateway_env, stdout=log, stderr=subprocess.STDOUT)
        port = int(gateway_env["EGW_API_PORT"])
        try:
            wait_until(lambda: proc.poll() is None and http_ok(port, "/api/health"), timeout=30, what="the gateway's API")
            wait_until(lambda: b"transport ready" in log_path.read_bytes(), timeout=30, what="the transport started")
            reads = {path: json.dumps(http(port, path)[2]) for path in ("/api/outbox", "/api/config", "/api/actors", "/api/health")}
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(15)
    logged = log_path.read_text()
    assert "transport ready" in logged and "api_key=***" in logged  # the URL is shown, redacted
    for where, text in {"log": logged, **reads}.items():
        assert PASSWORD not in text and KEY not in text, f"a secret in {where}"
    assert "127.0.0.1" in reads["/api/outbox"]  # where data goes is still visible


def test_egw_config_shows_where_uploads_go_but_not_their_credentials(tmp_path: Path):
    config = tmp_path / "gateway.toml"
    config.write_text(f'[[uploads]]\nname = "fleet"\nkind = "mqtt"\nurl = "mqtts://fleet:{PASSWORD}@broker.example.net:8883"\n')
    done = subprocess.run([*EGW, "config", "--config", str(config), "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    shown = json.loads(done.stdout)["values"]["uploads"][0]
    assert shown["url"] == "mqtts://fleet:***@broker.example.net:8883"
    assert PASSWORD not in done.stdout and KEY not in done.stdout


def test_a_url_that_does_not_parse_still_loses_its_credentials():
    assert redact_url(f"http://fleet:{PASSWORD}@[x/v1?api_key={KEY}") == "http://***@[x/v1?***"
    assert redact_url("http://[x") == "http://[x"  # nothing to hide: the configuration error can quote it as it is


def test_a_configuration_error_about_an_upload_url_quotes_it_without_its_password(tmp_path: Path):
    config = tmp_path / "gateway.toml"
    config.write_text(f'[[uploads]]\nname = "fleet"\nkind = "mqtt"\nurl = "mqtts://fleet:{PASSWORD}@broker.example.net:8883/path?key={KEY}"\n')
    done = subprocess.run([*EGW, "config", "--check", str(config), "--data-dir", str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 2
    assert "uploads[0].url: must be just the broker" in done.stderr and "got 'mqtts://fleet:***@broker.example.net:8883/path?key=***'" in done.stderr
    assert PASSWORD not in done.stderr + done.stdout and KEY not in done.stderr + done.stdout
