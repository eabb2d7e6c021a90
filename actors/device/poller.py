"""The poll loop of one endpoint as plain logic: schedules, backoff, gaps, counter events.

Everything here takes time from an injected `Clock` and talks Modbus through a `Link`, so
the whole behaviour (late slots, outages, resets) can be replayed exactly under a frozen
clock without actors or sockets. The device actor only calls `run_due()` when its timer
fires and ships what comes back.

Rules it implements:

* Polls run on absolute monotonic deadlines `anchor + k * interval`: no drift; when late,
  the missed slots are skipped (never polled in a burst) and recorded as a gap.
* A broken connection puts the endpoint offline; reconnects are spaced by exponential
  backoff with jitter up to a cap; every poll slot missed meanwhile ends up in a gap.
* A device answering with an exception code stays online; its failed slots become gaps.
* Several unit ids behind one endpoint are polled one after another on one connection.
  A poll advances one Modbus request at a time: `run_due()` returns to the actor once
  RUN_BUDGET has passed, between two requests, and the poll goes on at the next call. So
  however slow the device, the actor's mailbox (heartbeats, acks) waits at most one
  request timeout plus RUN_BUDGET, never a whole poll of many blocks.
* A cumulative counter that goes down is a reset (or a wrap near the type's maximum):
  reported as an event, never as negative production. A wrap is unwrapped (the value goes
  on rising by the register's span); a reset reading is flagged `reset:<quantity>`.

Why one module: schedule, counter watch, gap tracker and the endpoint poller are the one
poll loop's state machine, driven by one injected clock and replayed as one in the tests;
they are small classes that only make sense together.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from collections.abc import Generator
from typing import Any, Protocol

from actors.device.codec import lsb
from actors.device.decode import PollPlan, block_key, decode_identity, decode_values, poll_plan
from actors.device.link import DeviceError, Link, LinkDownError, LinkError, NoResponseError
from actors.device.profile import Point, Profile, load_profile
from actors.device.quantities import QUANTITIES
from actors.device.sunspec import SunSpecError, build_profile, discover
from actors.harvest.messages import DeviceEvent, Gap, Reading
from supervisor.backoff import RetryBackoff
from supervisor.procs import boot_id as read_boot_id

# One run_due() sends no further request after this many seconds, so a handler never
# blocks much longer than one request timeout (the supervisor's heartbeat must get through).
RUN_BUDGET = 0.2
MAX_GAP_SLOTS = 3600  # a long outage is reported in chunks, so gaps are visible while it lasts ...
GAP_CHUNK_S = 30.0  # ... at least every half minute: a receiver sees an outage's slots while it goes on


class Clock(Protocol):
    def monotonic(self) -> float: ...

    def wall(self) -> float: ...


class SystemClock:
    """Reads the module attributes at call time, so freezegun's patches apply."""

    def monotonic(self) -> float:
        return time.monotonic()

    def wall(self) -> float:
        return time.time()


def boot_id() -> str:
    """This boot's id (`supervisor.procs.boot_id`), "unknown" where the kernel does not say."""
    return read_boot_id() or "unknown"


class PollSchedule:
    """Absolute deadlines anchor + k * interval; `take(now)` claims the current slot."""

    def __init__(self, interval: float, anchor: float) -> None:
        self.interval = interval
        self.anchor = anchor
        self.next_slot = 0

    @property
    def next_due(self) -> float:
        return self.anchor + self.next_slot * self.interval

    def take(self, now: float) -> tuple[int, float]:
        """Claim the latest slot due at `now`.

        Returns how many earlier slots were skipped, and the time of the first slot
        this call accounts for (the first skipped one, or the claimed one).
        """
        first = self.next_due
        current = math.floor((now - self.anchor) / self.interval + 1e-9)
        skipped = max(0, current - self.next_slot)
        self.next_slot = current + 1
        return skipped, first


@dataclass(frozen=True)
class CounterRange:
    """What a counter register can hold: `modulus` raw steps (2**bits) from `low`, `span` in the quantity's unit."""

    modulus: int
    span: float
    low: float = 0.0  # the lowest value (-span / 2 for a signed register)


