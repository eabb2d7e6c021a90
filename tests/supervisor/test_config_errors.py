"""Configuration errors as a user meets them: `egw run` / `egw config --check` as real processes.

A configuration error needs a person, not a restart: every one must end in exit 2 with
lines naming the file (or variable), the key and what was expected, never a traceback
and exit 1 (which a container or systemd answers with a restart loop).
"""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest

from supervisor.config import SETTINGS, load_config
from tests.conftest import EGW


def egw(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    # a timeout, not a sleep: a gateway that starts despite an error would run forever
    return subprocess.run([*EGW, *args], env=env, capture_output=True, text=True, timeout=60)


def write(tmp_path: Path, text: str, name: str = "gateway.toml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def assert_config_error(result: subprocess.CompletedProcess[str], *lines: str) -> None:
    assert "Traceback" not in result.stderr, result.stderr
    assert result.returncode == 2, result.stderr
    printed = result.stderr.splitlines()
    for line in lines:
        assert f"egw: configuration error: {line}" in printed, f"{line!r} not in {printed}"


BAD_PARTS = """
[[devices]]
id = "roof"
host = "192.168.1.40"

[[devices]]
id = "garage"
profile = "sma"
host = "192.168.1.41"
port = "five-oh-two"

[[devices]]
id = "meter"
profile = "eastron_sdm630"
host = "192.168.1.42"
colour = "red"

[[uploads]]
name = "fleet"
url = "http://[x"

[[uploads]]
name = "backup"
url = "ftp://ingest.example.net/v1"

[[uploads]]
name = "nohost"
url = "https://:8443/v1"
timeout_s = "fast"

[[uploads]]
name = "port"
url = "https://ingest.example.net:99999/v1"
ulr = "typo"
"""


@pytest.mark.parametrize("command", ["run", "check"])
def test_errors_inside_devices_and_uploads_exit_2_with_file_key_and_expectation(tmp_path, gateway_env, command):
    path = write(tmp_path, BAD_PARTS)
    args = ["run", "--config", str(path)] if command == "run" else ["config", "--check", str(path)]
    result = egw(gateway_env, *args)
    assert_config_error(
        result,
        f"{path}: devices[0] (roof).profile: required (one of deye, eastron_sdm630, fronius, goodwe, growatt, huawei_sun2000, sma, solaredge, solis, sungrow, sunspec) unless sunspec = true",
        f"{path}: devices[1] (garage).port: must be an integer in 1..65535, got 'five-oh-two'",
        f"{path}: devices[2] (meter): unknown setting(s) colour (known: backoff_cap, baudrate, host, id, parity, poll_interval, port, profile, raw_interval, serial_port, stopbits, sunspec, timeout, unit_id)",
        f"{path}: uploads[0].url: IPv6 address bracket '[' is not closed, got 'http://[x'",
        f"{path}: uploads[1].url: scheme must be http or https, got 'ftp' in 'ftp://ingest.example.net/v1' (expected http(s)://host[:port]/path)",
        f"{path}: uploads[2].timeout_s: expected a number, got 'fast'",
        f"{path}: uploads[2].url: missing host, got 'https://:8443/v1' (expected https://host[:port]/path)",
        f"{path}: uploads[3].ulr: unknown setting (did you mean url?)",
        f"{path}: uploads[3].url: bad port (Port out of range 0-65535), got 'https://ingest.example.net:99999/v1'",
    )
    assert not Path(gateway_env["EGW_DATA_DIR"]).exists(), "nothing was started"


def test_errors_in_the_environment_name_the_variable(tmp_path, gateway_env):
    env = dict(gateway_env, EGW_UPLOADS='[{"name": "fleet", "url": "https://ingest.example.net:port/v1"}]', EGW_DEVICES='[{"id": "roof", "sunspec": true, "host": "h", "unit_id": 300}]')
    result = egw(env, "run")
    assert_config_error(
        result,
        "EGW_DEVICES: devices[0] (roof).unit_id: must be an integer in 0..255, got 300",
        "EGW_UPLOADS: uploads[0].url: bad port (Port could not be cast to integer value as 'port'), got 'https://ingest.example.net:port/v1'",
    )


def test_top_level_errors_name_the_file_and_every_error_is_reported_at_once(tmp_path, gateway_env):
    path = write(tmp_path, 'log_level = "LOUD"\napi_prot = 8081\nocpp_unknown_chargers = "maybe"\nheartbeat_timeout = 0\n')
    result = egw(gateway_env, "run", "--config", str(path))
    assert_config_error(
        result,
        f"{path}: log_level: must be DEBUG, INFO, WARNING or ERROR, got 'LOUD'",
        f"{path}: api_prot: unknown setting (did you mean api_port or api_host?)",
        f"{path}: ocpp_unknown_chargers: must be 'reject' or 'accept', got 'maybe'",
        f"{path}: heartbeat_timeout: must be positive, got 0.0",
    )


def _unwritable_dir(tmp_path: Path) -> Path:
    """A directory the gateway's user cannot write to (root writes through 0500: a sysfs directory)."""
    if os.geteuid() == 0:
        return Path("/sys/kernel")
    target = tmp_path / "readonly"
    target.mkdir()
    target.chmod(stat.S_IRUSR | stat.S_IXUSR)
    return target


@pytest.mark.parametrize("case", ["a file", "below a file", "not writable"])
def test_an_unusable_data_dir_exits_2_naming_it(tmp_path, gateway_env, case):
    blocker = tmp_path / "egw.db"
    blocker.write_text("not a directory")
    target, problem = {
        "a file": (blocker, f"{blocker} is not a directory (expected a directory for the database, key and token)"),
        "below a file": (blocker / "data", f"cannot create {blocker / 'data'}: {blocker} is not a directory"),
        "not writable": (_unwritable_dir(tmp_path), None),
    }[case]
    env = dict(gateway_env, EGW_DATA_DIR=str(target))
    for args in (["run"], ["config", "--check", str(write(tmp_path, ""))]):
        result = egw(env, *args)
        assert_config_error(result)
        [line] = result.stderr.splitlines()
        assert line.startswith(f"egw: configuration error: EGW_DATA_DIR: data_dir: {problem or target}"), line
        if problem is None:
            assert "not writable" in line


def test_the_launcher_refuses_a_data_dir_it_cannot_create(tmp_path, capsys):
    """The launcher's own check (a data dir that went away or changed after `egw config --check`)."""
    from supervisor.launcher import EXIT_STARTUP, Launcher

    blocker = tmp_path / "file"
    blocker.write_text("")
    config = load_config(env={}, overrides={"data_dir": str(blocker / "data")})
    assert Launcher(config).run() == EXIT_STARTUP
    assert capsys.readouterr().err == f"egw: configuration error: --data-dir: data_dir: cannot create {blocker / 'data'}: Not a directory\n"


def test_config_check_prints_one_ok_line_and_starts_nothing(tmp_path, gateway_env):
    path = write(tmp_path, '[[devices]]\nid = "roof"\nsunspec = true\nhost = "192.168.1.40"\n\n[[uploads]]\nname = "fleet"\nurl = "https://[2001:db8::1]:8443/v1/batches"\n')
    result = egw(gateway_env, "config", "--check", str(path))
    assert result.returncode == 0, result.stderr
    port, ocpp = gateway_env["EGW_API_PORT"], gateway_env["EGW_OCPP_PORT"]
    assert result.stdout == f"{path}: ok: 1 device(s), 1 upload endpoint(s), API on 0.0.0.0:{port}, OCPP on ws://0.0.0.0:{ocpp}, data dir {gateway_env['EGW_DATA_DIR']}\n"
    assert result.stderr == ""
    assert not Path(gateway_env["EGW_DATA_DIR"]).exists()


def test_a_misspelled_environment_variable_is_named_with_the_closest_setting(tmp_path, gateway_env):
    env = dict(gateway_env, EGW_API_PROT="8081", EGW_OCPP_UNKNOWN_CHARGER="accept", EGW_COMPLETELY_ELSE="1")
    result = egw(env, "config", "--check", str(write(tmp_path, "")))
    assert result.returncode == 0, result.stderr
    assert result.stderr.splitlines() == [
        "egw: warning: EGW_API_PROT: not a setting, ignored; did you mean EGW_API_PORT?",
        "egw: warning: EGW_COMPLETELY_ELSE: not a setting, ignored; see `egw config --table` " f"for the {len(SETTINGS)} settings",
        "egw: warning: EGW_OCPP_UNKNOWN_CHARGER: not a setting, ignored; did you mean EGW_OCPP_UNKNOWN_CHARGERS?",
    ]


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        ("https://ingest.example.net/v1/batches", None),
        ("http://user:pw@10.0.0.1:8080/in?x=1", None),
        ("https://[2001:db8::1]/v1", None),
        ("http://[x", "IPv6 address bracket '[' is not closed, got 'http://[x'"),
        ("http://[zz]/v1", "cannot be parsed ('zz' does not appear to be an IPv4 or IPv6 address), got 'http://[zz]/v1'"),
        ("ingest.example.net/v1", "scheme must be http or https, got none in 'ingest.example.net/v1' (expected http(s)://host[:port]/path)"),
        ("http:///v1", "missing host, got 'http:///v1' (expected http://host[:port]/path)"),
        ("http://h:0/v1", "bad port 0 (expected 1-65535), got 'http://h:0/v1'"),
        ("http://h /v1", "must not contain spaces, got 'http://h /v1'"),
    ],
)
def test_upload_urls_are_parsed_and_the_problem_named(url, problem):
    from actors.harvest.uplink import url_problem

    assert url_problem(url, shown=repr(url)) == problem  # the one check the transport itself runs, quoting the URL
