"""SunSpec discovery against device images built from pysunspec2's model definitions."""

from __future__ import annotations

import pytest

from actors.device.decode import poll_plan
from actors.device.poller import EndpointPoller
from actors.device.link import DeviceError, ModbusLink
from actors.device.sunspec import SUNS, SunSpecError, build_profile, discover, image_layout, model_points
from simulators.inverter import InverterSimulator
from tests.device.conftest import MIDDAY


def test_discovers_models_1_103_203_over_modbus_and_decodes_them():
    with InverterSimulator("sunspec", sunspec_models=(1, 103, 203), clock=lambda: MIDDAY) as sim:
        link = ModbusLink({"host": "127.0.0.1", "port": sim.port, "timeout": 1.0})
        link.connect()
        try:
            found = discover(lambda a, c: link.read(1, 3, a, c), not_here=(DeviceError,))
        finally:
            link.close()
        assert found.base == 40000
        assert [(m.id, m.address, m.length) for m in found.models] == [(1, 40002, 66), (103, 40070, 50), (203, 40122, 105)]
        settings = {"id": "ss", "sunspec": True, "host": "127.0.0.1", "port": sim.port, "unit_id": 1, "poll_interval": 1.0, "timeout": 1.0}
        poller = EndpointPoller([settings], ModbusLink(settings))
        try:
            [outcome] = poller.run_due()
        finally:
            poller.link.close()
        values = outcome.reading.values
        expected = sim.expected(1)
        assert values["ac_power_w"] == pytest.approx(expected["ac_power_w"], abs=1)  # model 103, W_SF = 0
        assert values["energy_total_wh"] == pytest.approx(expected["energy_total_wh"], abs=1)
        assert values["meter_import_wh"] == pytest.approx(expected["meter_import_wh"], abs=1)  # model 203
        assert values["voltage_l1_v"] == pytest.approx(expected["voltage_l1_v"], abs=0.1)  # V_SF = -1
        assert poller.devices[0].state.serial == sim.units[1].serial
        # Identity comes from model 1 and is read once per connection, not every poll.
        assert len(poll_plan(poller.devices[0].plan.profile).identity_blocks) == 1


class _Image:
    """A register image read like a device: out-of-map reads get an exception response."""

    def __init__(self, registers: dict[int, int]) -> None:
        self.registers = registers
        self.reads: list[tuple[int, int]] = []

    def read(self, address: int, count: int) -> list[int]:
        self.reads.append((address, count))
        if any(a not in self.registers for a in range(address, address + count)):
            raise DeviceError(2, f"{address}+{count}")
        return [self.registers[a] for a in range(address, address + count)]


@pytest.mark.parametrize("base", [40000, 0, 50000])
def test_finds_the_map_at_each_base_address(base):
    layout, fixed = image_layout([1, 103, 203], base)
    image = _Image({**{a: 0 for a in range(base, base + 300)}, **fixed})
    found = discover(image.read)
    assert found.base == base
    assert [m.id for m in found.models] == [1, 103, 203]


def test_no_marker_anywhere_is_a_clear_error():
    image = _Image({a: 0 for a in range(0, 10)})
    with pytest.raises(SunSpecError, match="no SunSpec map") as err:
        discover(image.read)
    assert "40000" in str(err.value) and "50000" in str(err.value)


def test_a_chain_without_end_marker_is_bounded():
    registers = {40000: SUNS[0], 40001: SUNS[1]}
    address = 40002
    while address < 65000:  # model 1 headers repeating with zero length ... forever
        registers[address], registers[address + 1] = 1, 0
        address += 2
    with pytest.raises(SunSpecError, match="end marker missing"):
        discover(_Image(registers).read)


def test_model_points_follow_the_pysunspec2_layout():
    layout, _ = image_layout([1, 103])
    points = {p.name: p for p in model_points(layout.models[1], {"ac_power_w": "W"})}
    assert points["m103.A"].address == 40072  # after ID and L
    assert points["m103.W"].address == 40072 + 12
    assert points["m103.W"].sf == "m103.W_SF" and points["m103.W"].quantity == "ac_power_w"
    assert points["m103.WH"].type == "U32" and points["m103.WH"].na == (0,)  # acc32: 0 = not implemented
    profile = build_profile(layout)
    assert profile.serial == "m1.SN"
