"""Profiles load and validate; the planner and codec keep their promises on any input."""

from __future__ import annotations

import math
import struct

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from actors.device.codec import decode_raw, encode, lsb, to_physical
from actors.device.planner import MAX_COUNT, plan_blocks
from actors.device.profile import Point, Profile, ProfileError, SunSpecFamily, load_profile, parse_profile, profile_names

SHIPPED = ["deye", "eastron_sdm630", "fronius", "goodwe", "growatt", "huawei_sun2000", "sma", "solaredge", "solis", "sungrow", "sunspec"]


def test_every_listed_family_ships_and_names_its_document():
    assert profile_names() == SHIPPED
    for name in SHIPPED:
        profile = load_profile(name)
        assert profile.document and profile.document_version
        if isinstance(profile, Profile):
            assert profile.quantity_points(), name
            assert profile.serial, f"{name} has no serial-number point"


def test_sunspec_family_covers_the_required_models():
    family = load_profile("sunspec")
    assert isinstance(family, SunSpecFamily)
    assert family.base_addresses == (40000, 0, 50000)
    assert {101, 102, 103, 111, 112, 113, 160, 201, 202, 203, 204} <= set(family.models)


def _minimal(**point_overrides):
    point = {"name": "p", "address": 10, "type": "U16", "quantity": "ac_power_w", "unit": "W"}
    point.update(point_overrides)
    return {
        "schema": 1,
        "profile": {"name": "x", "kind": "inverter", "manufacturer": "M", "document": "D", "document_version": "1"},
        "identity": {"serial": "p"},
        "point": [point],
    }


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"type": "U17"}, "point[0].type", "'U17' is not one of"),
        ({"address": 70000}, "point[0].address", "0..65535"),
        ({"unit": "kW", "quantity": "grid_frequency_hz"}, "point[0].unit", "cannot be converted"),
        ({"quantity": "power"}, "point[0].quantity", "'power' is not one of"),
        ({"scale": 0}, "point[0].scale", "non-zero"),
        ({"sf": "nope"}, "point[0].sf", "no point named 'nope'"),
        ({"colour": "red"}, "point[0].colour", "unknown field"),
        ({"type": "U32", "count": 3}, "point[0].count", "always 2"),
    ],
)
def test_bad_point_is_rejected_naming_file_and_field(change, field, words):
    with pytest.raises(ProfileError) as err:
        parse_profile(_minimal(**change), "x.toml")
    assert err.value.file == "x.toml"
    assert err.value.field == field
    assert words in str(err.value)
    assert str(err.value).startswith(f"x.toml: {field}: ")


def test_profile_level_errors_name_the_field(tmp_path):
    data = _minimal()
    data["profile"]["word_order"] = "middle"
    with pytest.raises(ProfileError, match=r"x.toml: profile.word_order: 'middle' is not one of big, little"):
        parse_profile(data, "x.toml")
    del data["profile"]["word_order"]
    data["profile"]["name"] = "y"
    with pytest.raises(ProfileError, match=r"profile.name: 'y' must equal the file name 'x'"):
        parse_profile(data, "x.toml")
    bad = tmp_path / "broken.toml"
    bad.write_text("schema = 1\n[profile\n")
    with pytest.raises(ProfileError, match=r"^broken.toml: syntax: "):
        load_profile(str(bad))
    with pytest.raises(ProfileError, match="no such profile"):
        load_profile("no_such_vendor")


def test_duplicate_quantity_is_rejected():
    data = _minimal()
    data["point"].append({"name": "q", "address": 11, "type": "U16", "quantity": "ac_power_w", "unit": "W"})
    with pytest.raises(ProfileError, match="quantity 'ac_power_w' is provided by more than one point"):
        parse_profile(data, "x.toml")


# ------------------------------------------------------------------ planner
points_strategy = st.lists(
    st.tuples(st.integers(0, 2000), st.sampled_from(["U16", "U32", "U64"]), st.sampled_from([3, 4])),
    min_size=1,
    max_size=40,
)


@given(points_strategy, st.integers(0, 10))
def test_planner_covers_every_point_in_blocks_of_at_most_125(raw, max_gap):
    sizes = {"U16": 1, "U32": 2, "U64": 4}
    points = [Point(f"p{i}", a, t, sizes[t], function=fc) for i, (a, t, fc) in enumerate(raw)]
    blocks = plan_blocks(points, max_gap)
    for p in points:
        assert any(b.function == p.function and b.start <= p.address and p.end <= b.end for b in blocks), p
    for b in blocks:
        assert 1 <= b.count <= MAX_COUNT
    # Blocks of one function code never overlap, and are only as many as needed.
    for fc in (3, 4):
        mine = sorted((b for b in blocks if b.function == fc), key=lambda b: b.start)
        for first, second in zip(mine, mine[1:], strict=False):
            assert first.end <= second.start


