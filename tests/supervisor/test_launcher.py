"""`egw run` as a real process: JSON logs, orderly SIGTERM, exit codes, no orphans."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from supervisor.procs import descendants, is_alive
from tests.conftest import EGW, wait_until

ECHO = "tests.supervisor.sample_actors.Echo"


def _config(tmp_path: Path, children: list[tuple[str, dict | None]], **settings) -> Path:
    lines = [f"{k} = {json.dumps(v)}" for k, v in settings.items()]
    for name, config in children:
        lines += ["[[extra_children]]", f'name = "{name}"', f'actor = "{ECHO}"']
        if config:
            lines += ["[extra_children.config]"] + [f"{k} = {json.dumps(v)}" for k, v in config.items()]
    path = tmp_path / "gateway.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


class LogTail:
    """Reads the gateway's JSON-lines stdout as it runs."""

    def __init__(self, proc: subprocess.Popen) -> None:
        self.proc = proc
        self.lines: list[dict] = []
        os.set_blocking(proc.stdout.fileno(), False)
        self._buffer = b""

    def poll(self) -> list[dict]:
        try:
            chunk = self.proc.stdout.read() or b""
        except BlockingIOError:
            chunk = b""
        self._buffer += chunk
        *complete, self._buffer = self._buffer.split(b"\n")
        for raw in complete:
            if raw.strip():
                self.lines.append(json.loads(raw))
        return self.lines

    def find(self, **fields) -> dict | None:
        for line in self.poll():
            if all(line.get(k) == v for k, v in fields.items()):
                return line
        return None


def _start(config: Path, env: dict) -> tuple[subprocess.Popen, LogTail]:
    proc = subprocess.Popen([*EGW, "run", "--config", str(config)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    return proc, LogTail(proc)


def test_sigterm_stops_every_process_of_the_family_within_5_s_and_exits_0(tmp_path, gateway_env):
    proc, log = _start(_config(tmp_path, [("inverter", None), ("meter", None)]), gateway_env)
    try:
        started = wait_until(lambda: log.find(msg="child started", child="meter"), timeout=30, what="children started")
        family = descendants(proc.pid)
        assert started["actor"] == "root"
        assert len(family) >= 4  # admin, logger, root supervisor, two children (and the daemonizing shell)

        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert proc.wait(timeout=5) == 0
        wait_until(lambda: not any(is_alive(p) for p in family), timeout=5 - (time.monotonic() - sent), what="family gone")
    finally:
        if proc.poll() is None:
            proc.kill()
    lines = log.poll()
    assert all({"ts", "level", "actor", "msg"} <= set(line) for line in lines), "every log line is JSON with an actor name"
    assert log.find(actor="launcher", msg="gateway stopped", exit_code=0, reason="SIGTERM")


def test_a_supervisor_that_never_answers_its_exit_request_does_not_hold_up_sigterm(tmp_path, gateway_env):
    """The root supervisor frozen (SIGSTOP), as when the actor system has lost an exit request
    and waits for an answer that never comes: the gateway still ends within 5 s, exit 0."""
    proc, log = _start(_config(tmp_path, [("inverter", None)]), gateway_env)
    try:
        wait_until(lambda: log.find(msg="child started", child="inverter"), timeout=30, what="the children started")
        # the launcher hears of the root's start on its own, in its own time: wait for that line too
        root = wait_until(lambda: log.find(actor="launcher", msg="root supervisor running"), timeout=30, what="the launcher heard the root start")
        family = descendants(proc.pid)
        os.kill(root["pid"], signal.SIGSTOP)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        assert proc.wait(timeout=5) == 0
        wait_until(lambda: not any(is_alive(p) for p in family), timeout=max(0.1, 5 - (time.monotonic() - sent)), what="family gone")
    finally:
        if proc.poll() is None:
            proc.kill()
    assert log.find(actor="launcher", msg="orderly stop overran; ending the processes still running")
    assert log.find(actor="launcher", msg="gateway stopped", exit_code=0, reason="SIGTERM")


def test_a_crash_loop_across_the_tree_makes_the_gateway_exit_non_zero(tmp_path, gateway_env):
    # two parts failing: each within its own limit (half the budget), together over the root's
    children = [("healthy", None), ("broken", {"fail_on_start": True}), ("broken2", {"fail_on_start": True})]
    proc, log = _start(_config(tmp_path, children, restart_max=3, restart_period=60), gateway_env)
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 1
    escalated = log.find(actor="root", msg="restart intensity exceeded; escalating")
    assert escalated and escalated["reason"] in ("broken restarted more than 3 times in 60 s", "broken2 restarted more than 3 times in 60 s")
    assert log.find(actor="launcher", msg="gateway stopped", exit_code=1)


def test_a_second_gateway_on_the_same_actor_port_refuses_to_start(tmp_path, gateway_env):
    proc, log = _start(_config(tmp_path, [("inverter", None)]), gateway_env)
    try:
        wait_until(lambda: log.find(msg="child started", child="inverter"), timeout=30)
        second = subprocess.run([*EGW, "run", "--config", str(_config(tmp_path, []))], env=gateway_env, capture_output=True, timeout=30)
        assert second.returncode == 2
        assert b"actor port in use" in second.stdout
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def test_bad_configuration_is_refused_with_the_file_and_key_named(tmp_path, gateway_env):
    bad = tmp_path / "bad.toml"
    bad.write_text('api_port = "eighty"\n')
    result = subprocess.run([*EGW, "run", "--config", str(bad)], env=gateway_env, capture_output=True, text=True, timeout=30)
    assert result.returncode == 2
    assert f"{bad}: api_port: expected an integer, got 'eighty'" in result.stderr


def test_flags_override_environment_which_overrides_the_file(tmp_path, gateway_env):
    config = tmp_path / "g.toml"
    config.write_text("api_port = 1111\nocpp_port = 2222\nlog_level = \"DEBUG\"\n")
    env = dict(gateway_env, EGW_API_PORT="3333", EGW_OCPP_PORT="4444")
    result = subprocess.run([*EGW, "config", "--config", str(config), "--ocpp-port", "5555"], env=env, capture_output=True, text=True, timeout=30)
    shown = json.loads(result.stdout)
    assert shown["values"]["api_port"] == 3333 and shown["sources"]["api_port"] == "EGW_API_PORT"
    assert shown["values"]["ocpp_port"] == 5555 and shown["sources"]["ocpp_port"] == "--ocpp-port"
    assert shown["values"]["log_level"] == "DEBUG" and shown["sources"]["log_level"] == str(config)
    assert shown["sources"]["gateway_name"] == "default"


def test_help_teaches_the_commands():
    result = subprocess.run([*EGW, "--help"], capture_output=True, text=True, timeout=30, env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[2])))
    assert result.returncode == 0
    for command in ("run", "demo", "config"):
        assert command in result.stdout
    assert sys.executable


