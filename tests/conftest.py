"""Fixtures shared by every test: free ports, polling with a deadline, real actor systems."""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from supervisor.embedded import ask_typed, free_port, private_actor_system

__all__ = ["ask_typed", "free_port", "strict_loads", "wait_until", "wait_until_async"]  # shared with every test package

ROOT = Path(__file__).resolve().parent.parent


def strict_loads(text: str) -> Any:
    """json.loads that refuses NaN and Infinity, as a strict JSON receiver does."""

    def refuse(constant: str) -> Any:
        raise ValueError(f"{constant} is not JSON")

    return json.loads(text, parse_constant=refuse)


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
    with private_actor_system() as asys:
        yield asys


@pytest.fixture
def gateway_env(tmp_path: Path) -> Iterator[dict[str, str]]:
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
    yield env
    _kill_processes_with(f"EGW_DATA_DIR={env['EGW_DATA_DIR']}".encode())


def _kill_processes_with(marker: bytes) -> None:
    """SIGKILL every process whose environment holds `marker`: a gateway a failed test left behind."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
        except (OSError, ProcessLookupError):
            continue


EGW = [sys.executable, "-m", "supervisor.cli"]
