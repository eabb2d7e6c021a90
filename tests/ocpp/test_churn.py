"""Connection churn: a whole fleet arriving at once, and new ids right after others left.

The moments a central system is most likely to fall over are a gateway restart (every
charger reconnects in the same second) and turnover (hundreds of ids leave, new ones
arrive). Every BootNotification must be answered, the `chargers` supervisor must not be
taken for hung while it starts hundreds of actors, and chargers that stay connected
through it all keep their sessions.
"""

from __future__ import annotations

import asyncio

import pytest

from simulators.fleet import close_fleet, connect_fleet, heartbeats
from tests.conftest import wait_until
from tests.ocpp.test_actors import running, start_gateway, tree


def _churn(asys, tmp_path, size: int) -> None:
    root, port = start_gateway(asys, tmp_path)
    wait_until(lambda: running(asys, root, "ocpp") and running(asys, root, "chargers"), what="listener and chargers running")
    before = tree(asys, root)
    url = f"ws://127.0.0.1:{port}/ocpp"

    async def scenario():
        staying = await connect_fleet(url, [f"STAY{n}" for n in range(5)])
        assert len(staying.served) == 5, [m.error for m in staying.failed]
        leaving = await connect_fleet(url, [f"OLD{n}" for n in range(size)])
        assert len(leaving.served) == size, [m.error for m in leaving.failed][:5]
        await close_fleet(leaving)
        arriving = await connect_fleet(url, [f"NEW{n}" for n in range(size)])  # right after the others left
        assert not arriving.failed, f"{len(arriving.failed)} of {size} not served, e.g. {[m.error for m in arriving.failed][:3]}"
        assert await heartbeats(staying) == [] and not staying.closed_by_gateway(), "a charger that stayed lost its session"
        assert await heartbeats(arriving) == []
        print(f"{size} new ids after {size} left: slowest BootNotification answered after {arriving.slowest_boot():.2f} s")
        await close_fleet(arriving)
        await close_fleet(staying)

    asyncio.run(scenario())
    after = tree(asys, root)
    for name in ("chargers", "ocpp"):
        assert (after[name]["pid"], after[name]["restarts"]) == (before[name]["pid"], before[name]["restarts"]), f"{name} was restarted"


def test_50_new_chargers_right_after_50_left_are_all_served_and_no_supervisor_is_restarted(multiproc_system, tmp_path):
    _churn(multiproc_system, tmp_path, 50)


@pytest.mark.soak
def test_200_new_chargers_right_after_200_left_are_all_served_and_no_supervisor_is_restarted(multiproc_system, tmp_path):
    _churn(multiproc_system, tmp_path, 200)
