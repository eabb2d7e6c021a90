"""The device actor: polls the devices behind one Modbus endpoint and feeds the harvest actor.

Config: one device's settings dict (see `actors.device.specs`), or {"devices": [...]} for
several unit ids sharing one endpoint. The actor is a thin shell around
`poller.EndpointPoller` (scheduling, backoff, decoding, gaps) and `unacked.UnackedBatches`
(bounded unacknowledged batches): it arms a timer for the next deadline, ships one
`ReadingBatch` per poll round, and publishes each device's state for status queries
(`values`, `serial`, `model`, `last_poll`, `errors`, `gaps`, `last_error`, `profile`,
`connection`, `unacknowledged`) on every change of state or error, else at most once a
second. A shared endpoint publishes the same per device under `devices`.

The harvest actor's address is looked up through the parent supervisor (`Lookup("harvest")`)
and looked up again whenever batches wait too long, because a restarted harvest actor has
a new address.
"""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

from thespian.actors import WakeupMessage

from actors.device.poller import DeviceState, EndpointPoller, PollOutcome
from actors.device.link import ModbusLink
from actors.device.unacked import UnackedBatches
from actors.device.specs import group_devices
from actors.harvest.messages import BatchAck, CounterOffsets, CounterOffsetsRequest
from actors.harvest.rejections import BatchRejected
from supervisor.actor import SupervisedActor
from supervisor.messages import Lookup, LookupResult

# Thespian's transport does no socket I/O while a wakeup is already due, so a poll timer
# armed in the past (a poll slower than its interval) would starve the mailbox: no acks,
# no heartbeat answers. Every timer is therefore armed at least this far in the future.
MIN_IDLE = 0.001
# Status goes to the supervisor on every state change, else at most this often: status is
# a view, each reading already travels once (to the harvest) and reaches the live feed
# from there, so nothing per poll needs to climb the supervision tree.
PUBLISH_EVERY = 5.0
# Readings of polls faster than this travel together: one batch (and one ack) per this many
# seconds instead of per poll halves a fast device's messages; a gap or a counter event
# goes at once. The restart gap covers what a killed actor held back.
SHIP_EVERY = 2.0
# At start, how long the first poll waits for the counter offsets of a predecessor; the
# harvest answers from one indexed read, so this is only reached when it is down.
SEED_WAIT = 2.0
POLL = "poll"
RESEND = "resend"
SEED_TIMEOUT = "seed-timeout"
HARVEST_PATH = "harvest"


