"""The setup code on disk and `egw ble code`: created once, private, the same for everyone who asks."""

from __future__ import annotations

import io
import stat
from types import SimpleNamespace

from actors.ble import cli
from actors.ble.setup_code import ALPHABET, format_code, load_or_create_setup_code, read_setup_code, setup_code_path


def test_created_once_private_and_stable(tmp_path):
    data_dir = tmp_path / "data"
    code = load_or_create_setup_code(data_dir)
    path = setup_code_path(data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600 and stat.S_IMODE(data_dir.stat().st_mode) == 0o700
    assert len(code) == 12 and set(code) <= set(ALPHABET) and not set(code) & set("01IO")
    assert path.read_text() == format_code(code) + "\n"  # XXXX-XXXX-XXXX, as on the label
    assert load_or_create_setup_code(data_dir) == code and read_setup_code(path) == code
    assert not list(data_dir.glob(".*.tmp"))  # written through a temporary file that is gone


def test_an_empty_file_from_a_power_cut_is_replaced_a_valid_one_never(tmp_path):
    path = setup_code_path(tmp_path)
    path.write_text("")
    code = load_or_create_setup_code(tmp_path)
    assert read_setup_code(path) == code
    path.write_text("2345-6789-ABCD\n")
    assert load_or_create_setup_code(tmp_path) == "23456789ABCD"


def test_egw_ble_code_prints_the_code_the_gateway_checks(tmp_path, monkeypatch):
    monkeypatch.delenv("EGW_DATA_DIR", raising=False)
    out, err = io.StringIO(), io.StringIO()
    args = SimpleNamespace(action="code", config=None, data_dir=str(tmp_path / "data"), api_port=None)
    assert cli.run(args, out, err) == 0
    printed = out.getvalue().strip()
    assert printed == format_code(read_setup_code(setup_code_path(tmp_path / "data")))
    assert cli.run(args, out2 := io.StringIO(), err) == 0 and out2.getvalue().strip() == printed and err.getvalue() == ""