def counter_range(point: Point | None) -> CounterRange | None:
    """The wrap range of a counter point: its width and scale say where it rolls over.

    None where a wrap has no fixed size: a summed quantity, a float register, or a
    SunSpec value whose scale factor is read at run time.
    """
    if point is None or point.type in ("F32", "STR") or point.sf:
        return None
    modulus = 2 ** (16 * point.count)
    span = lsb(point) * modulus
    span = int(span) if span == int(span) else span
    return CounterRange(modulus, span, -span / 2 if point.type.startswith("S") else 0.0)


class CounterWatch:
    """Cumulative counters: a wrap is unwrapped, any other decrease is a reset.

    A value that falls from the top tenth of its register's range to the bottom tenth has
    wrapped: from then on one more span is added (value + k * span), so the reported
    counter keeps rising and last - first stays the energy in between. Any other decrease
    is a reset (a replaced meter, a cleared counter): the offset starts again at 0 and the
    reading carries the flag `reset:<quantity>`. Both come with a DeviceEvent whose detail
    names the register's modulus and span, so a receiver can account for them.
    """

    def __init__(self) -> None:
        self.last: dict[str, float] = {}  # the last value reported (unwrapped)
        self.offset: dict[str, float] = {}  # k * span added to the register's value

    def seed(self, offsets: dict[str, tuple[float, float]]) -> None:
        """Start from what a previous life of this device actor committed: (offset, last value) per quantity."""
        for quantity, (offset, last) in offsets.items():
            self.offset[quantity], self.last[quantity] = offset, last

    def check(self, quantity: str, value: float, wrap: CounterRange | None = None) -> tuple[float, tuple[str, dict[str, Any]] | None]:
        """The value to report for `value` read now, and the (kind, detail) of a wrap or reset event."""
        offset = self.offset.get(quantity, 0)
        previous = self.last.get(quantity)
        reported = _add(value, offset)
        found = None
        if previous is not None and reported < previous:
            before = previous - offset  # what the register held at the last reading
            if wrap and before - wrap.low > 0.9 * wrap.span and value - wrap.low < 0.1 * wrap.span:
                kind, offset = "counter_wrap", offset + wrap.span
            else:
                kind, offset = "counter_reset", 0
            reported = _add(value, offset)
            found = kind, {
                "quantity": quantity, "previous": previous, "value": reported, "register_value": value, "offset": offset,
                "modulus": wrap.modulus if wrap else None, "span": wrap.span if wrap else None,
            }
        self.offset[quantity], self.last[quantity] = offset, reported
        return reported, found


def _add(value: float, offset: float) -> float:
    total = value + offset
    return total if isinstance(total, int) else round(total, 9)


@dataclass
class GapTracker:
    """One open gap per device: consecutive missed slots with the same reason merge."""

    device_id: str
    start_wall: float | None = None
    reason: str = ""
    missed: int = 0

    def miss(self, start_wall: float, reason: str, slots: int, now_wall: float | None = None) -> list[Gap]:
        """`slots` poll slots from `start_wall` on produced nothing, because of `reason` (noticed at `now_wall`)."""
        closed = []
        age = (now_wall if now_wall is not None else start_wall) - self.start_wall if self.start_wall is not None else 0.0
        if self.start_wall is not None and (reason != self.reason or self.missed >= MAX_GAP_SLOTS or age >= GAP_CHUNK_S):
            closed = self.close(start_wall)
        if self.start_wall is None:
            self.start_wall, self.reason, self.missed = start_wall, reason, 0
        self.missed += slots
        return closed

    def close(self, wall: float) -> list[Gap]:
        if self.start_wall is None or self.missed == 0:
            self.start_wall = None
            return []
        gap = Gap(self.device_id, self.start_wall, wall, self.reason, self.missed)
        self.start_wall, self.missed = None, 0
        return [gap]