class DeviceActor(SupervisedActor):
    """One Modbus endpoint (one or more unit ids), polled on absolute deadlines."""

    # Seams for tests: the link factory and the bounds of the unacknowledged batches.
    link_factory = ModbusLink
    unacked_limit = 8
    resend_after = 5.0
    ship_every_s: float | None = None  # None: SHIP_EVERY

    def on_start(self, config: Any) -> None:
        raw = config["devices"] if isinstance(config, dict) and "devices" in config else [config]
        groups = group_devices(raw)
        if len(groups) != 1:
            raise ValueError("a device actor serves exactly one endpoint")
        self.settings = groups[0]
        self.poller = EndpointPoller(self.settings, self.link_factory(self.settings[0]))
        intervals = {str(d["id"]): float(d.get("poll_interval", 10.0)) for d in self.settings}
        self.unacked = UnackedBatches(self.name, self.unacked_limit, self.resend_after, intervals=intervals)
        self.min_interval = min(intervals.values())
        self.ship_every = self.ship_every_s if self.ship_every_s is not None else SHIP_EVERY
        self.unshipped: list[PollOutcome] = []
        self.unshipped_since = 0.0
        self.harvest: Any = None
        self.lookup_sent_at: float | None = None
        self.connection = getattr(self.poller.link, "describe", "")
        self._last_logged: dict[str, tuple] = {}
        self._published_at = float("-inf")
        self.counters_seeded = False
        self._lookup_harvest()
        # the first poll waits for the counter offsets a predecessor left (CounterOffsets), at most SEED_WAIT
        self.wakeupAfter(timedelta(seconds=SEED_WAIT), payload=SEED_TIMEOUT)
        self.wakeupAfter(timedelta(seconds=self.resend_after), payload=RESEND)
        self.log.info("device actor started", devices=[d["id"] for d in self.settings], connection=self.connection)

    def on_stop(self) -> None:
        # readings held for the next ship go now, and an outage under way is closed as a gap:
        # a clean stop should not need the restart gap
        poller = getattr(self, "poller", None)
        if poller is not None:
            closing = [PollOutcome(d.device_id, gaps=gaps) for d in poller.devices if (gaps := d.gap.close(poller.clock.wall()))]
            self.unshipped = [*getattr(self, "unshipped", []), *closing]
        if getattr(self, "unshipped", None) and self.harvest is not None:
            self._ship(self.unshipped)
            self.unshipped = []
        poller = getattr(self, "poller", None)
        if poller is not None:
            poller.link.close()

    # ------------------------------------------------------------------ timers
    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:  # noqa: N802 (thespian API)
        if msg.payload == POLL:
            outcomes = self.poller.run_due()
            if outcomes:
                now = time.monotonic()
                if not self.unshipped:
                    self.unshipped_since = now
                self.unshipped += outcomes
                urgent = any(o.gaps or o.events or o.reading is None for o in outcomes)
                if urgent or now - self.unshipped_since >= self.ship_every - 0.25 * self.min_interval:
                    self._ship(self.unshipped)
                    self.unshipped = []
                self._publish()
            self._arm_poll()
        elif msg.payload == SEED_TIMEOUT:
            if not self.counters_seeded:
                self.log.warning("no counter offsets from the harvest in time; polling without them (a counter wrapped before may show as a reset)", waited_s=SEED_WAIT)
                self._seeded({})
        elif msg.payload == RESEND:
            self._resend()
            self.wakeupAfter(timedelta(seconds=self.resend_after), payload=RESEND)

    def _arm_poll(self) -> None:
        delay = max(MIN_IDLE, self.poller.next_wakeup() - time.monotonic())
        self.wakeupAfter(timedelta(seconds=delay), payload=POLL)

    # ----------------------------------------------------------------- harvest
    def receiveMsg_LookupResult(self, msg: LookupResult, sender: Any) -> None:  # noqa: N802
        if msg.path != HARVEST_PATH:
            return
        self.lookup_sent_at = None
        self.harvest = msg.address
        if self.harvest is not None:
            if not self.counters_seeded:
                self.send(self.harvest, CounterOffsetsRequest(tuple(d.device_id for d in self.poller.devices)))
            self._send_waiting()

    def receiveMsg_CounterOffsets(self, msg: CounterOffsets, sender: Any) -> None:  # noqa: N802
        if not self.counters_seeded:
            self._seeded(msg.offsets)

    def _seeded(self, offsets: dict[str, dict[str, tuple[float, float]]]) -> None:
        """Go on from the offsets a predecessor committed (a wrapped counter keeps rising), then poll."""
        self.counters_seeded = True
        for device in self.poller.devices:
            device.counters.seed(offsets.get(device.device_id, {}))
        self._arm_poll()

    def receiveMsg_BatchAck(self, msg: BatchAck, sender: Any) -> None:  # noqa: N802
        if msg.producer == self.name:
            self.unacked.ack(msg.batch_id)

    def receiveMsg_BatchRejected(self, msg: BatchRejected, sender: Any) -> None:  # noqa: N802
        """A malformed batch is a bug, not an outage: give it up at once, visibly, with the reason."""
        if msg.producer == self.name and self.unacked.reject(msg.batch_id):
            self.log.error("harvest rejected a batch; its readings are recorded as a gap", batch_id=msg.batch_id, reason=msg.reason)

    def _lookup_harvest(self) -> None:
        """Ask the supervisor where the harvest actor is now (at most one question in flight)."""
        now = time.monotonic()
        if self.parent is None or (self.lookup_sent_at is not None and now - self.lookup_sent_at < self.resend_after):
            return
        self.lookup_sent_at = now
        self.send(self.parent, Lookup(HARVEST_PATH))

    def _ship(self, outcomes: list[PollOutcome]) -> None:
        readings = [o.reading for o in outcomes if o.reading is not None]
        gaps = [g for o in outcomes for g in o.gaps]
        events = [e for o in outcomes for e in o.events]
        if not (readings or gaps or events):
            return
        dropped_before = self.unacked.dropped
        self.unacked.add(readings, gaps, events)
        if self.unacked.dropped != dropped_before:
            self.log.warning("harvest not acknowledging: oldest batch given up, recorded as a gap", unacknowledged=len(self.unacked), dropped=self.unacked.dropped)
        if self.harvest is not None:
            self._send_waiting()  # the new batch, after any older one the current harvest has not seen
        for event in events:
            self.log.warning("counter event", device=event.device_id, kind=event.kind, **event.detail)

    def _resend(self) -> None:
        """Batches waiting too long: ask for the harvest's current address, then send them again."""
        if self.unacked.due(time.monotonic()):
            self._lookup_harvest()

    def _send_waiting(self) -> None:
        """Send, oldest first, what was never sent, waited too long, or went to an old harvest address."""
        now = time.monotonic()
        for batch in self.unacked.due(now, to=self.harvest):
            self.send(self.harvest, batch)
            self.unacked.sent(batch.batch_id, now, self.harvest)

    # ------------------------------------------------------------------ status
    def _publish(self) -> None:
        states = [d.state for d in self.poller.devices]
        changed = [self._log_change(state) for state in states]
        now = time.monotonic()
        if not any(changed) and now - self._published_at < PUBLISH_EVERY:
            return
        self._published_at = now
        if len(states) == 1:
            self.publish(self._state_word(states[0]), **self._info(states[0]))
            return
        online = sum(s.online for s in states)
        word = "online" if online == len(states) else "offline" if online == 0 else "degraded"
        self.publish(word, connection=self.connection, unacknowledged=len(self.unacked), devices={s.device_id: {"state": self._state_word(s), **self._info(s)} for s in states})

    @staticmethod
    def _state_word(state: DeviceState) -> str:
        """online; degraded when some register blocks are refused (their values are null); offline."""
        if not state.online:
            return "offline"
        return "degraded" if state.failing_blocks else "online"

    def _info(self, state: DeviceState) -> dict[str, Any]:
        return {
            "values": dict(state.values),
            "serial": state.serial,
            "model": state.model,
            "last_poll": state.last_poll,
            "polls": state.polls,
            "poll_latency_ms": state.poll_latency_ms,
            "errors": state.errors,
            "gaps": state.gaps,
            "last_error": state.last_error,
            "profile": state.profile,
            "connection": self.connection,
            "unacknowledged": len(self.unacked),
            "batches_given_up": self.unacked.dropped,
            "failing_blocks": dict(state.failing_blocks),
            "reason": f"registers refused: {', '.join(sorted(state.failing_blocks))}" if state.failing_blocks else None,
        }

    def _log_change(self, state: DeviceState) -> bool:
        """Log a device's state when it changed; True if it did."""
        key = (state.online, state.last_error, state.serial, tuple(sorted(state.failing_blocks)))
        if self._last_logged.get(state.device_id) == key:
            return False
        self._last_logged[state.device_id] = key
        if state.online and state.failing_blocks:
            self.log.warning("device degraded: some registers refused, their values are null", device=state.device_id, blocks=state.failing_blocks)
        elif state.online:
            self.log.info("device online", device=state.device_id, serial=state.serial, last_error=state.last_error)
        else:
            self.log.warning("device offline", device=state.device_id, error=state.last_error, gaps=state.gaps)
        return True
