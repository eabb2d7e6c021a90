"""Register-block planner: as few Modbus requests as possible, each at most 125 registers.

Reading a block is one round trip; a device with 30 scattered points costs 30 round
trips unless adjacent points are merged. Points are grouped by function code, sorted,
and merged while the gap between them is at most `max_gap` registers (some devices
reject reads of unmapped registers, so the default gap is 0) and the block stays within
the Modbus limit of 125 registers per read.
"""

from __future__ import annotations

from dataclasses import dataclass

from actors.device.profile import Point

MAX_COUNT = 125


@dataclass(frozen=True)
class Block:
    function: int  # 3 holding registers, 4 input registers
    start: int
    count: int
    points: tuple[str, ...] = ()

    @property
    def end(self) -> int:
        return self.start + self.count


def plan_blocks(points: tuple[Point, ...] | list[Point], max_gap: int = 0, max_count: int = MAX_COUNT) -> list[Block]:
    """Merge points into blocks; a single point longer than `max_count` is an error."""
    blocks: list[Block] = []
    for function in sorted({p.function for p in points}):
        current: list[Point] = []
        start = end = 0
        for p in sorted((p for p in points if p.function == function), key=lambda p: (p.address, -p.count)):
            if p.count > max_count:
                raise ValueError(f"point {p.name} spans {p.count} registers, more than {max_count}")
            if current and p.address - end <= max_gap and max(end, p.end) - start <= max_count:
                current.append(p)
                end = max(end, p.end)
                continue
            if current:
                blocks.append(Block(function, start, end - start, tuple(q.name for q in current)))
            current, start, end = [p], p.address, p.end
        if current:
            blocks.append(Block(function, start, end - start, tuple(q.name for q in current)))
    return blocks
