"""The simulator's Modbus TCP server: pymodbus SimDevice per unit id, values computed per request.

Registers are not stored: on every read the unit's `PvModel` is asked for the values at
the simulator's clock, and the profile's points are encoded with the gateway's own codec
into the block being read. Fault injection (`FaultPlan`) can be changed while it runs.
"""

from __future__ import annotations

import asyncio
import logging
import os
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusSerialServer, ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from actors.device.codec import encode
from actors.device.profile import Point, Profile, SunSpecFamily, load_profile
from actors.device.quantities import unit_factor
from actors.device.sunspec import build_profile, image_layout
from simulators.inverter.model import PvModel

SUNSPEC_MODELS = (1, 103, 203)
# Scale factors the simulator writes for points that have one, by unit.
SF_BY_UNIT = {"A": -2, "V": -1, "Hz": -2, "W": 0, "Wh": 0}

log = logging.getLogger("simulators.inverter")


@dataclass
class FaultPlan:
    """Faults applied to requests while set; thread-safe enough for flags read per request."""

    delay_s: float = 0.0  # answer late (the client may time out)
    exception_code: int = 0  # answer with this Modbus exception code instead of data
    exception_count: int = -1  # ... for this many requests (-1: until cleared)
    garbage: int = 0  # replace the next N responses with random bytes
    silent: bool = False  # receive requests but never answer
    requests: int = 0  # requests seen (for tests and the demo)

    def clear(self) -> None:
        self.delay_s, self.exception_code, self.exception_count, self.garbage, self.silent = 0.0, 0, -1, 0, False


class SimulatedUnit:
    """One unit id: a profile's register map filled from a PV model at time t."""

    def __init__(self, unit_id: int, profile: Profile, model: PvModel, fixed: dict[int, int] | None = None) -> None:
        self.unit_id = unit_id
        self.profile = profile
        self.model = model
        self.fixed = fixed or {}  # holding registers with constant values (SunSpec markers, ID/L)
        users: dict[str, str] = {}
        for p in profile.points:
            if p.sf:
                users.setdefault(p.sf, p.unit)
        self.sf_values = {name: SF_BY_UNIT.get(unit, 0) for name, unit in users.items()}
        serial = f"SIM{unit_id:03d}{zlib.crc32(profile.name.encode()) % 100000:05d}"
        serial_point = next((p for p in profile.points if p.name == profile.serial), None)
        if serial_point is not None and serial_point.type == "STR":
            serial = serial[: 2 * serial_point.count]  # fits the device's serial field
        self.serial = serial
        self.model_name = f"{profile.manufacturer or 'SunSpec'} simulated {profile.name}"

    def identity_value(self, point: Point) -> Any:
        if point.name == self.profile.match.get("point"):
            return f"{self.profile.match.get('prefix', '')} simulated"
        if point.name.endswith(".Mn"):
            return "SunSpec simulated"
        if point.type == "STR":
            if point.name == self.profile.serial or point.name.endswith(".SN"):
                return self.serial
            if point.name == self.profile.model or point.name.endswith(".Md"):
                return self.model_name
            return None
        if point.name == self.profile.serial:
            return 2_000_000_000 + self.unit_id
        if point.name == self.profile.model:
            return 9000 + self.unit_id
        return None

    def expected(self, t: float) -> dict[str, float]:
        """The normalized values this unit serves at time t (quantities of its profile only)."""
        values = self.model.values(t)
        return {q: values[q] for q in self.profile.quantities()}

    def registers(self, t: float) -> dict[int, dict[int, int]]:
        """function code -> address -> register value, for every point at time t."""
        values = self.model.values(t)
        out: dict[int, dict[int, int]] = {3: dict(self.fixed), 4: {}}
        # a summed quantity (e.g. PV power of several strings) is split evenly across its points
        shares = {name: (s.quantity, len(s.points)) for s in self.profile.sums for name in s.points}
        for p in self.profile.points:
            if p.address in self.fixed:  # SunSpec ID/L registers
                continue
            if p.name in shares:
                quantity, parts = shares[p.name]
                words = encode(p, values[quantity] / parts / (unit_factor(quantity, p.unit) or 1.0))
            elif p.name in self.sf_values:
                words = encode(p, self.sf_values[p.name])
            elif p.quantity:
                value = values[p.quantity]
                if p.quantity == "status":
                    value = round(value)
                words = encode(p, value, self.sf_values.get(p.sf) if p.sf else None)
            else:
                value = self.identity_value(p)
                if value is None and p.type != "STR" and not (p.na or p.na_default):
                    value = 0
                words = encode(p, value)
            for i, word in enumerate(words):
                out[p.function][p.address + i] = word
        return out

    def address_ranges(self) -> dict[int, tuple[int, int]]:
        """fc -> (first, end) covering all points, so any read inside the map is served."""
        ranges: dict[int, tuple[int, int]] = {}
        for p in self.profile.points:
            lo, hi = ranges.get(p.function, (p.address, p.end))
            ranges[p.function] = (min(lo, p.address), max(hi, p.end))
        if self.fixed:
            lo, hi = ranges.get(3, (min(self.fixed), max(self.fixed) + 1))
            ranges[3] = (min(lo, min(self.fixed)), max(hi, max(self.fixed) + 1))
        return ranges


