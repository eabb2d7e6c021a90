"""Many simulated chargers at once: connect a fleet, time its BootNotifications, close it.

Used by the churn tests and `python -m bench.ocpp_churn`: a gateway restart (every
charger reconnecting at once) and a site's turnover (hundreds of ids leaving and new
ones arriving) are the moments a central system is most likely to fall over.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import Any

from simulators.charger.chargepoint import SimulatedChargePoint
from simulators.charger.connection import connect


@dataclass
class Member:
    charge_point_id: str
    charge_point: SimulatedChargePoint | None = None
    connection: Any = None
    reader: asyncio.Task | None = None
    boot_seconds: float | None = None  # from opening the socket to the BootNotification's answer
    boot_status: str | None = None
    error: str | None = None


@dataclass
class Fleet:
    members: list[Member] = field(default_factory=list)

    @property
    def served(self) -> list[Member]:
        return [m for m in self.members if m.boot_status == "Accepted"]

    @property
    def failed(self) -> list[Member]:
        return [m for m in self.members if m.boot_status != "Accepted"]

    def slowest_boot(self) -> float:
        return max((m.boot_seconds or 0.0) for m in self.members) if self.members else 0.0

    def closed_by_gateway(self) -> list[Member]:
        """Members whose socket the gateway closed (a dropped session)."""
        return [m for m in self.members if m.connection is not None and m.connection.closed]


async def _join(url_base: str, member: Member, timeout: float) -> None:
    started = time.monotonic()
    try:
        member.connection = await connect(f"{url_base}/{member.charge_point_id}", timeout=timeout)
        member.charge_point = SimulatedChargePoint(member.charge_point_id, member.connection, response_timeout=timeout)
        member.reader = asyncio.create_task(member.charge_point.start())
        reply = await member.charge_point.boot()
        member.boot_status = reply.status
        member.boot_seconds = time.monotonic() - started
    except Exception as exc:  # noqa: BLE001 - a charger that was not served is a result, not a crash
        member.error = f"{type(exc).__name__}: {exc}"
        member.boot_seconds = time.monotonic() - started


async def connect_fleet(url_base: str, ids: list[str], *, timeout: float = 30.0) -> Fleet:
    """Open every id's websocket at the same moment and send its BootNotification."""
    fleet = Fleet([Member(i) for i in ids])
    await asyncio.gather(*(_join(url_base, m, timeout) for m in fleet.members))
    return fleet


async def close_fleet(fleet: Fleet) -> None:
    """Every member hangs up (the charger side closes; the gateway's actors wind down)."""

    async def leave(member: Member) -> None:
        if member.reader is not None:
            member.reader.cancel()
        if member.connection is not None:
            await member.connection.close()

    await asyncio.gather(*(leave(m) for m in fleet.members), return_exceptions=True)


async def heartbeats(fleet: Fleet, timeout: float = 30.0) -> list[str]:
    """Each served member sends a Heartbeat; the ids that got no answer."""

    async def beat(member: Member) -> str | None:
        try:
            await asyncio.wait_for(member.charge_point.heartbeat(), timeout)  # type: ignore[union-attr]
            return None
        except Exception:  # noqa: BLE001
            return member.charge_point_id

    missing = await asyncio.gather(*(beat(m) for m in fleet.served))
    return [m for m in missing if m]