@dataclass
class DeviceState:
    """What the gateway shows about one device (published after every poll)."""

    device_id: str
    profile: str
    online: bool = False
    values: dict[str, Any] = field(default_factory=dict)
    serial: str | None = None
    model: str | None = None
    last_poll: float | None = None
    polls: int = 0  # successful polls since the actor started
    poll_latency_ms: float | None = None  # time the last successful poll's reads took
    errors: int = 0
    gaps: int = 0
    last_error: str | None = None
    failing_blocks: dict[str, str] = field(default_factory=dict)  # "fc:start" -> the device's exception, from the last poll


@dataclass
class PollOutcome:
    device_id: str
    reading: Reading | None = None
    gaps: list[Gap] = field(default_factory=list)
    events: list[DeviceEvent] = field(default_factory=list)
    error: str | None = None
    reconnect: bool = False  # the link's framing is suspect: reopen it before the next request
    link_down: bool = False  # the connection broke during this poll


class DevicePoller:
    """One device (unit id) on an endpoint: its plan, schedule, counters and gap tracker."""

    def __init__(self, settings: dict[str, Any], clock: Clock, boot: str, anchor: float) -> None:
        self.settings = settings
        self.device_id: str = settings["id"]
        self.unit: int = int(settings.get("unit_id", 1))
        self.sunspec = bool(settings.get("sunspec")) or settings.get("profile") == "sunspec"
        self.clock, self.boot = clock, boot
        self.schedule = PollSchedule(float(settings.get("poll_interval", 10.0)), anchor)
        self.plan: PollPlan | None = None
        if not self.sunspec:
            profile = load_profile(settings["profile"])
            assert isinstance(profile, Profile)
            self.plan = poll_plan(profile)
        self.identity_read = False
        self.raw_interval = float(settings.get("raw_interval", 0.0))
        self.raw_at: float | None = None  # wall time of the last reading that carried raw registers
        self.counters = CounterWatch()
        self.gap = GapTracker(self.device_id)
        self.link_was_down = False  # set while the endpoint is offline: slots skipped until the next poll were lost to the outage
        self.state = DeviceState(self.device_id, "sunspec" if self.sunspec else settings["profile"])

    # ------------------------------------------------------------------ polling
    def missed(self, now: float, reason: str) -> PollOutcome:
        """The current slot (and any skipped before it) passed without a reading."""
        skipped, first = self.schedule.take(now)
        wall = self.clock.wall()
        return PollOutcome(self.device_id, gaps=self.gap.miss(wall - (now - first), reason, skipped + 1, wall), error=reason)

    def poll(self, link: Link, now: float) -> PollOutcome:
        """One whole poll in one call (replays and tests); the actor's path is `polling`."""
        steps = self.polling(link, now)
        while True:
            try:
                next(steps)
            except StopIteration as done:
                return done.value

    def polling(self, link: Link, now: float) -> Generator[None, None, PollOutcome]:
        """A poll of this slot, pausing (yield) after every Modbus request; returns its outcome."""
        skipped, first = self.schedule.take(now)
        wall = self.clock.wall()
        outcome = PollOutcome(self.device_id)
        if skipped:  # slots that passed while the link was down (backoff) are offline, not late
            outcome.gaps += self.gap.miss(wall - (now - first), "offline" if self.link_was_down else "late", skipped)
        self.link_was_down = False
        try:
            plan = self._ensure_plan(link)
            yield from self._ensure_identity(link, plan)
            timing = [0.0]  # seconds spent in requests: a measurement for status, not a schedule input
            data, block_errors = yield from self._read_blocks(link, plan, timing)
            latency_ms = timing[0] * 1000.0
        except (LinkError, SunSpecError) as exc:
            reason = exc.reason if isinstance(exc, LinkError) else "sunspec_discovery"
            outcome.link_down = isinstance(exc, LinkDownError)
            slot_wall = wall - (now - (first + skipped * self.schedule.interval))
            outcome.gaps += self.gap.miss(slot_wall, reason, 1)
            outcome.error = f"{reason}: {exc}"
            outcome.reconnect = isinstance(exc, NoResponseError)
            self.state.errors += 1
            self.state.last_error = outcome.error
            return outcome
        decoded = decode_values(plan, data)
        outcome.gaps += self.gap.close(wall)
        self.state.failing_blocks = dict(block_errors)
        if block_errors:
            self.state.errors += 1  # a partial reading still counts: some of what was asked failed
        flags = list(decoded.flags)
        for quantity, value in list(decoded.values.items()):
            if value is not None and QUANTITIES[quantity].counter:
                # plan.quantities has no entry for a summed quantity: no single register, no wrap range
                decoded.values[quantity], found = self.counters.check(quantity, value, counter_range(plan.quantities.get(quantity)))
                if found:
                    outcome.events.append(DeviceEvent(self.device_id, wall, found[0], found[1]))
                    if found[0] == "counter_reset":
                        flags.append(f"reset:{quantity}")  # not a quantity name: the value itself is good and still counts
        with_raw = bool(flags or block_errors or outcome.events) or self.raw_at is None or wall - self.raw_at >= self.raw_interval
        if with_raw:
            self.raw_at = wall
        raw = dict(decoded.raw) if with_raw else {}
        if block_errors:
            raw["block_errors"] = dict(block_errors)  # which registers failed, and how: values from them are null
        outcome.reading = Reading(
            device_id=self.device_id,
            wall_time=wall,
            mono_time=now,
            boot_id=self.boot,
            values=decoded.values,
            raw=raw,
            flags=tuple(sorted(flags)),
        )
        self.state.values = {q: v for q, v in decoded.values.items() if q not in decoded.flags}
        self.state.last_poll = wall
        self.state.polls += 1
        self.state.poll_latency_ms = round(latency_ms, 3)
        self.state.last_error = None if not block_errors else "some registers failed: " + "; ".join(f"{k}: {v}" for k, v in block_errors.items())
        return outcome

    def _read_blocks(self, link: Link, plan: PollPlan, timing: list[float]) -> Generator[None, None, tuple[list[list[int] | None], dict[str, str]]]:
        """Every block of the plan; one the device refuses (an exception code) is None, not the end of the reading.

        Only when every block is refused is the poll a failure: a device that answers
        nothing it is asked is not delivering a reading at all.
        """
        data: list[list[int] | None] = []
        refused: dict[str, DeviceError] = {}
        for block in plan.blocks:
            started = time.perf_counter()
            try:
                data.append(link.read(self.unit, block.function, block.start, block.count))
            except DeviceError as exc:
                data.append(None)
                refused[block_key(block)] = exc
            finally:
                timing[0] += time.perf_counter() - started
            yield
        if refused and len(refused) == len(plan.blocks):
            raise DeviceError(next(iter(refused.values())).code, "every block of the poll")
        return data, {key: str(exc) for key, exc in refused.items()}

    def connection_lost(self) -> None:
        self.identity_read = False
        if self.sunspec:
            self.plan = None  # the device may have been replaced: discover again

    def _ensure_plan(self, link: Link) -> PollPlan:
        if self.plan is None:
            found = discover(lambda address, count: link.read(self.unit, 3, address, count), not_here=(DeviceError,))
            self.plan = poll_plan(build_profile(found))
        return self.plan

    def _ensure_identity(self, link: Link, plan: PollPlan) -> Generator[None, None, None]:
        if self.identity_read:
            return
        self.identity_read = True
        blocks: list[list[int]] = []
        try:
            for b in plan.identity_blocks:
                blocks.append(link.read(self.unit, b.function, b.start, b.count))
                yield
            identity = decode_identity(plan, blocks)
        except DeviceError as exc:
            self.state.last_error = f"identity: {exc}"
            return
        self.state.serial = identity.get("serial")
        self.state.model = identity.get("model")


