"""`egw status` and `egw token` as a user runs them."""

from __future__ import annotations

import io
import json
import stat

from actors.api import cli, token_cli
from actors.api.token import read_token, token_path
from tests.conftest import free_port


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
    assert set(data) == {"health", "actors", "devices", "outbox", "chargers"}
    assert [d["id"] for d in data["devices"]["devices"]] == ["inv1", "meter1"]


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


def test_token_is_created_once_and_printed(tmp_path):
    code, out, _ = run_token(["--data-dir", str(tmp_path)])
    assert code == 0
    token = out.strip()
    assert token == read_token(token_path(tmp_path))
    assert stat.S_IMODE(token_path(tmp_path).stat().st_mode) == 0o600
    assert run_token(["--data-dir", str(tmp_path)])[1].strip() == token


def test_token_honours_egw_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("EGW_DATA_DIR", str(tmp_path / "env-data"))
    code, out, _ = run_token([])
    assert code == 0 and out.strip() == read_token(token_path(tmp_path / "env-data"))
    assert run_token(["--path"])[1].strip() == str(token_path(tmp_path / "env-data"))
