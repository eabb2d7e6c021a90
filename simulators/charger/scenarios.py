"""Scripted charger behaviours, for the demo, the tests and installers checking a site.

Each scenario connects as the charge point named by the URL's last segment, plays its
script against the central system, and returns a `ScenarioResult` (what happened, in
order). `SCENARIOS` maps the names the command line accepts to the functions.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from simulators.charger.chargepoint import SimulatedChargePoint
from simulators.charger.connection import AiohttpConnection, connect


@dataclass
class ScenarioResult:
    scenario: str
    charge_point_id: str
    steps: list[str] = field(default_factory=list)
    transaction_ids: list[int] = field(default_factory=list)
    errors: list[list[Any]] = field(default_factory=list)

    def note(self, step: str) -> None:
        self.steps.append(step)


@dataclass
class Options:
    url: str
    auth_key: str | None = None
    id_tag: str = "DEMO-TAG"
    samples: int = 3
    interval: float = 1.0
    power_w: float = 7400.0
    wait: float = 60.0  # how long to wait for the central system in remote/reservation
    offline_age: float = 3 * 3600.0
    car_max_a: float = 16.0  # the car scenario's car: its own maximum current,
    car_phases: int = 3  # the phases its onboard charger uses,
    reject_profiles: tuple[str, ...] = ()  # and the charger's quirks (SimulatedChargePoint.reject_profiles)


class Session:
    """A connected simulated charger with its receive loop running."""

    def __init__(self, options: Options) -> None:
        self.options = options
        self.charge_point_id = options.url.rstrip("/").rsplit("/", 1)[-1]
        self.cp: SimulatedChargePoint | None = None
        self._reader: asyncio.Task | None = None

    async def open(self) -> SimulatedChargePoint:
        connection = await connect(self.options.url, auth_key=self.options.auth_key)
        if self.cp is None:
            self.cp = SimulatedChargePoint(self.charge_point_id, connection)
        else:
            self.cp._connection = connection
        self._reader = asyncio.create_task(self.cp.start())
        return self.cp

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        if self.cp is not None:
            await self.cp._connection.close()


#: The simulated EV: its battery in Wh, its state of charge when it plugs in, and the grid's phase voltage.
BATTERY_WH = 60_000.0
SOC_AT_PLUG_IN = 20.0
PHASE_VOLTS = 230.0


async def _charge(cp: SimulatedChargePoint, o: Options, r: ScenarioResult, transaction_id: int, connector: int = 1) -> int:
    """Charge for `o.samples` intervals, each sending energy, power, the EV's state of charge and the current (single phase)."""
    energy = start = cp.meter_wh
    for _ in range(o.samples):
        await asyncio.sleep(o.interval)
        energy += int(o.power_w * o.interval / 3600) or 1
        soc = min(100.0, SOC_AT_PLUG_IN + 100.0 * (energy - start) / BATTERY_WH)
        await cp.meter(connector, transaction_id, energy, o.power_w, soc_percent=round(soc, 1), current_a=round(o.power_w / PHASE_VOLTS, 1))
    r.note(f"meter values sent up to {energy} Wh")
    return energy


async def normal(o: Options) -> ScenarioResult:
    s = Session(o)
    cp = await s.open()
    r = ScenarioResult("normal", s.charge_point_id)
    try:
        r.note(f"boot: {(await cp.boot()).status}")
        await cp.status(0, "Available")
        await cp.status(1, "Available")
        r.note(f"authorize {o.id_tag}: {(await cp.authorize(o.id_tag)).id_tag_info['status']}")
        await cp.status(1, "Preparing")
        tx = await cp.start_transaction(1, o.id_tag)
        r.transaction_ids.append(tx)
        r.note(f"transaction {tx} started")
        await cp.status(1, "Charging")
        energy = await _charge(cp, o, r, tx)
        await cp.stop_transaction(tx, energy, reason="EVDisconnected", id_tag=o.id_tag)
        await cp.status(1, "Finishing")
        await cp.status(1, "Available")
        r.note(f"transaction {tx} stopped at {energy} Wh")
    finally:
        await s.close()
    return r