def make_unit(profile_name: str, unit_id: int, model: PvModel | None = None, sunspec_models: tuple[int, ...] = SUNSPEC_MODELS) -> SimulatedUnit:
    loaded = load_profile(profile_name)
    model = model or PvModel()
    if isinstance(loaded, SunSpecFamily):
        layout, fixed = image_layout(list(sunspec_models), loaded.base_addresses[0])
        profile = build_profile(layout, loaded)
        return SimulatedUnit(unit_id, profile, model, fixed)
    return SimulatedUnit(unit_id, loaded, model)


class InverterSimulator:
    """A Modbus TCP server on 127.0.0.1 (or RTU on a serial port) in its own thread and asyncio loop."""

    def __init__(
        self,
        profile: str,
        port: int = 0,
        units: tuple[int, ...] | None = None,
        host: str = "127.0.0.1",
        clock: Callable[[], float] = time.time,
        sunspec_models: tuple[int, ...] = SUNSPEC_MODELS,
        peak_w: float = 5000.0,
        serial_port: str | None = None,
        baudrate: int = 19200,
        answer_any: bool = False,
    ) -> None:
        self.profile_name = profile
        self.answer_any = answer_any  # like some gateways and loggers: every address answers, unused ones with junk
        self.serial_port, self.baudrate = serial_port, baudrate  # Modbus RTU instead of TCP when set
        self.host, self.port = host, port
        self.clock = clock
        first = make_unit(profile, 0, PvModel(peak_w=peak_w), sunspec_models)
        unit_ids = units or (first.profile.unit_id or 1,)
        self.units = {u: make_unit(profile, u, PvModel(peak_w=peak_w * (1 + 0.1 * i)), sunspec_models) for i, u in enumerate(unit_ids)}
        self.faults = FaultPlan()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: ModbusTcpServer | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    # ------------------------------------------------------------- lifecycle
    def start(self, timeout: float = 5.0) -> InverterSimulator:
        if self._thread is not None:
            raise RuntimeError("simulator already running")
        self._started.clear()
        self._error = None
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.profile_name}", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout):
            raise TimeoutError("simulator did not start")
        if self._error is not None:
            self._thread = None
            raise self._error
        return self

    def stop(self) -> None:
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        fut = asyncio.run_coroutine_threadsafe(self._shutdown(), loop)
        try:
            fut.result(5.0)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(5.0)
            self._thread = self._loop = self._server = None

    def __enter__(self) -> InverterSimulator:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def drop_connections(self) -> None:
        """Close every open client connection now (the listener keeps running)."""
        loop, server = self._loop, self._server
        if loop is None or server is None:
            return
        done = threading.Event()

        def close_all() -> None:
            for conn in list(server.active_connections.values()):
                conn.close()
            done.set()

        loop.call_soon_threadsafe(close_all)
        done.wait(5.0)

    def expected(self, unit: int = 1) -> dict[str, float]:
        return self.units[unit].expected(self.clock())

    # ------------------------------------------------------------- internals
    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._serve())
        except BaseException as exc:  # noqa: BLE001 - reported to start()
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        loop.run_forever()
        loop.run_until_complete(loop.shutdown_asyncgens())
        loop.close()

    async def _serve(self) -> None:
        devices = [self._sim_device(u) for u in self.units.values()]
        if 0 not in self.units:
            devices.append(self._absent_units())
        if self.serial_port:
            self._server = ModbusSerialServer(devices, port=self.serial_port, baudrate=self.baudrate, trace_packet=self._trace_packet)
            await self._server.serve_forever(background=True)
            return
        self._server = ModbusTcpServer(devices, address=(self.host, self.port), trace_packet=self._trace_packet)
        await self._server.serve_forever(background=True)
        self.port = self._server.transport.sockets[0].getsockname()[1]

    async def _shutdown(self) -> None:
        if self._server is not None:
            for conn in list(self._server.active_connections.values()):
                conn.close()
            await self._server.shutdown()

    def _sim_device(self, unit: SimulatedUnit) -> SimDevice:
        ranges = unit.address_ranges()

        def block(fc: int) -> list[SimData]:
            lo, hi = (0, 65535) if self.answer_any else ranges.get(fc, (0, 1))
            return [SimData(lo, count=hi - lo, values=0, datatype=DataType.REGISTERS)]

        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        action = self._make_action(unit)
        return SimDevice(unit.unit_id, simdata=(bits, list(bits), block(3), block(4)), action=action)

    def _absent_units(self) -> SimDevice:
        """Unit id 0 catches every unit id not simulated: answer like a Modbus gateway does."""

        async def no_such_unit(*_args: Any) -> ExcCodes:
            return ExcCodes.GATEWAY_NO_RESPONSE

        regs = [SimData(0, count=65535, values=0, datatype=DataType.REGISTERS)]
        bits = [SimData(0, values=[False] * 16, datatype=DataType.BITS)]
        return SimDevice(0, simdata=(bits, list(bits), regs, list(regs)), action=no_such_unit)

    def _make_action(self, unit: SimulatedUnit):  # noqa: ANN202 - pymodbus SimAction
        async def action(function_code: int, start_address: int, address: int, count: int, registers: list[int], set_values: Any) -> ExcCodes | None:
            faults = self.faults
            faults.requests += 1
            if faults.delay_s:
                await asyncio.sleep(faults.delay_s)
            if faults.exception_code and faults.exception_count != 0:
                if faults.exception_count > 0:
                    faults.exception_count -= 1
                return ExcCodes(faults.exception_code)
            if set_values is None and function_code in (3, 4):
                with self._lock:
                    words = unit.registers(self.clock())[function_code]
                for a in range(address, address + count):
                    if a in words:
                        registers[a - start_address] = words[a]
                    elif self.answer_any:
                        registers[a - start_address] = junk_register(a)
            return None

        return action

    def _trace_packet(self, sending: bool, data: bytes) -> bytes:
        if not sending:
            return data
        if self.faults.silent:
            return b""
        if self.faults.garbage > 0:
            self.faults.garbage -= 1
            return os.urandom(max(len(data), 9))
        return data


def junk_register(address: int) -> int:
    """What an answer-anything device returns at an address it does not use: fixed, arbitrary."""
    return (address * 2654435761 >> 13) & 0xFFFF


def describe(sim: InverterSimulator) -> dict[str, Any]:
    where = {"serial_port": sim.serial_port, "baudrate": sim.baudrate} if sim.serial_port else {"host": sim.host, "port": sim.port}
    return {"profile": sim.profile_name, **where, "units": sorted(sim.units)}


__all__ = ["FaultPlan", "InverterSimulator", "SimulatedUnit", "describe", "make_unit"]
