"""Harness for store-and-forward tests: an injected clock, the real outbox, the real receiver over HTTP.

Scenarios drive `Outbox.ingest` (what the harvest actor does per batch) and
`Uploader.step` (what the transport actor does per wakeup) directly, with time taken
from a `FakeClock`, so a 24 h outage replays in seconds while every byte still goes
through SQLite, ES256 and a loopback HTTP connection to the ingest receiver.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from actors.harvest.messages import Reading, ReadingBatch
from actors.harvest.uplink import HttpReply, StepResult, TransportConfig, Uploader, http_post
from simulators.ingest import IngestServerThread
from storage.identity import load_or_create_signer
from storage.outbox import Outbox
from tests.conftest import wait_until  # noqa: F401 - re-exported for the harvest tests

BOOT = "boot-0000"
START_WALL = 1_760_000_000.0  # a fixed epoch second: every replay is deterministic


class FakeClock:
    """Wall and monotonic time that move only when told; the wall clock can jump on its own."""

    def __init__(self, wall: float = START_WALL, mono: float = 1000.0) -> None:
        self._wall, self._mono = wall, mono

    def wall(self) -> float:
        return self._wall

    def mono(self) -> float:
        return self._mono

    def advance(self, seconds: float) -> None:
        self._wall += seconds
        self._mono += seconds

    def jump_wall(self, seconds: float) -> None:
        self._wall += seconds


@dataclass
class Uplink:
    """A switchable uplink in front of the real HTTP client: down means a real refused connection."""

    dead_url: str
    up: bool = True
    calls: int = 0

    def post(self, url: str, body: bytes, timeout: float) -> HttpReply:
        self.calls += 1
        return http_post(url if self.up else self.dead_url, body, timeout)


@dataclass
class Site:
    """One gateway (outbox + key + uploader) and one receiver, on a fake clock."""

    tmp: Path
    clock: FakeClock
    receiver: IngestServerThread
    outbox: Outbox
    uplink: Uplink
    uploader: Uploader
    energy: dict[str, float] = field(default_factory=dict)
    counter: dict[str, int] = field(default_factory=dict)
    batch_id: int = 0
    steps: list[StepResult] = field(default_factory=list)

    def produce(self, devices: list[str], seconds: int, batch_seconds: int = 60, power: Callable[[str, float], float] | None = None, upload: bool = True) -> None:
        """Poll `devices` at 1 Hz for `seconds`, committing one batch per device every `batch_seconds`.

        With `upload`, steps the uploader whenever it is due, like the transport actor's timer would.
        """
        power = power or (lambda dev, t: 1000.0 + (t % 600))
        pending: dict[str, list[Reading]] = {d: [] for d in devices}
        for _ in range(seconds):
            for dev in devices:
                w = power(dev, self.clock.wall())
                self.energy[dev] = self.energy.get(dev, 10_000.0) + w / 3600.0
                n = self.counter.get(dev, 0)
                self.counter[dev] = n + 1
                pending[dev].append(
                    Reading(dev, self.clock.wall(), self.clock.mono(), BOOT, {"ac_power_w": w, "energy_total_wh": round(self.energy[dev], 6), "n": n})
                )
            self.clock.advance(1.0)
            if len(pending[devices[0]]) >= batch_seconds:
                self.flush(pending)
                if upload:
                    self.step_if_due()
        self.flush(pending)

    def flush(self, pending: dict[str, list[Reading]]) -> None:
        for readings in pending.values():
            if readings:
                self.batch_id += 1
                self.outbox.ingest(ReadingBatch("poller", self.batch_id, tuple(readings)))
                readings.clear()
        if self.outbox.over_budget():  # what the harvest actor does after each batch
            self.outbox.enforce_budget()

    def step_if_due(self) -> StepResult | None:
        if self.clock.mono() < self.uploader.next_attempt_mono:
            return None
        result = self.uploader.step()
        self.steps.append(result)
        return result

    def drain(self, max_steps: int = 100_000) -> list[StepResult]:
        """Step until the uploader is idle, advancing the fake clock by each requested delay."""
        results = []
        for _ in range(max_steps):
            result = self.uploader.step()
            results.append(result)
            self.steps.append(result)
            if result.outcome == "idle":
                return results
            self.clock.advance(result.delay_s)
        raise AssertionError(f"uplink did not drain in {max_steps} steps: last {results[-1]}")

    def received(self, stream: str | None = None) -> list[dict]:
        return self.receiver.call(self.receiver.app.store.items, None, stream)

    def summary(self) -> dict:
        return self.receiver.call(self.receiver.app.store.summary)


def free_dead_url() -> str:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1/batches"


@pytest.fixture
def site_factory(tmp_path: Path) -> Iterator[Callable[..., Site]]:
    made: list[Site] = []

    def make(budget_bytes: int = 512 * 1024 * 1024, disk: tuple[int, int, int] | None = None, **transport: Any) -> Site:
        clock = FakeClock()
        receiver = IngestServerThread(tmp_path / "receiver.db").start()
        signer = load_or_create_signer(tmp_path / "gateway")
        receiver.call(receiver.app.store.register, signer.public_key_pem())
        disk = disk or (100 * 2**30, 10 * 2**30, 90 * 2**30)
        outbox = Outbox.open(tmp_path / "gateway" / "egw.db", budget_bytes=budget_bytes, disk_usage=lambda: disk)
        uplink = Uplink(free_dead_url())
        config = TransportConfig.from_dict({"name": "cloud", "url": receiver.url, **transport})
        import random

        uploader = Uploader(outbox, signer, "gw-test", config, clock=clock, post=uplink.post, rng=random.Random(4))
        site = Site(tmp_path, clock, receiver, outbox, uplink, uploader)
        made.append(site)
        return site

    yield make
    for site in made:
        site.outbox.close()
        site.receiver.stop()
