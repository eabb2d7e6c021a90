"""The charger actor: one per connected charge point, a thin shell around `ChargerProtocol`.

Created by the "chargers" supervisor when the listener asks (`StartChild`), named after
the chargePointId. Everything it knows is in SQLite, so after a crash or SIGKILL the
restarted actor reloads the charger's registration and open sessions and carries on;
it then introduces itself to the listener (`ChargerReady`), which re-attaches the live
websocket. Frames that were in flight to the dead actor are lost; the charger repeats
an unanswered CALL after its own timeout, and replays are idempotent (same transaction
id, duplicate samples ignored).

What it does with the protocol's effects:
  frames      -> over its link to the listener's loop (`actors.ocpp.replies`), else `FrameOut`
                 (incoming frames arrive over that link too, else as `FrameIn`)
  outcomes    -> `CommandOutcome` to whoever sent the `ChargerCommand`
  live        -> `LiveUpdate` / `ConnectorStatus` to subscribers (at most 16), and as
                 `LiveEvent`s to the API's live feed (`actors.live`)
  exports     -> `ReadingBatch`es to the harvest actor, one in flight, deleted on `BatchAck`,
                 replaced by a gap record on `BatchRejected`

Config (from the child spec): {"db_path": str, "policy": dict of `OcppPolicy` fields}.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

from thespian.actors import ThespianWatch, WakeupMessage, WatchMessage

from actors.harvest.messages import BatchAck
from actors.harvest.rejections import BatchRejected
from actors.ocpp.live_events import live_events
from actors.live.publisher import LivePublisher
from actors.ocpp.export import ExportForwarder
from actors.ocpp.messages import (
    CancelCommand,
    ChargerCommand,
    ChargerConnected,
    ChargerDisconnected,
    ChargerReady,
    CloseConnection,
    Disconnect,
    Disconnected,
    CommandOutcome,
    FrameIn,
    FrameOut,
    Subscribe,
    Unsubscribe,
)
from actors.ocpp.policy import OcppPolicy
from actors.ocpp.protocol import ChargerProtocol, Effects
from actors.ocpp.replies import ReplySender
from actors.ocpp.sequencing import Resequencer
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store
from storage.db import connect
from supervisor.actor import SupervisedActor
from supervisor.messages import Lookup, LookupResult

# Timers are armed for the next deadline (a central call's timeout, the refresh grace,
# a live-figure write, a lookup retry, an export ack) instead of ticking every 0.25 s:
# 200 idle charger actors ticking 4 times a second cost 800 process wake-ups a second
# on the gateway's two cores, which showed as most of the OCPP latency (bench.ocpp).
# A safety net only (every deadline is tracked): 30 s, the reservation sweep's period. At
# 5 s, 200 actors started together woke together and showed as a latency spike every 5 s.
MAX_TICK = 30.0
MIN_TICK = 0.01  # never arm in the past (docs/architecture.md), never spin on an overdue deadline
LOOKUP_RETRY = 2.0
MAX_SUBSCRIBERS = 16
MAX_PENDING_COMMANDS = 256
STATUS_EVERY = 5.0  # seconds between status updates that only carry new message counts


class ChargerActor(SupervisedActor):
    def on_start(self, config: dict[str, Any]) -> None:
        self.charge_point_id = self.name
        self.conn = connect(config["db_path"])
        charger_store.init(self.conn)
        tx_store.init(self.conn)
        self.protocol = ChargerProtocol(self.charge_point_id, self.conn, OcppPolicy.from_config(config.get("policy")), log=self.log)
        charger = charger_store.get_charger(self.conn, self.charge_point_id)
        if charger is not None and charger["connected"]:
            charger_store.set_connected(self.conn, self.charge_point_id, False, time.time())  # until the listener says otherwise
        self.listener: Any = None
        self.replies = ReplySender()  # frames straight to the listener's loop; FrameOut if that fails
        self.harvest: Any = None
        self.connection_id: int | None = None
        self.incoming = Resequencer()
        self.subscribers: list[Any] = []
        self.requesters: dict[int, tuple[Any, Any]] = {}
        self._ids: Iterator[int] = itertools.count(1)
        self.exports = ExportForwarder(self.conn, self.charge_point_id, producer=self.path)
        self._next_lookup = 0.0
        self._armed: float | None = None  # monotonic time of the earliest pending tick
        self.live = LivePublisher(self)  # the REST API's live feed (fire-and-forget)
        self._lookup()
        self._arm()
        active = tx_store.active_transactions(self.conn, self.charge_point_id)
        self.log.info("charger actor started", active_transactions=[t["transaction_id"] for t in active], accepted=self.protocol.accepted)

    def on_stop(self) -> None:
        replies = getattr(self, "replies", None)
        if replies is not None:
            replies.close()
        conn = getattr(self, "conn", None)
        if conn is not None:
            try:
                if charger_store.get_charger(conn, self.charge_point_id) is not None:
                    charger_store.set_connected(conn, self.charge_point_id, False, time.time())
            finally:
                conn.close()
                self.conn = None

    # ------------------------------------------------------------ lookups
    def _lookup(self) -> None:
        if self.parent is None:
            return
        self._next_lookup = time.monotonic() + LOOKUP_RETRY
        if self.listener is None:
            self.send(self.parent, Lookup("ocpp"))
        if self.harvest is None:
            self.send(self.parent, Lookup("harvest"))
        self._arm()

    def receiveMsg_LookupResult(self, msg: LookupResult, sender: Any) -> None:  # noqa: N802
        if self.live.lookup_result(msg) or msg.address is None:
            return
        if msg.path == "ocpp" and self.listener is None:
            self.listener = msg.address
            self.send(self.listener, ChargerReady(self.charge_point_id))
        elif msg.path == "harvest":
            self.harvest = msg.address
            self._forward_exports()

    # --------------------------------------------------- listener protocol
    def receiveMsg_ChargerConnected(self, msg: ChargerConnected, sender: Any) -> None:  # noqa: N802
        self.listener = sender
        if msg.connection_id == self.connection_id:
            return  # the same connection introduced twice: keep its frames' order and state
        self.connection_id = msg.connection_id
        self.replies.use(msg.reply_path, self.charge_point_id, msg.connection_id)
        self.incoming.reset(msg.next_seq)
        self._apply(self.protocol.connected(msg.connection_id))
        self._publish_status()

    def receiveMsg_ChargerDisconnected(self, msg: ChargerDisconnected, sender: Any) -> None:  # noqa: N802
        if msg.connection_id == self.connection_id:
            self.connection_id = None
            self._apply(self.protocol.disconnected(msg.connection_id))
            self._publish_status()

    def receiveMsg_FrameIn(self, msg: FrameIn, sender: Any) -> None:  # noqa: N802
        if msg.connection_id != self.connection_id:
            return
        self.listener = sender
        self._frame_in(msg.connection_id, msg.seq, msg.text)

    def receiveMsg_WatchMessage(self, msg: WatchMessage, sender: Any) -> None:  # noqa: N802
        """Frames the listener wrote on our link to its loop (actors.ocpp.replies)."""
        for connection_id, seq, text in self.replies.receive():
            if connection_id == self.connection_id:
                self._frame_in(connection_id, seq, text)

    def _frame_in(self, connection_id: int, seq: int, text: str) -> None:
        # FrameIn and the link may both carry frames around a (re)bind: the numbers order them
        for ready in self.incoming.push(seq, text):
            self._apply(self.protocol.receive(connection_id, ready))
        if self.incoming.overflowed:
            self.log.warning("frames lost in transit; closing the connection so the charger resends")
            if self.listener is not None:
                self.send(self.listener, CloseConnection(self.charge_point_id, connection_id, 1011, "frames lost, reconnect"))
            self.incoming.reset(seq + 1)

    def receiveMessage(self, msg: Any, sender: Any) -> Any:  # noqa: N802 (thespian API)
        super().receiveMessage(msg, sender)
        fd = self.replies.fileno() if self._started and not self._failed else None
        return ThespianWatch([fd]) if fd is not None else None  # every handler's return sets the watch list

    # ------------------------------------------------------ central requests
    def receiveMsg_ChargerCommand(self, msg: ChargerCommand, sender: Any) -> None:  # noqa: N802
        if len(self.requesters) >= MAX_PENDING_COMMANDS:
            self.send(sender, CommandOutcome(self.charge_point_id, msg.request_id, msg.request.action, "queue_full", description="too many requests pending"))
            return
        internal = next(self._ids)
        self.requesters[internal] = (sender, msg.request_id)
        self._apply(self.protocol.request(msg.request, internal))

    def receiveMsg_Disconnect(self, msg: Disconnect, sender: Any) -> None:  # noqa: N802
        """The operator blocked or removed this charger: its open connection must not carry on."""
        closed = self.listener is not None and self.connection_id is not None
        if closed:
            self.log.info("closing the charger's connection", reason=msg.reason)
            self.send(self.listener, CloseConnection(self.charge_point_id, self.connection_id, 1008, msg.reason))
        self.send(sender, Disconnected(self.charge_point_id, closed))

    def receiveMsg_CancelCommand(self, msg: CancelCommand, sender: Any) -> None:  # noqa: N802
        """Withdraw a request its sender gave up on, if it still waits (see `CancelCommand`)."""
        internal = next((i for i, (_, request_id) in self.requesters.items() if request_id == msg.request_id), None)
        if internal is None:
            self.send(sender, CommandOutcome(self.charge_point_id, msg.request_id, "", "unknown", description="no such request pending here"))
            return
        self._apply(self.protocol.cancel(internal))

    def receiveMsg_Subscribe(self, msg: Subscribe, sender: Any) -> None:  # noqa: N802
        if sender not in self.subscribers:
            if len(self.subscribers) >= MAX_SUBSCRIBERS:
                self.subscribers.pop(0)
            self.subscribers.append(sender)

    def receiveMsg_Unsubscribe(self, msg: Unsubscribe, sender: Any) -> None:  # noqa: N802
        if sender in self.subscribers:
            self.subscribers.remove(sender)

    # ----------------------------------------------------------- harvest
    def receiveMsg_BatchAck(self, msg: BatchAck, sender: Any) -> None:  # noqa: N802
        if self.exports.acked(msg.batch_id):
            self._forward_exports()

    def receiveMsg_BatchRejected(self, msg: BatchRejected, sender: Any) -> None:  # noqa: N802
        if self.exports.in_flight is None or self.exports.in_flight.batch_id != msg.batch_id:
            return  # a stale answer to a batch already settled
        gap = self.exports.rejected(msg.batch_id)
        self.log.error("harvest refused an export batch; its rows are replaced by a gap record", charge_point_id=self.charge_point_id,
                       batch_id=msg.batch_id, reason=msg.reason, missed=gap["missed"] if gap else 0)
        self._forward_exports()

    def _forward_exports(self) -> None:
        if self.harvest is None:
            return
        batch = self.exports.next_batch(time.monotonic())
        if batch is not None:
            self.send(self.harvest, batch)
            self._arm()  # its ack deadline

    # ------------------------------------------------------------- timers
    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:  # noqa: N802
        if not (isinstance(msg.payload, tuple) and msg.payload[0] == "tick"):
            return
        if msg.payload[1] == self._armed:
            self._armed = None  # a superseded (later) tick that fires is just an extra, harmless tick
        self._apply(self.protocol.tick())
        if (self.listener is None or self.harvest is None) and time.monotonic() >= self._next_lookup:
            self._lookup()
        if self.exports.in_flight is not None and time.monotonic() >= self.exports.in_flight.deadline:
            self.harvest = None  # it may have restarted: find it again, then re-send
            self._lookup()
        self._arm()

    def _arm(self) -> None:
        """Make sure a tick is pending for the earliest thing that will need one."""
        now = time.monotonic()
        due = [now + MAX_TICK, self.protocol.next_tick()]
        if self.listener is None or self.harvest is None:
            due.append(self._next_lookup)
        if self.exports.in_flight is not None and self.harvest is not None:
            due.append(self.exports.in_flight.deadline)
        at = max(min(due), now + MIN_TICK)
        if self._armed is not None and self._armed <= at:
            return  # an early enough tick is pending already
        self._armed = at
        self.wakeupAfter(timedelta(seconds=at - now), payload=("tick", at))

    def _transaction_on(self, connector_id: int) -> int | None:
        for tx in tx_store.active_transactions(self.conn, self.charge_point_id):
            if tx["connector_id"] == connector_id:
                return tx["transaction_id"]
        return None

    # ------------------------------------------------------------ effects
    def _publish_status(self) -> None:
        self._status_published, self._published_messages = time.monotonic(), sum(self.protocol.messages.values())
        self.publish("running", connected=self.connection_id is not None, messages=dict(self.protocol.messages))

    def _apply(self, effects: Effects) -> None:
        counted = sum(self.protocol.messages.values())
        if counted != getattr(self, "_published_messages", 0) and (
                not getattr(self, "_published_messages", 0) or time.monotonic() - self._status_published >= STATUS_EVERY):
            self._publish_status()  # message counts for /metrics: the first at once, then at most every STATUS_EVERY s
        if self.listener is not None and self.connection_id is not None:
            for text in effects.frames:
                if not self.replies.send(self.charge_point_id, self.connection_id, text):
                    self.send(self.listener, FrameOut(self.charge_point_id, self.connection_id, text))
        for outcome in effects.outcomes:
            requester = self.requesters.pop(outcome.request_id, None) if outcome.request_id is not None else None
            if requester is not None:
                address, request_id = requester
                self.send(address, CommandOutcome(**{**outcome.__dict__, "request_id": request_id}))
        events = []
        for update in effects.live:
            for subscriber in self.subscribers:
                self.send(subscriber, update)
            events.extend(live_events(update, self._transaction_on))
        if events:
            self.live.emit_many(events)
        if effects.exports:
            self._forward_exports()
        self._arm()  # the protocol may have a new deadline (a call sent, live figures pending)
