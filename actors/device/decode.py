"""From register blocks to normalized values: plan what to read, decode what came back.

Identity registers (serial, model) are read once per connection, live values every poll:
`PollPlan` keeps the two apart. `decode_values` returns values by quantity name, flags for
values outside their sanity range, and the raw blocks they came from (kept with the
reading so a wrong profile can be diagnosed later from stored data).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from actors.device.codec import decode_raw, to_physical
from actors.device.planner import Block, plan_blocks
from actors.device.profile import Point, Profile, Sum
from actors.device.quantities import QUANTITIES, out_of_range, unit_factor


@dataclass(frozen=True)
class PollPlan:
    profile: Profile
    blocks: tuple[Block, ...]  # read every poll
    identity_blocks: tuple[Block, ...]  # read once per connection
    # Worked out once so a poll only touches what it needs: quantity -> point, and for
    # every point read each poll, which block holds it and where.
    quantities: dict[str, Point] = field(default_factory=dict)
    slots: tuple[tuple[Point, int, int], ...] = ()


@dataclass(frozen=True)
class Decoded:
    values: dict[str, Any]
    raw: dict[str, list[int]] = field(default_factory=dict)
    flags: tuple[str, ...] = ()


def poll_plan(profile: Profile) -> PollPlan:
    summed = {name for s in profile.sums for name in s.points}
    live = [p for p in profile.points if p.quantity or p.name in summed]
    sf_names = {p.sf for p in live if p.sf}
    live += [p for p in profile.points if p.name in sf_names]
    ident_names = {profile.serial, profile.model, profile.match.get("point")} - {None}
    ident = [p for p in profile.points if p.name in ident_names]
    blocks = tuple(plan_blocks(live, profile.max_gap))
    slots = []
    for point in live:
        index = next(i for i, b in enumerate(blocks) if b.function == point.function and b.start <= point.address and point.end <= b.end)
        slots.append((point, index, point.address - blocks[index].start))
    return PollPlan(profile, blocks, tuple(plan_blocks(ident, profile.max_gap)), profile.quantity_points(), tuple(slots))


def block_key(block: Block) -> str:
    return f"{block.function}:{block.start}"


def _registers(point: Point, blocks: tuple[Block, ...], data: list[list[int]]) -> list[int] | None:
    for block, regs in zip(blocks, data, strict=True):
        if block.function == point.function and block.start <= point.address and point.end <= block.end:
            offset = point.address - block.start
            return regs[offset : offset + point.count]
    return None


def decode_points(profile: Profile, blocks: tuple[Block, ...], data: list[list[int]], names: set[str]) -> dict[str, Any]:
    """Raw decoded value of each named point found in the blocks (None = not available)."""
    out: dict[str, Any] = {}
    for point in profile.points:
        if point.name in names:
            regs = _registers(point, blocks, data)
            if regs is not None:
                out[point.name] = decode_raw(point, regs)
    return out


def decode_values(plan: PollPlan, data: list[list[int] | None]) -> Decoded:
    """Values of every quantity; a block the device refused (None) leaves its points null."""
    if len(data) != len(plan.blocks):
        raise ValueError(f"expected {len(plan.blocks)} blocks, got {len(data)}")
    raw = {point.name: decode_raw(point, data[index][offset : offset + point.count]) if data[index] is not None else None
           for point, index, offset in plan.slots}
    values: dict[str, Any] = {}
    flags: list[str] = []
    for quantity, point in plan.quantities.items():
        sf = raw.get(point.sf) if point.sf else None
        value = to_physical(point, raw.get(point.name), sf)
        values[quantity] = value
        if value is None or quantity not in QUANTITIES:
            continue
        if _outside(point, quantity, value):
            flags.append(quantity)
    for total in plan.profile.sums:
        value = sum_value(plan.profile, total, raw)
        values[total.quantity] = value
        if value is not None and out_of_range(total.quantity, value):
            flags.append(total.quantity)
    raw_blocks = {block_key(b): list(regs) for b, regs in zip(plan.blocks, data, strict=True) if regs is not None}
    return Decoded(values, raw_blocks, tuple(sorted(flags)))


def sum_value(profile: Profile, total: Sum, raw: dict[str, Any]) -> float | None:
    """The sum of the points in the quantity's unit. A point that reads "not available" is an
    input the model does not have (an unused second tracker reads NaN on SMA) and counts as
    absent; only when none is available is the sum None."""
    parts = []
    for name in total.points:
        point = profile.point(name)
        sf = raw.get(point.sf) if point.sf else None
        value = to_physical(point, raw.get(name), sf)
        if value is not None:
            parts.append(value * (unit_factor(total.quantity, point.unit) or 1.0))
    return round(sum(parts), 9) if parts else None


def _outside(point: Point, quantity: str, value: float) -> bool:
    if point.low is not None or point.high is not None:
        return (point.low is not None and value < point.low) or (point.high is not None and value > point.high)
    return out_of_range(quantity, value)


def decode_identity(plan: PollPlan, data: list[list[int]]) -> dict[str, Any]:
    """serial / model / the match point, as text (numbers are shown in decimal)."""
    profile = plan.profile
    names = {profile.serial, profile.model, profile.match.get("point")} - {None}
    raw = decode_points(profile, plan.identity_blocks, data, names)
    out: dict[str, Any] = {}
    for key, name in (("serial", profile.serial), ("model", profile.model), ("match", profile.match.get("point"))):
        if name and raw.get(name) is not None:
            out[key] = str(raw[name])
    return out
