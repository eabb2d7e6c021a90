"""Modbus RTU end to end: the simulator on one pseudo-terminal, the gateway's link on another.

Two pseudo-terminals are bridged byte for byte by a thread, like a USB-RS485 adapter
on each end of a short bus. Real RTU framing (CRC, inter-frame timing) on both sides.
"""

from __future__ import annotations

import os
import pty
import select
import threading
import tty
from collections.abc import Iterator

import pytest

from actors.device.poller import EndpointPoller
from actors.device.link import ModbusLink
from actors.device.specs import device_child_specs
from simulators.inverter import InverterSimulator
from tests.device.conftest import MIDDAY


@pytest.fixture
def serial_pair() -> Iterator[tuple[str, str]]:
    m1, s1 = pty.openpty()
    m2, s2 = pty.openpty()
    for fd in (s1, s2):
        tty.setraw(fd)
    stop = threading.Event()

    def bridge() -> None:
        while not stop.is_set():
            ready, _, _ = select.select([m1, m2], [], [], 0.05)
            for fd in ready:
                try:
                    data = os.read(fd, 4096)
                except OSError:
                    return
                os.write(m2 if fd == m1 else m1, data)

    thread = threading.Thread(target=bridge, daemon=True)
    thread.start()
    try:
        yield os.ttyname(s1), os.ttyname(s2)
    finally:
        stop.set()
        thread.join(2)
        for fd in (m1, s1, m2, s2):
            os.close(fd)


def test_meters_on_one_rtu_bus_share_the_port_and_round_trip(serial_pair):
    sim_port, gateway_port = serial_pair
    with InverterSimulator("eastron_sdm630", serial_port=sim_port, units=(1, 2), clock=lambda: MIDDAY) as sim:
        devices = [{"id": f"meter{u}", "profile": "eastron_sdm630", "serial_port": gateway_port, "baudrate": 19200, "unit_id": u, "timeout": 1.0} for u in (1, 2)]
        [spec] = device_child_specs(devices)  # one bus, one actor
        group = spec.config["devices"]
        poller = EndpointPoller(group, ModbusLink(group[0]))
        try:
            outcomes = poller.run_due()
        finally:
            poller.link.close()
        assert [o.error for o in outcomes] == [None, None]
        for unit, outcome in zip((1, 2), outcomes, strict=True):
            expected = sim.expected(unit)
            for quantity, value in expected.items():
                assert outcome.reading.values[quantity] == pytest.approx(value, rel=1e-6), quantity
        assert poller.devices[1].state.serial == str(2_000_000_002)