def test_planner_merges_adjacent_points_and_respects_gaps():
    points = [Point("a", 100, "U16", 1), Point("b", 101, "U32", 2), Point("c", 105, "U16", 1), Point("d", 100, "U16", 1, function=4)]
    assert [(b.function, b.start, b.count) for b in plan_blocks(points, 0)] == [(3, 100, 3), (3, 105, 1), (4, 100, 1)]
    assert [(b.function, b.start, b.count) for b in plan_blocks(points, 2)] == [(3, 100, 6), (4, 100, 1)]
    long_run = [Point(f"p{i}", i * 2, "U32", 2) for i in range(100)]
    assert [(b.start, b.count) for b in plan_blocks(long_run)] == [(0, 124), (124, 76)]


# -------------------------------------------------------------------- codec
RANGES = {"U16": (0, 2**16 - 2), "S16": (-(2**15) + 1, 2**15 - 1), "U32": (0, 2**32 - 2), "S32": (-(2**31) + 1, 2**31 - 1), "U64": (0, 2**64 - 2)}


@given(st.sampled_from(sorted(RANGES)), st.sampled_from(["big", "little"]), st.data())
def test_integers_round_trip_through_registers(typ, order, data):
    count = {"U16": 1, "S16": 1, "U32": 2, "S32": 2, "U64": 4}[typ]
    point = Point("p", 0, typ, count, word_order=order)
    value = data.draw(st.integers(*RANGES[typ]))
    regs = encode(point, value)
    assert len(regs) == count and all(0 <= r <= 0xFFFF for r in regs)
    assert decode_raw(point, regs) == value


def test_word_order_is_honoured():
    big = Point("p", 0, "U32", 2, word_order="big")
    little = Point("p", 0, "U32", 2, word_order="little")
    assert decode_raw(big, [0x0001, 0x0002]) == 0x00010002
    assert decode_raw(little, [0x0001, 0x0002]) == 0x00020001


@given(st.floats(allow_nan=False, allow_infinity=False, width=32))
@example(3.4025001647762064e38)  # near the float32 maximum, where a shorter decimal overflows float32
def test_float32_round_trips_exactly(value):
    """Decoded as the shortest decimal that is the same float32: the same bits, no spurious digits."""
    import struct

    point = Point("p", 0, "F32", 2)
    decoded = decode_raw(point, encode(point, value))
    assert struct.pack(">f", decoded) == struct.pack(">f", value)
    assert len(f"{decoded:.9g}".rstrip("0")) <= len(f"{value:.9g}".rstrip("0"))  # never more significant digits


def test_sunspec_markers_become_none_only_where_enabled():
    assert decode_raw(Point("p", 0, "S16", 1, na_default=True), [0x8000]) is None
    assert decode_raw(Point("p", 0, "U16", 1, na_default=True), [0xFFFF]) is None
    assert decode_raw(Point("p", 0, "U32", 2, na_default=True), [0xFFFF, 0xFFFF]) is None
    assert decode_raw(Point("p", 0, "S32", 2, na_default=True), [0x8000, 0x0000]) is None
    assert decode_raw(Point("p", 0, "F32", 2, na_default=True), [0x7FC0, 0x0000]) is None
    assert decode_raw(Point("p", 0, "U32", 2, na=(0,)), [0, 0]) is None  # SunSpec acc32
    assert decode_raw(Point("p", 0, "U16", 1), [0xFFFF]) == 0xFFFF  # a vendor map without markers
    assert decode_raw(Point("p", 0, "STR", 2), [0, 0]) is None
    assert decode_raw(Point("p", 0, "F32", 2), list(divmod(int.from_bytes(struct.pack(">f", math.inf), "big"), 0x10000))) is None


def test_scale_factor_and_unit_conversion():
    power = Point("w", 0, "S16", 1, sf="w_sf", unit="W", quantity="ac_power_w")
    assert to_physical(power, 1234, -1) == pytest.approx(123.4)
    assert to_physical(power, 1234, 2) == 123400
    assert to_physical(power, 1234, None) is None  # scale factor not implemented: value unusable
    energy = Point("e", 0, "U32", 2, scale=0.01, unit="kWh", quantity="energy_total_wh")
    assert to_physical(energy, 123456, None) == pytest.approx(1_234_560)
    assert lsb(energy) == pytest.approx(10.0)
    assert lsb(power, -2) == pytest.approx(0.01)


# --------------------------------------------------- garbage register values
_PLANS = {}


