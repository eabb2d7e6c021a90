"""No actor-system socket is reachable from another host: they accept pickles (= code).

A second network namespace joined by a veth pair plays the other host on the LAN. Every
port the gateway's actor processes listen on must refuse it, while working on loopback.
A control listener on 0.0.0.0 shows the other host really can reach this one.
"""

from __future__ import annotations

import os
import re
import secrets
import socket
import subprocess
import sys

import pytest

from supervisor.messages import GetTree, Tree
from supervisor.procs import descendants
from supervisor.spec import ChildSpec, SupervisorSpec
from tests.conftest import ask_typed, wait_until
from supervisor.embedded import start_root

pytestmark = pytest.mark.netns

PROBE = "import socket,sys\ns=socket.socket();s.settimeout(2)\ntry:\n s.connect((sys.argv[1],int(sys.argv[2])));print('open')\nexcept OSError as e:\n print('closed',e.errno)\n"


def _run(*cmd: str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=30)


@pytest.fixture
def other_host():
    """A network namespace linked to this one by a veth pair; yields (namespace, our address)."""
    if os.geteuid() != 0:
        pytest.skip("creating a network namespace needs root (CAP_NET_ADMIN)")
    tag = secrets.token_hex(3)
    ns, here, there = f"egw{tag}", f"ve{tag}a", f"ve{tag}b"
    subnet = 100 + int(tag[:2], 16) % 100
    setup = [
        ("ip", "netns", "add", ns),
        ("ip", "link", "add", here, "type", "veth", "peer", "name", there),
        ("ip", "link", "set", there, "netns", ns),
        ("ip", "addr", "add", f"10.251.{subnet}.1/30", "dev", here),
        ("ip", "link", "set", here, "up"),
        ("ip", "netns", "exec", ns, "ip", "addr", "add", f"10.251.{subnet}.2/30", "dev", there),
        ("ip", "netns", "exec", ns, "ip", "link", "set", there, "up"),
    ]
    try:
        for cmd in setup:
            result = _run(*cmd)
            if result.returncode != 0:
                pytest.skip(f"cannot build a test network here ({' '.join(cmd)}: {result.stderr.strip()})")
        yield ns, f"10.251.{subnet}.1"
    finally:
        _run("ip", "link", "del", here)
        _run("ip", "netns", "del", ns)


def _probe_from(ns: str, host: str, port: int) -> str:
    return _run("ip", "netns", "exec", ns, sys.executable, "-c", PROBE, host, str(port)).stdout.strip()


def _listening_ports(pids: set[int]) -> set[int]:
    out = _run("ss", "-ltnpH").stdout
    ports = set()
    for line in out.splitlines():
        owners = {int(p) for p in re.findall(r"pid=(\d+)", line)}
        if owners & pids:
            ports.add(int(line.split()[3].rsplit(":", 1)[1]))
    return ports


def test_actor_system_ports_refuse_other_hosts_and_work_on_loopback(multiproc_system, other_host):
    ns, our_address = other_host
    asys = multiproc_system
    root = start_root(asys, SupervisorSpec(children=(ChildSpec("device", "tests.supervisor.sample_actors.Echo"),)))
    wait_until(lambda: all(r["state"] == "running" for r in ask_typed(asys, root, GetTree(), Tree).records))

    family = set(descendants(os.getpid())) | {os.getpid()}
    ports = _listening_ports(family)
    assert len(ports) >= 4, f"expected admin, logger, root and child sockets, found {sorted(ports)}"

    with socket.socket() as control:  # proves the other host can reach us at all
        control.bind(("0.0.0.0", 0))
        control.listen()
        assert _probe_from(ns, our_address, control.getsockname()[1]) == "open"

    for port in sorted(ports):
        assert _probe_from(ns, our_address, port).startswith("closed"), f"actor port {port} is reachable from another host"
        with socket.create_connection(("127.0.0.1", port), timeout=2):
            pass  # and it still works locally