def test_sigkill_of_the_launcher_ends_every_process_of_the_family_within_5_s(tmp_path, gateway_env):
    """However the launcher dies, nothing of the gateway lingers (the OCPP port is freed)."""
    proc, log = _start(_config(tmp_path, [("inverter", None)]), gateway_env)
    try:
        wait_until(lambda: log.find(msg="OCPP listener up"), timeout=30, what="the listener up")
        wait_until(lambda: log.find(msg="child started", child="inverter"), timeout=30, what="the children started")
        family = descendants(proc.pid)
        assert len(family) >= 5
        proc.kill()
        proc.wait(timeout=5)
        wait_until(lambda: not any(is_alive(p) for p in family), timeout=5, what="every process of the family gone")
    finally:
        if proc.poll() is None:
            proc.kill()


def test_orphans_the_launcher_adopts_are_reaped_not_left_as_zombies(tmp_path, gateway_env):
    """thespian's daemonized admin leaves its first parent as a zombie child of the launcher."""
    proc, log = _start(_config(tmp_path, [("inverter", None)]), gateway_env)
    try:
        wait_until(lambda: log.find(msg="child started", child="inverter"), timeout=30, what="the children started")

        def zombies() -> list[int]:
            return [p for p in children_of_any_state(proc.pid) if _state(p) == "Z"]

        wait_until(lambda: not zombies(), timeout=10, what="no zombie child of the launcher")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=10)


def children_of_any_state(parent: int) -> list[int]:
    return [int(e) for e in os.listdir("/proc") if e.isdigit() and _ppid(int(e)) == parent]


def _fields(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return ["X", "0"]


def _state(pid: int) -> str:
    return _fields(pid)[0]


def _ppid(pid: int) -> int:
    return int(_fields(pid)[1])