async def reservation(o: Options) -> ScenarioResult:
    """Wait for the central system to reserve connector 1, then charge on that reservation."""
    s = Session(o)
    cp = await s.open()
    r = ScenarioResult("reservation", s.charge_point_id)
    try:
        r.note(f"boot: {(await cp.boot()).status}")
        await cp.status(1, "Available")
        reserved = await cp.wait_for("ReserveNow", timeout=o.wait)
        r.note(f"reserved for {reserved['id_tag']} (reservation {reserved['reservation_id']})")
        await cp.status(1, "Reserved")
        tx = await cp.start_transaction(1, reserved["id_tag"], reservation_id=reserved["reservation_id"])
        r.transaction_ids.append(tx)
        await cp.status(1, "Charging")
        energy = await _charge(cp, o, r, tx)
        await cp.stop_transaction(tx, energy, reason="Local")
        await cp.status(1, "Available")
        r.note(f"transaction {tx} on reservation {reserved['reservation_id']} done")
    finally:
        await s.close()
    return r


async def remote(o: Options) -> ScenarioResult:
    """Boot, then wait for RemoteStartTransaction and RemoteStopTransaction from the central system."""
    s = Session(o)
    cp = await s.open()
    r = ScenarioResult("remote", s.charge_point_id)
    try:
        r.note(f"boot: {(await cp.boot()).status}")
        await cp.status(1, "Available")
        start = await cp.wait_for("RemoteStartTransaction", timeout=o.wait)
        r.note(f"remote start for {start['id_tag']}")
        deadline = time.monotonic() + o.wait
        while 1 not in cp.transactions or cp.transactions[1] < 0:
            if time.monotonic() > deadline:
                raise TimeoutError("transaction did not start after RemoteStartTransaction")
            await asyncio.sleep(0.05)
        tx = cp.transactions[1]
        r.transaction_ids.append(tx)
        await cp.status(1, "Charging")
        while not cp.received["RemoteStopTransaction"]:
            await _charge(cp, Options(**{**o.__dict__, "samples": 1}), r, tx)
            if time.monotonic() > deadline:
                raise TimeoutError("no RemoteStopTransaction")
        await cp.wait_for("RemoteStopTransaction", timeout=o.wait)
        r.note(f"remote stop of transaction {tx}")
        await cp.status(1, "Available")
    finally:
        await s.close()
    return r


async def offline(o: Options) -> ScenarioResult:
    """Charge while offline (messages queued with timestamps `offline_age` ago), reconnect, replay."""
    s = Session(o)
    cp = await s.open()
    r = ScenarioResult("offline", s.charge_point_id)
    try:
        r.note(f"boot: {(await cp.boot()).status}")
        await cp.status(1, "Available")
        cp.offline = True
        await s.close()
        r.note("connection lost; charging offline")
        t0 = time.time() - o.offline_age
        local = await cp.start_transaction(1, o.id_tag, timestamp=t0)
        energy = cp.meter_wh
        for i in range(1, o.samples + 1):
            energy += int(o.power_w * 600 / 3600)
            await cp.meter(1, local, energy, o.power_w, timestamp=t0 + 600 * i)
        await cp.stop_transaction(local, energy, reason="Local", timestamp=t0 + 600 * (o.samples + 1))
        cp.offline = False
        await s.open()
        sent = await cp.replay()
        r.transaction_ids.append(cp._real(local))
        r.note(f"reconnected without reboot; replayed {sent} queued messages as transaction {cp._real(local)}")
        trigger = await cp.wait_for("TriggerMessage", timeout=o.wait)
        r.note(f"central system asked for {trigger['requested_message']}")
    finally:
        await s.close()
    return r


async def reboot(o: Options) -> ScenarioResult:
    """Lose power mid-transaction: reconnect, boot again, and stop the old session with reason Reboot."""
    s = Session(o)
    cp = await s.open()
    r = ScenarioResult("reboot", s.charge_point_id)
    try:
        r.note(f"boot: {(await cp.boot()).status}")
        tx = await cp.start_transaction(1, o.id_tag)
        r.transaction_ids.append(tx)
        energy = await _charge(cp, o, r, tx)
        await s.close()
        r.note("power lost mid-transaction")
        await s.open()
        r.note(f"boot after restart: {(await cp.boot()).status}")
        await cp.stop_transaction(tx, energy, reason="Reboot")
        await cp.status(1, "Available")
        r.note(f"transaction {tx} closed with reason Reboot")
    finally:
        await s.close()
    return r