class EndpointPoller:
    """All devices behind one endpoint, sharing one link, polled one request at a time."""

    def __init__(
        self,
        devices: list[dict[str, Any]],
        link: Link,
        clock: Clock | None = None,
        boot: str | None = None,
        backoff: RetryBackoff | None = None,
        run_budget: float = RUN_BUDGET,
    ) -> None:
        self.clock = clock or SystemClock()
        self.link = link
        now = self.clock.monotonic()
        boot = boot or boot_id()
        self.devices = [DevicePoller(s, self.clock, boot, now) for s in devices]
        first = devices[0]
        self.backoff = backoff or RetryBackoff(cap=float(first.get("backoff_cap", 60.0)))
        self.connected = False
        self.reconnect_at = now  # connect on the first run
        self.run_budget = run_budget
        self.connection_errors = 0
        self.round: list[DevicePoller] = []  # devices whose slot came, still to be polled this round
        self.active: tuple[DevicePoller, Generator[None, None, PollOutcome]] | None = None  # the poll under way

    @property
    def busy(self) -> bool:
        """A poll round is under way: the next run_due() continues it."""
        return self.active is not None or bool(self.round)

    def next_wakeup(self) -> float:
        if self.busy:
            return self.clock.monotonic()  # go on right after the mailbox had its turn
        due = min(d.schedule.next_due for d in self.devices)
        # offline, wake for the slots at least every GAP_CHUNK_S / 2 even while the reconnect backs off:
        # they are taken (no I/O) and the outage's gap is reported while it lasts
        return due if self.connected else max(due, min(self.reconnect_at, due + GAP_CHUNK_S / 2))

    def run_due(self) -> list[PollOutcome]:
        """Poll every device whose slot has come, a request at a time; connect first when needed.

        Returns once the round is done or RUN_BUDGET has passed (between two requests);
        outcomes of polls that finished are returned, the one under way goes on next call.
        """
        now = self.clock.monotonic()
        if not self.busy:
            due = [d for d in self.devices if d.schedule.next_due <= now + 1e-9]
            if not due:
                return []
            if not self.connected and now < self.reconnect_at:
                return self._count([d.missed(now, "offline") for d in due])
            self.round = due
        outcomes: list[PollOutcome] = []
        stepped = False
        while self.busy:
            if stepped and self.clock.monotonic() - now > self.run_budget:
                break  # slow answers: the poll goes on next turn, after the mailbox had its turn
            stepped = True
            if self.active is None:
                device = self.round.pop(0)
                if not self.connected:
                    try:
                        self.link.connect()
                    except LinkError as exc:
                        rest, self.round = [device, *self.round], []
                        return self._count(outcomes + self._went_down(self.clock.monotonic(), rest, str(exc)))
                    self.connected = True
                    self.backoff.reset()
                self.active = (device, device.polling(self.link, self.clock.monotonic()))
            device, steps = self.active
            try:
                next(steps)
                continue
            except StopIteration as done:
                outcome = done.value
            self.active = None
            outcomes.append(outcome)
            if outcome.link_down:  # this device's slot is accounted for; the rest miss theirs
                device.state.online = False
                rest, self.round = self.round, []
                return self._count(outcomes + self._went_down(self.clock.monotonic(), rest, outcome.error or "offline"))
            device.state.online = outcome.reading is not None or (outcome.error or "").startswith("device_error")
            if outcome.reconnect:
                self.link.close()
                self.connected = False
                for d in self.devices:
                    d.connection_lost()
        return self._count(outcomes)

    def _count(self, outcomes: list[PollOutcome]) -> list[PollOutcome]:
        by_id = {d.device_id: d for d in self.devices}
        for outcome in outcomes:
            by_id[outcome.device_id].state.gaps += len(outcome.gaps)
        return outcomes

    def _went_down(self, now: float, due: list[DevicePoller], why: str) -> list[PollOutcome]:
        self.connected = False
        self.connection_errors += 1
        self.link.close()
        self.reconnect_at = now + self.backoff.next_delay()
        outcomes = []
        for device in self.devices:
            device.connection_lost()
            device.link_was_down = True
            device.state.online = False
            device.state.last_error = why if why.startswith("offline") else f"offline: {why}"
        for device in due:
            device.state.errors += 1
            outcomes.append(device.missed(now, "offline"))
            outcomes[-1].error = f"offline: {why}"
        return outcomes

