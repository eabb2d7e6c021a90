"""What the gateway keeps on the box is readable by the gateway alone, and survives a power cut."""

from __future__ import annotations

import signal
import stat
from pathlib import Path

import pytest

from storage.api_token import TOKEN_FILE, load_or_create_token
from storage.identity import KEY_FILE, load_or_create_signer
from tests.conftest import wait_until
from tests.supervisor.test_launcher import _config, _start


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_a_running_gateway_keeps_its_data_dir_database_key_and_token_private(tmp_path, gateway_env):
    data = Path(gateway_env["EGW_DATA_DIR"])
    data.mkdir(mode=0o755)
    data.chmod(0o755)  # as an installer's `mkdir` leaves it
    proc, log = _start(_config(tmp_path, []), gateway_env)
    try:
        wait_until(lambda: log.find(msg="REST API serving") and (data / "egw.db-wal").exists(), timeout=30, what="the gateway serving")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)
    assert mode(data) == 0o700
    files = {p.name: mode(p) for p in data.rglob("*") if p.is_file()}
    assert {"egw.db", TOKEN_FILE} <= set(files)
    assert {name: m for name, m in files.items() if m & 0o077} == {}, "files others on the box can read"


def test_an_empty_key_file_left_by_a_power_cut_is_replaced_not_a_crash_on_every_start(tmp_path):
    (tmp_path / KEY_FILE).write_bytes(b"")
    signer = load_or_create_signer(tmp_path)
    assert signer.public_key_pem().startswith(b"-----BEGIN PUBLIC KEY-----")
    assert mode(tmp_path / KEY_FILE) == 0o600
    assert load_or_create_signer(tmp_path).public_key_pem() == signer.public_key_pem()  # and it is kept from then on


def test_a_key_file_that_holds_something_else_is_refused_with_its_path_never_replaced(tmp_path):
    (tmp_path / KEY_FILE).write_bytes(b"-----BEGIN PRIVATE KEY-----\ncut sho")
    with pytest.raises(ValueError, match=KEY_FILE):
        load_or_create_signer(tmp_path)
    assert (tmp_path / KEY_FILE).read_bytes().endswith(b"cut sho")  # the identity is not silently replaced


def test_an_empty_token_file_is_replaced_and_a_new_token_is_private(tmp_path):
    (tmp_path / TOKEN_FILE).write_text("")
    token = load_or_create_token(tmp_path)
    assert len(token) >= 32 and (tmp_path / TOKEN_FILE).read_text().strip() == token
    assert mode(tmp_path / TOKEN_FILE) == 0o600
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]  # no temporary file left behind
