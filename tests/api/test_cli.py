"""`egw status` and `egw token` as a user runs them."""

from __future__ import annotations

import io
import json
import stat
import subprocess

from actors.api import cli, token_cli
from storage.api_token import load_or_create_token, token_path
from tests.conftest import EGW, free_port


def run_status(argv: list[str]) -> tuple[int, str, str]:
    parser = __import__("argparse").ArgumentParser()
    cli.add_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    code = cli.run(parser.parse_args(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def run_token(argv: list[str]) -> tuple[int, str, str]:
    parser = __import__("argparse").ArgumentParser()
    token_cli.add_arguments(parser)
    out, err = io.StringIO(), io.StringIO()
    code = token_cli.run(parser.parse_args(argv), stdout=out, stderr=err)
    return code, out.getvalue(), err.getvalue()


def test_status_prints_tables_and_exits_1_when_degraded(served):
    code, out, err = run_status(["--url", served.url])
    assert code == 1, err
    assert "status: degraded" in out and "! device meter1 offline" in out
    lines = out.splitlines()
    actors = lines.index("Actors")
    assert lines[actors + 1].split() == ["NAME", "KIND", "PID", "STATE", "RESTARTS", "UP", "LAST", "ERROR"]
    assert any(line.startswith("  inv1 ") for line in lines)  # device actors indented under their supervisor
    assert any(line.startswith("inv1 ") and "ac_power_w=1234.5" in line for line in lines)
    assert any(line.startswith("CP-1 ") and "1:Available" in line for line in lines)
    assert any(line.startswith("ingest ") and "backoff" in line for line in lines)


def test_status_json_for_scripts(served, backend):
    backend.devices_by_id["meter1"]["online"] = True
    code, out, _ = run_status(["--url", served.url, "--json"])
    assert code == 0
    data = json.loads(out)
    assert set(data) == {"health", "actors", "devices", "outbox", "chargers", "loadpoints"}  # loadpoints: this gateway has one
    assert [d["id"] for d in data["devices"]["devices"]] == ["inv1", "meter1"]
    assert [lp["id"] for lp in data["loadpoints"]["loadpoints"]] == ["garage"]


def test_status_shows_a_restarting_part_instead_of_failing(served, backend):
    backend.hang = True
    code, out, _ = run_status(["--url", served.url])
    assert code == 1
    assert "health: unavailable" in out and "unavailable: devices: no answer" in out


def test_status_without_a_gateway_says_so(tmp_path, monkeypatch):
    monkeypatch.setenv("EGW_API_PORT", str(free_port()))
    code, out, err = run_status(["--data-dir", str(tmp_path), "--timeout", "1"])
    assert code == 2 and out == ""
    assert "no gateway API at http://127.0.0.1:" in err


def test_token_prints_the_gateways_token_and_never_creates_one(tmp_path):
    code, out, err = run_token(["--data-dir", str(tmp_path)])
    assert code == 2 and out == ""
    assert err.startswith(f"egw token: {token_path(tmp_path)} does not exist: no gateway has started with data dir {tmp_path} (from --data-dir).")
    assert "--config FILE" in err and "EGW_DATA_DIR" in err
    assert list(tmp_path.iterdir()) == [], "no token was made up"
    token = load_or_create_token(tmp_path)  # what the API actor does on the gateway's first start
    code, out, _ = run_token(["--data-dir", str(tmp_path)])
    assert code == 0 and out.strip() == token
    assert stat.S_IMODE(token_path(tmp_path).stat().st_mode) == 0o600


def test_a_cut_short_token_file_is_reported_not_replaced(tmp_path):
    token_path(tmp_path).write_text("short\n")
    code, _, err = run_token(["--data-dir", str(tmp_path)])
    assert code == 2 and "is not a usable token (empty or cut short)" in err
    assert token_path(tmp_path).read_text() == "short\n"


def test_token_of_the_configured_gateway_as_egw_run_resolves_it(tmp_path, gateway_env):
    """A real `egw token`: --config's data_dir, EGW_DATA_DIR over the file, and nothing found outside them."""
    gateway_dir, other = tmp_path / "gateway", tmp_path / "other"
    token = load_or_create_token(gateway_dir)
    config = tmp_path / "gateway.toml"
    config.write_text(f'data_dir = "{gateway_dir}"\n')
    env = {k: v for k, v in gateway_env.items() if k != "EGW_DATA_DIR"}

    def egw_token(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([*EGW, "token", *args], env=dict(env, **extra), cwd=tmp_path, capture_output=True, text=True, timeout=30)

    assert egw_token("--config", str(config)).stdout == token + "\n"
    assert egw_token(EGW_DATA_DIR=str(gateway_dir)).stdout == token + "\n"
    result = egw_token("--config", str(config), EGW_DATA_DIR=str(other))  # the environment wins, as for egw run
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.startswith(f"egw token: {other / 'api-token'} does not exist: no gateway has started with data dir {other} (from EGW_DATA_DIR).")
    result = egw_token()
    assert result.returncode == 2
    assert result.stderr.startswith("egw token: data/api-token does not exist: no gateway has started with data dir data (from the built-in default).")
    assert not other.exists() and not (tmp_path / "data").exists()


def test_token_honours_egw_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EGW_DATA_DIR", str(tmp_path / "env-data"))
    token = load_or_create_token(tmp_path / "env-data")
    code, out, _ = run_token([])
    assert code == 0 and out.strip() == token
    assert run_token(["--path"])[1].strip() == str(token_path(tmp_path / "env-data"))
