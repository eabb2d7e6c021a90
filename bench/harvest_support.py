"""Actor-system side of bench.harvest: a supervised tree of device actors and an acking harvest.

The actor system is started before any simulator thread exists, so no actor process is
forked from a threaded process.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from typing import Any

from pymodbus.client import ModbusTcpClient
from thespian.actors import ActorExitRequest

from actors.device.specs import devices_part
from actors.harvest.messages import BatchAck, CounterOffsets, CounterOffsetsRequest, ReadingBatch
from simulators.inverter import InverterSimulator
from supervisor.actor import SupervisedActor
from supervisor.messages import Lookup, LookupResult
from supervisor.spec import ChildSpec, SupervisorSpec
from supervisor.embedded import ask_typed, private_actor_system, start_root
from supervisor.logs import log_definitions

CLK_TCK = os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class CountReadings:
    pass


@dataclass(frozen=True)
class ReadingCount:
    count: int


class AckingHarvest(SupervisedActor):
    """Acknowledges every batch at once and counts readings (no storage: measures the producer)."""

    def on_start(self, config: Any) -> None:
        self.readings = 0

    def receiveMsg_CounterOffsetsRequest(self, msg: CounterOffsetsRequest, sender: Any) -> None:  # noqa: N802
        self.send(sender, CounterOffsets({}))  # nothing stored: a device starts from its registers

    def receiveMsg_ReadingBatch(self, msg: ReadingBatch, sender: Any) -> None:  # noqa: N802
        self.readings += len(msg.readings)
        self.send(sender, BatchAck(msg.producer, msg.batch_id))

    def receiveMsg_CountReadings(self, msg: CountReadings, sender: Any) -> None:  # noqa: N802
        self.send(sender, ReadingCount(self.readings))


def _start_tree(asys: Any, devices: list[dict]) -> Any:
    children = (ChildSpec("harvest", "bench.harvest_support.AckingHarvest"), *devices_part({"devices": devices}))
    root = start_root(asys, SupervisorSpec(children=children))
    return root


def _readings(asys: Any, root: Any) -> int:
    harvest = ask_typed(asys, root, Lookup("harvest"), LookupResult).address
    return ask_typed(asys, harvest, CountReadings(), ReadingCount).count


def actor_cycles(models: tuple[int, ...], interval: float, seconds: float, raw_loop: Any) -> tuple[float, float]:
    """(readings/s harvested from one DeviceActor, raw pymodbus cycles/s) against one simulator."""
    with private_actor_system(log_definitions("ERROR")) as asys:
        with InverterSimulator("sunspec", sunspec_models=models) as sim:
            settings = {"id": "bench", "sunspec": True, "host": "127.0.0.1", "port": sim.port, "poll_interval": interval, "timeout": 1.0}
            root = _start_tree(asys, [settings])
            deadline = time.monotonic() + 10
            while _readings(asys, root) < 10 and time.monotonic() < deadline:
                time.sleep(0.05)
            first, t0 = _readings(asys, root), time.monotonic()
            time.sleep(seconds)
            last, t1 = _readings(asys, root), time.monotonic()
            ask_typed(asys, root, Lookup("devices"), LookupResult)  # tree still answering
            asys.tell(root, ActorExitRequest())
            time.sleep(0.2)
            baseline = raw_loop(sim.port, [(40073, 36), (40200, 37)], seconds)
    return (last - first) / (t1 - t0), baseline


def _cpu_seconds(pids: list[int]) -> float:
    total = 0
    for pid in pids:
        try:
            with open(f"/proc/{pid}/stat") as fh:
                fields = fh.read().rsplit(")", 1)[1].split()
            total += int(fields[11]) + int(fields[12])  # utime + stime
        except (OSError, IndexError):
            pass
    return total / CLK_TCK


def cpu_with_devices(n: int, models: tuple[int, ...], seconds: float) -> tuple[float, float, int]:
    """(gateway CPU s/s, raw loop CPU s/s, polls harvested) for n devices at 1 Hz."""
    from supervisor.procs import descendants

    with private_actor_system(log_definitions("ERROR")) as asys:
        sims = [InverterSimulator("sunspec", sunspec_models=models).start() for _ in range(n)]
        try:
            devices = [{"id": f"inv{i}", "sunspec": True, "host": "127.0.0.1", "port": s.port, "poll_interval": 1.0, "timeout": 1.0} for i, s in enumerate(sims)]
            root = _start_tree(asys, devices)
            deadline = time.monotonic() + 15
            while _readings(asys, root) < n and time.monotonic() < deadline:
                time.sleep(0.1)
            pids = descendants(os.getpid())
            before_cpu, before_count, t0 = _cpu_seconds(pids), _readings(asys, root), time.monotonic()
            time.sleep(seconds)
            after_cpu, after_count, t1 = _cpu_seconds(pids), _readings(asys, root), time.monotonic()
            gateway = (after_cpu - before_cpu) / (t1 - t0)
            raw = _raw_cpu([s.port for s in sims], seconds)
        finally:
            for s in sims:
                s.stop()
    return gateway, raw, after_count - before_count


def _raw_cpu(ports: list[int], seconds: float) -> float:
    """CPU s/s of one thread polling every port once a second with bare pymodbus clients."""
    result: list[float] = []

    def run() -> None:
        clients = [ModbusTcpClient("127.0.0.1", port=p, timeout=1.0, retries=0) for p in ports]
        for c in clients:
            c.connect()
        start_cpu, start = time.thread_time(), time.monotonic()
        next_tick = start
        while time.monotonic() - start < seconds:
            for c in clients:
                c.read_holding_registers(40073, count=36, device_id=1)
                c.read_holding_registers(40200, count=37, device_id=1)
            next_tick += 1.0
            time.sleep(max(0.0, next_tick - time.monotonic()))
        result.append((time.thread_time() - start_cpu) / (time.monotonic() - start))
        for c in clients:
            c.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return result[0]
