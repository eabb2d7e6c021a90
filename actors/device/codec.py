"""Register codec: raw 16-bit registers <-> typed values <-> physical values.

Decoding is split in two steps so each is checkable on its own: `decode_raw` turns a
point's registers into an int/float/str (or None for a "not available" marker), and
`to_physical` applies scale, scale factor and unit conversion. `encode` is the inverse,
used by the simulator, so a profile round-trips through the same code the gateway uses.
"""

from __future__ import annotations

import math
import struct

from actors.device.profile import Point
from actors.device.quantities import unit_factor

# SunSpec "not implemented" markers per type (raw register value as unsigned integer).
NA_MARKERS: dict[str, tuple[int, ...]] = {
    "U16": (0xFFFF,),
    "S16": (0x8000,),
    "U32": (0xFFFFFFFF,),
    "S32": (0x80000000,),
    "U64": (0xFFFFFFFFFFFFFFFF,),
    "S64": (0x8000000000000000,),
    "F32": (0x7FC00000, 0xFFC00000),
}
SF_MIN, SF_MAX = -10, 10  # the SunSpec range of a scale factor
_STRUCT = {"U16": ">H", "S16": ">h", "U32": ">I", "S32": ">i", "U64": ">Q", "S64": ">q", "F32": ">f"}


class CodecError(ValueError):
    """Registers do not fit the point (wrong length, value out of the type's range)."""


def _ordered(point: Point, regs: list[int]) -> list[int]:
    return list(reversed(regs)) if point.word_order == "little" and point.count > 1 else list(regs)


def registers_to_unsigned(point: Point, regs: list[int]) -> int:
    value = 0
    for word in _ordered(point, regs):
        value = (value << 16) | (word & 0xFFFF)
    return value


def decode_raw(point: Point, regs: list[int]) -> int | float | str | None:
    """The point's raw value, or None when it carries a not-available marker."""
    if len(regs) != point.count:
        raise CodecError(f"{point.name}: expected {point.count} registers, got {len(regs)}")
    if point.type == "STR":
        data = b"".join(w.to_bytes(2, "big") for w in regs)
        text = data.split(b"\x00", 1)[0].decode("ascii", errors="replace").strip()
        return text or None
    unsigned = registers_to_unsigned(point, regs)
    if unsigned in point.na or (point.na_default and unsigned in NA_MARKERS[point.type]):
        return None
    value = struct.unpack(_STRUCT[point.type], unsigned.to_bytes(2 * point.count, "big"))[0]
    if point.type == "F32":
        return shortest_f32(value) if math.isfinite(value) else None
    return value


def shortest_f32(value: float) -> float:
    """The shortest decimal that is the same float32: 49.98 Hz, not 49.97999954223633."""
    exact = struct.pack(">f", value)
    for digits in range(1, 10):
        candidate = float(f"{value:.{digits}g}")
        try:
            if struct.pack(">f", candidate) == exact:
                return candidate
        except OverflowError:  # near the float32 maximum a short decimal can round past it
            continue
    return value


def lsb(point: Point, sf: int | None = None) -> float:
    """The physical value of one raw step: the best resolution the point can report."""
    factor = unit_factor(point.quantity, point.unit) if point.quantity else 1.0
    step = abs(point.scale * (10.0 ** sf if sf is not None else 1.0) * (factor or 1.0))
    return step if point.type != "F32" else 0.0


def to_physical(point: Point, raw: int | float | None, sf: int | None = None) -> float | None:
    """Scale a raw value into the quantity's unit (or the point's unit when it has none)."""
    if raw is None or isinstance(raw, str):
        return raw
    if point.sf is not None and (sf is None or not SF_MIN <= sf <= SF_MAX):
        return None  # scale factor not implemented or garbage: the value is meaningless
    # One multiplication by the whole step: 0.01 kWh is exactly 10 Wh, and 429496731 * 10 has
    # no binary noise, where (429496731 * 0.01) * 1000 has some that round(.., 9) cannot remove.
    step = point.scale * ((unit_factor(point.quantity, point.unit) or 1.0) if point.quantity else 1.0)
    value = raw * step
    if sf is not None:
        value = value * (10.0 ** sf)
    if point.type == "F32":
        return value
    if value == int(value) and point.scale == 1.0 and (sf is None or sf >= 0):
        return int(value)
    return round(value, 9)  # drop binary noise such as 228.70000000000002 from 2287 * 0.1


def encode(point: Point, value: float | str | None, sf: int | None = None) -> list[int]:
    """Registers that decode back to `value` (physical units) within one LSB; None -> marker."""
    if point.type == "STR":
        data = (value or "").encode("ascii")[: 2 * point.count].ljust(2 * point.count, b"\x00")
        return [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    if value is None:
        if point.na:
            unsigned = point.na[0]
        elif point.type in NA_MARKERS:
            unsigned = NA_MARKERS[point.type][0]
        else:
            raise CodecError(f"{point.name}: no not-available marker for {point.type}")
    else:
        factor = (unit_factor(point.quantity, point.unit) or 1.0) if point.quantity else 1.0
        if isinstance(value, int) and factor == 1.0 and point.scale == 1.0 and not sf:
            raw = value  # exact: 64-bit counters do not survive a trip through float
        else:
            raw = value / factor / (10.0 ** sf if sf is not None else 1.0) / point.scale
        if point.type == "F32":
            unsigned = int.from_bytes(struct.pack(">f", raw), "big")
        else:
            fmt = _STRUCT[point.type]
            try:
                unsigned = int.from_bytes(struct.pack(fmt, round(raw)), "big")
            except struct.error as exc:
                raise CodecError(f"{point.name}: {value} does not fit {point.type}") from exc
    words = [(unsigned >> (16 * i)) & 0xFFFF for i in reversed(range(point.count))]
    return list(reversed(words)) if point.word_order == "little" and point.count > 1 else words