GARBAGE = [
    "this is not json",
    "[2, \"g1\", \"BootNotification\"",
    "[7, \"g2\", \"Heartbeat\", {}]",
    "[2, \"g3\", \"NoSuchAction\", {}]",
    "[2, \"g4\", \"Reset\", {\"type\": \"Hard\"}]",
    "[2, \"g5\", \"StatusNotification\", {\"connectorId\": \"one\", \"errorCode\": \"NoError\", \"status\": \"Available\"}]",
    "[2, \"g6\", \"StatusNotification\", {\"connectorId\": 1, \"errorCode\": \"NoError\"}]",
    "[2, \"g7\", \"StatusNotification\", {\"connectorId\": 1, \"errorCode\": \"NoError\", \"status\": \"Melting\"}]",
    "{\"not\": \"a frame\"}",
]


async def garbage(o: Options) -> ScenarioResult:
    """Send malformed frames; every one should come back as a CALLERROR, and the charger keeps working."""
    connection: AiohttpConnection = await connect(o.url, auth_key=o.auth_key)
    r = ScenarioResult("garbage", o.url.rstrip("/").rsplit("/", 1)[-1])
    try:
        await connection.send(json.dumps([2, "boot", "BootNotification", {"chargePointVendor": "egw-sim", "chargePointModel": "Garbage"}]))
        r.note(f"boot: {json.loads(await connection.recv())[2].get('status')}")
        for text in GARBAGE:
            await connection.send(text)
            reply = json.loads(await asyncio.wait_for(connection.recv(), 10))
            r.errors.append(reply)
            r.note(f"{text[:40]!r} -> {reply[2] if reply[0] == 4 else reply}")
        await connection.send(json.dumps([2, "hb", "Heartbeat", {}]))
        reply = json.loads(await connection.recv())
        r.note(f"heartbeat afterwards: {'answered' if reply[0] == 3 else reply}")
    finally:
        await connection.close()
    return r


async def car(o: Options) -> ScenarioResult:
    """A car plugged in for `samples` intervals: it charges at the limit the central system sets (SetChargingProfile),
    following a new one in a few seconds, and MeterValues report what it really draws; paused (SuspendedEVSE) below 6 A."""
    s = Session(o)
    cp = await s.open()
    r = ScenarioResult("car", s.charge_point_id)
    try:
        r.note(f"boot: {(await cp.boot(model='SimCar')).status}")
        await cp.status(1, "Available")
        await plug_in_and_charge(cp, o, r)
    finally:
        await s.close()
    return r


async def plug_in_and_charge(cp: SimulatedChargePoint, o: Options, r: ScenarioResult, stop: asyncio.Event | None = None) -> None:
    """Plug a car (`o.car_max_a`, `o.car_phases`) into connector 1 of a booted charger with `o.reject_profiles`, charge
    for `o.samples` intervals (or until `stop` is set), then stop the session and unplug."""
    from simulators.charger.car import Car

    cp.car = Car(max_current_a=o.car_max_a, phases=o.car_phases, soc_percent=SOC_AT_PLUG_IN, battery_wh=BATTERY_WH)
    cp.reject_profiles = tuple(o.reject_profiles)
    await cp.status(1, "Preparing")
    tx = await cp.start_transaction(1, o.id_tag)
    r.transaction_ids.append(tx)
    cp._follow_limit()
    r.note(f"car plugged in, transaction {tx}")
    status = None
    start = energy = float(cp.meter_wh)
    for _ in range(o.samples):
        if stop is not None and stop.is_set():
            break
        now_status = "Charging" if cp.car_power_w() > 0 else "SuspendedEVSE"
        if now_status != status:
            await cp.status(1, now_status)
            status = now_status
        await asyncio.sleep(o.interval)
        cp.car.advance(cp.clock())
        energy = start + cp.car.energy_wh
        amps = round(cp.car.current_a(cp.clock()), 1)
        await cp.meter(1, tx, energy, cp.car_power_w(), soc_percent=round(cp.car.soc_percent, 1),
                       current_a={f"L{n}": amps for n in range(1, cp.car.phases_used + 1)})
    await cp.stop_transaction(tx, int(energy), reason="EVDisconnected", id_tag=o.id_tag)
    await cp.status(1, "Finishing")
    await cp.status(1, "Available")
    r.note(f"transaction {tx} stopped at {int(energy)} Wh")


SCENARIOS: dict[str, Callable[[Options], Awaitable[ScenarioResult]]] = {
    "normal": normal,
    "car": car,
    "reservation": reservation,
    "remote": remote,
    "offline": offline,
    "reboot": reboot,
    "garbage": garbage,
}


async def run_scenario(name: str, options: Options) -> ScenarioResult:
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; choose from {', '.join(SCENARIOS)}")
    return await SCENARIOS[name](options)