def _plan(name):
    from actors.device.decode import poll_plan

    if name not in _PLANS:
        _PLANS[name] = poll_plan(load_profile(name))
    return _PLANS[name]


@given(st.sampled_from([n for n in SHIPPED if n != "sunspec"]), st.data())
def test_any_register_contents_decode_to_numbers_none_or_flags_never_an_exception(name, data):
    from actors.device.decode import decode_values

    plan = _plan(name)
    blocks = [data.draw(st.lists(st.integers(0, 0xFFFF), min_size=b.count, max_size=b.count)) for b in plan.blocks]
    decoded = decode_values(plan, blocks)
    assert set(decoded.values) == set(plan.profile.quantities())
    for quantity, value in decoded.values.items():
        assert value is None or (isinstance(value, (int, float)) and not math.isnan(value)), (quantity, value)
    assert set(decoded.flags) <= set(decoded.values)
    for quantity in decoded.flags:  # flagged values are out of their physical range
        from actors.device.quantities import out_of_range

        assert out_of_range(quantity, decoded.values[quantity])


def test_a_scale_factor_outside_the_sunspec_range_makes_the_value_unusable():
    power = Point("w", 0, "S16", 1, sf="w_sf", unit="W", quantity="ac_power_w")
    assert to_physical(power, 100, 10) == 100 * 10**10
    assert to_physical(power, 100, 11) is None
    assert to_physical(power, 100, 309) is None


def _with_two_strings(**sum_overrides):
    data = _minimal()
    data["point"] += [
        {"name": "pv1", "address": 20, "type": "U16", "unit": "W"},
        {"name": "pv2", "address": 21, "type": "U16", "unit": "W", "na": [0xFFFF]},
    ]
    data["sum"] = [{"quantity": "pv_power_w", "points": ["pv1", "pv2"], **sum_overrides}]
    return data


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        ({"points": ["pv1", "nope"]}, "sum[0].points", "no point named 'nope'"),
        ({"points": ["pv1"]}, "sum[0].points", "at least two"),
        ({"points": ["pv1", "p"]}, "sum[0].points", "without a quantity of its own"),
        ({"quantity": "grid_frequency_hz"}, "sum[0].points", "cannot be converted"),
        ({"quantity": "ac_power_w"}, "point", "more than one point or sum"),
    ],
)
def test_bad_sum_is_rejected_naming_file_and_field(change, field, words):
    with pytest.raises(ProfileError) as err:
        parse_profile(_with_two_strings(**change), "x.toml")
    assert err.value.field == field and words in str(err.value)


def test_a_summed_quantity_adds_its_inputs_and_skips_one_the_model_lacks():
    from actors.device.decode import decode_values, poll_plan

    profile = parse_profile(_with_two_strings(), "x.toml")
    plan = poll_plan(profile)
    assert profile.quantities() == ["ac_power_w", "pv_power_w"]

    def read(pv1: int, pv2: int) -> dict:
        registers = {10: 900, 20: pv1, 21: pv2}
        return decode_values(plan, [[registers.get(b.start + i, 0) for i in range(b.count)] for b in plan.blocks]).values

    assert read(1200, 800)["pv_power_w"] == 2000
    assert read(1200, 0xFFFF)["pv_power_w"] == 1200  # second input not fitted: "not available"


def _words(unsigned: int, count: int) -> list[int]:
    return [(unsigned >> (16 * i)) & 0xFFFF for i in reversed(range(count))]


def test_sma_nan_values_of_every_type_are_none():
    """SMA-Modbus-general-TI, "SMA Data Types and NaN Values": each type's NaN reads as absent."""
    sma = load_profile("sma")
    assert isinstance(sma, Profile)
    nan = {"S16": 0x8000, "S32": 0x80000000, "U16": 0xFFFF, "U32": 0xFFFFFFFF, "U64": 0xFFFFFFFFFFFFFFFF}
    for point in sma.points:
        assert decode_raw(point, _words(nan[point.type], point.count)) is None, point.name
    # the 24-bit NaN of status values and enumerations: what the condition reads at night
    for name in ("condition", "device_type"):
        assert decode_raw(sma.point(name), _words(0x00FFFFFD, 2)) is None, name
    assert decode_raw(sma.point("condition"), _words(307, 2)) == 307  # Ok
    # only enumerations: a counter may really hold 16777213 (Wh)
    assert decode_raw(sma.point("total_yield"), _words(0x00FFFFFD, 4)) == 0x00FFFFFD
    assert decode_raw(sma.point("battery_soc"), _words(0x00FFFFFD, 2)) == 0x00FFFFFD
    # the simulator encodes "not available" as the device does
    assert encode(sma.point("condition"), None) == [0x00FF, 0xFFFD]
