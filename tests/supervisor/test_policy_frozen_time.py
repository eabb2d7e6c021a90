"""Backoff and restart intensity are exact: real Supervisor under simpleSystemBase, frozen clock.

No real sleeping: freezegun moves the clock, thespian's simple system base fires the
supervisor's wakeups when an `ask` runs after the clock has passed their deadline.
"""

from __future__ import annotations

import random

import pytest
from freezegun import freeze_time
from thespian.actors import ActorSystem

from supervisor.messages import Escalate, GetTree, Lookup, LookupResult, Start
from supervisor.policy import BackoffSchedule, RestartIntensity
from supervisor.spec import Backoff, ChildSpec, Containment, Heartbeat, Intensity, SupervisorSpec
from tests.supervisor.sample_actors import Hello, Raise, WhoAmI

EPOCH = 1767225600.0  # 2026-01-01T00:00:00Z


@pytest.fixture
def frozen_system():
    with freeze_time("2026-01-01 00:00:00") as clock:
        asys = ActorSystem("simpleSystemBase", transientUnique=True)
        try:
            yield asys, clock
        finally:
            asys.shutdown()


def _start(asys, spec):
    root = asys.createActor("supervisor.supervisor.Supervisor")
    asys.ask(root, Start("root", spec, path=""))
    return root


def _child(asys, root, name="device"):
    reply = asys.ask(root, Lookup(name))
    assert isinstance(reply, LookupResult)
    return reply.address


def _start_times_after_crashes(asys, clock, root, crashes: int, step: float = 0.25) -> list[float]:
    """Crash the child `crashes` times, each time as soon as it runs again; return its start times."""
    starts = []
    for _ in range(crashes):
        asys.tell(_child(asys, root), Raise())
        for _ in range(400):
            clock.tick(step)
            address = _child(asys, root)
            reply = asys.ask(address, Hello()) if address is not None else None
            if isinstance(reply, WhoAmI):
                starts.append(reply.started - EPOCH)
                break
        else:
            raise AssertionError("child never came back")
    return starts


def test_backoff_doubles_up_to_its_cap(frozen_system):
    asys, clock = frozen_system
    spec = SupervisorSpec(
        children=(ChildSpec("device", "tests.supervisor.sample_actors.Echo"),),
        backoff=Backoff(min_delay=1.0, max_delay=8.0, factor=2.0, jitter=0.0, reset_after=1000.0),
        intensity=Intensity(max_restarts=100, period=1000.0),
        containment=Containment(max_restarts=100, period=1000.0),
        heartbeat=Heartbeat(interval=10_000, timeout=20_000),
    )
    root = _start(asys, spec)
    starts = _start_times_after_crashes(asys, clock, root, crashes=6, step=0.25)
    # each crash happens right when the previous incarnation has started
    crash_times = [0.0] + starts[:-1]
    delays = [start - crash for start, crash in zip(starts, crash_times, strict=True)]
    assert delays == [1.0, 2.0, 4.0, 8.0, 8.0, 8.0]


def test_backoff_resets_after_a_healthy_period(frozen_system):
    asys, clock = frozen_system
    spec = SupervisorSpec(
        children=(ChildSpec("device", "tests.supervisor.sample_actors.Echo"),),
        backoff=Backoff(min_delay=1.0, max_delay=60.0, factor=3.0, jitter=0.0, reset_after=30.0),
        intensity=Intensity(max_restarts=100, period=1000.0),
        heartbeat=Heartbeat(interval=10_000, timeout=20_000),
    )
    root = _start(asys, spec)
    first = _start_times_after_crashes(asys, clock, root, crashes=2, step=0.5)
    assert first == [1.0, 1.0 + 3.0]
    clock.tick(30.0)  # healthy for 30 s: forgiven, the next delay is min_delay again
    again = _start_times_after_crashes(asys, clock, root, crashes=1, step=0.5)
    assert again == [34.0 + 1.0]


def _intensity_spec() -> SupervisorSpec:
    return SupervisorSpec(
        children=(ChildSpec("device", "tests.supervisor.sample_actors.Echo"),),
        backoff=Backoff(min_delay=1.0, max_delay=1.0, factor=1.0, jitter=0.0, reset_after=1000.0),
        intensity=Intensity(max_restarts=3, period=10.0),
        containment=Containment(max_restarts=100, period=10.0),  # the supervisor's intensity is under test here
        heartbeat=Heartbeat(interval=10_000, timeout=20_000),
    )


def _escalation(asys, root):
    replies = [asys.ask(root, GetTree()) for _ in range(3)]
    return next((r for r in replies if isinstance(r, Escalate)), replies)


def test_one_restart_more_than_the_intensity_allows_escalates(frozen_system):
    asys, clock = frozen_system
    root = _start(asys, _intensity_spec())
    # three crashes at t=0, 1, 2: exactly the limit of 3 in 10 s
    assert _start_times_after_crashes(asys, clock, root, crashes=3, step=0.5) == [1.0, 2.0, 3.0]
    asys.tell(_child(asys, root), Raise())  # the fourth, at t=3
    escalation = _escalation(asys, root)
    assert isinstance(escalation, Escalate)
    assert escalation.reason == "device restarted more than 3 times in 10 s"


def test_restarts_that_left_the_window_no_longer_count(frozen_system):
    asys, clock = frozen_system
    root = _start(asys, _intensity_spec())
    assert _start_times_after_crashes(asys, clock, root, crashes=3, step=0.5) == [1.0, 2.0, 3.0]
    clock.tick(10.0 - 3.0)  # t=10: the restart counted at t=0 is exactly 10 s old, outside
    assert _start_times_after_crashes(asys, clock, root, crashes=1, step=0.5) == [11.0]
    assert not isinstance(_escalation(asys, root), Escalate)


def test_intensity_counts_only_restarts_inside_the_sliding_window():
    intensity = RestartIntensity(Intensity(max_restarts=2, period=10.0))
    assert intensity.allow(0.0) and intensity.allow(5.0)
    assert not intensity.allow(9.99)  # three in 10 s
    assert intensity.allow(15.5)  # 0.0 and 5.0 have left the window; 9.99 and 15.5 remain


def test_jitter_stays_within_its_bounds_and_varies():
    schedule = BackoffSchedule(Backoff(min_delay=1.0, max_delay=100.0, factor=2.0, jitter=0.25, reset_after=1e9), random.Random(7))
    delays = [schedule.next_delay(now=0.0) for _ in range(6)]
    for n, delay in enumerate(delays):
        assert 0.75 * 2**n <= delay <= 1.25 * 2**n
    assert len({round(d / 2**n, 6) for n, d in enumerate(delays)}) > 1
