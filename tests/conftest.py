"""Fixtures shared by every test: free ports, polling with a deadline, real actor systems."""

from __future__ import annotations

import os
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    """A TCP port nobody listens on right now (bound and released on 127.0.0.1)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_until(predicate: Callable[[], Any], timeout: float = 10.0, interval: float = 0.02, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy; fail the test at the deadline."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(interval)


async def wait_until_async(predicate: Callable[[], Any], timeout: float = 5.0, interval: float = 0.005, what: str = "condition") -> Any:
    """`wait_until` for tests running on an event loop: polls without blocking the loop."""
    import asyncio

    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g} s waiting for {what}")
        await asyncio.sleep(interval)


@pytest.fixture
def port_factory() -> Callable[[], int]:
    return free_port


@pytest.fixture
def multiproc_system() -> Iterator[Any]:
    """A real multiprocTCPBase actor system on a free loopback admin port, torn down fully."""
    from thespian.actors import ActorSystem

    from supervisor.hardening import become_subreaper
    from supervisor.loopback import confine_actor_sockets_to_loopback
    from supervisor.procs import descendants, end_family

    confine_actor_sockets_to_loopback()
    become_subreaper()
    asys = ActorSystem("multiprocTCPBase", capabilities={"Admin Port": free_port(), "Process Startup Method": "fork"}, transientUnique=True)
    try:
        yield asys
    finally:
        asys.shutdown()
        end_family(descendants(os.getpid()), grace=1.0)


@pytest.fixture
def gateway_env(tmp_path: Path) -> dict[str, str]:
    """Environment for running `egw` as a real subprocess on free ports in a private data dir."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("EGW_")}
    env.update(
        PYTHONPATH=str(ROOT),
        EGW_DATA_DIR=str(tmp_path / "data"),
        EGW_ACTOR_PORT=str(free_port()),
        EGW_API_PORT=str(free_port()),
        EGW_OCPP_PORT=str(free_port()),
        EGW_BLE_ENABLED="false",
        EGW_WIFI_BACKEND="none",
        PYTHONUNBUFFERED="1",
    )
    return env


EGW = [sys.executable, "-m", "supervisor.cli"]


def ask_typed(asys: Any, address: Any, msg: Any, kind: type, timeout: float = 5.0) -> Any:
    """Ask and return the first reply of type `kind`, skipping unrelated messages."""
    deadline = time.monotonic() + timeout
    reply = asys.ask(address, msg, timeout)
    while not isinstance(reply, kind):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise AssertionError(f"no {kind.__name__} reply to {type(msg).__name__} within {timeout:g} s")
        reply = asys.listen(remaining)
    return reply
