"""On a box with a Bluetooth adapter: the GATT server registers with the real BlueZ.

Opt-in (it renames and advertises the adapter): EGW_BLE_HARDWARE=1. Skipped, with the
reason, where there is no system bus, no BlueZ or no adapter.
"""

from __future__ import annotations

import os

import pytest

from actors.ble.dispatch import HttpDispatcher
from actors.ble.server import BleServer, BleUnavailableError
from actors.ble.setup_code import SetupCodeGuard, generate_code
from actors.ble.tunnel import Tunnel


async def test_registers_and_advertises_with_real_bluez():
    if os.environ.get("EGW_BLE_HARDWARE") != "1":
        pytest.skip("real-hardware test: set EGW_BLE_HARDWARE=1 on a box with a Bluetooth adapter")
    server = BleServer("egw-hw-test", Tunnel(HttpDispatcher(1), lambda: True, lambda: None, SetupCodeGuard(generate_code())))
    try:
        await server.start()
    except BleUnavailableError as exc:
        pytest.skip(f"no usable Bluetooth here: {exc}")
    try:
        assert server.running and server.advertising
        assert await server._bless.is_advertising()
    finally:
        await server.stop()
