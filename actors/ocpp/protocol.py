"""The OCPP 1.6-J protocol for one charger, free of actors and sockets.

`ChargerProtocol` is driven by four inputs: a connection opened or closed, a frame
received, a central-initiated request, and the passage of time (`tick`). Each input
returns `Effects`: frames to send, outcomes of central requests, live updates for
subscribers, and whether new rows wait in the export queue. The charger actor and the
plain-asyncio test/bench server drive the same object, so the protocol is tested without
thespian and the actor stays a thin shell.

Its state is the database: on construction it reloads the charger's registration and
whether it was accepted before, so a restarted actor carries on mid-session.

Rules it enforces (OCPP 1.6 section 4.2 and OCPP-J 4.2):

* every CALL is answered: CALLRESULT, or CALLERROR with the OCPP-J 1.6 code;
* before the charger is accepted (never booted, or its registration is Pending or
  Rejected) only BootNotification is served, anything else gets `SecurityError`
  (the treatment OCPP 2.0.1 B02.FR.09 makes explicit); while Pending, a message the
  central system asked for with TriggerMessage is served once;
* a charger accepted before that reconnects without booting is served at once
  (it is replaying its offline queue) and, after `refresh_grace` seconds without a
  BootNotification, refreshed with TriggerMessage(StatusNotification).
"""

from __future__ import annotations

from collections import Counter

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from actors.ocpp import frames
from actors.ocpp.calls import CallQueue, PendingCall
from actors.ocpp.frames import Call, CallError, CallResult, FrameError
from actors.ocpp.handlers import HANDLERS, MeterUpdate, energy_and_power, non_finite, non_finite_quantities, parse_samples, soc_and_current
from actors.ocpp.messages import CentralRequest, CommandOutcome, ReserveNow, TriggerMessage
from actors.ocpp.policy import OcppPolicy
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store
from supervisor.logs import ActorLog

TOUCH_INTERVAL = 30.0  # seconds between `last_seen` writes while frames keep arriving
RESERVATION_CHECK_INTERVAL = 30.0  # seconds between sweeps for expired reservations


@dataclass
class Effects:
    frames: list[str] = field(default_factory=list)
    outcomes: list[CommandOutcome] = field(default_factory=list)
    live: list[Any] = field(default_factory=list)
    exports: bool = False


class ChargerProtocol:
    def __init__(
        self,
        charge_point_id: str,
        conn: sqlite3.Connection,
        policy: OcppPolicy | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        log: Any = None,
    ) -> None:
        self.charge_point_id = charge_point_id
        self.conn = conn
        self.policy = policy or OcppPolicy()
        self.clock = clock
        self.monotonic = monotonic
        self.log = log or ActorLog(f"ocpp/{charge_point_id}")
        self.calls = CallQueue(self.policy.call_queue_limit, self.policy.call_timeout)
        self.effects = Effects()
        self.exports_added = False
        self.connection_id: int | None = None
        self.boot_seen = False
        self.refresh_due: float | None = None
        self.triggered: set[str] = set()
        self._live_written: dict[int, float] = {}
        self._last_touch = 0.0
        self._next_expiry_check = 0.0
        self._live_pending: dict[int, tuple[float, float | None, float | None]] = {}
        charger = charger_store.get_charger(conn, charge_point_id)
        self.registration = charger["registration_status"] if charger else "Pending"
        self.accepted = bool(charger and charger["registration_status"] == "Accepted" and charger["last_boot"] is not None)
        self.messages: Counter[str] = Counter()  # CALLs from the charger, by action, since this actor started

    # ------------------------------------------------------------ inputs
    def connected(self, connection_id: int) -> Effects:
        """A new websocket for this charger; an older one (if any) is gone."""
        if self.connection_id is not None:
            self._fail_all("offline", "connection replaced")
        self.connection_id = connection_id
        self.boot_seen = False
        self.triggered.clear()
        now = self.clock()
        if charger_store.get_charger(self.conn, self.charge_point_id) is not None:
            charger_store.set_connected(self.conn, self.charge_point_id, True, now)
        self.refresh_due = self.monotonic() + self.policy.refresh_grace if self.accepted else None
        self.exports_added = True  # whatever waits in the export queue can go now
        return self._take()

    def disconnected(self, connection_id: int) -> Effects:
        if connection_id != self.connection_id:
            return self._take()
        self.connection_id = None
        self.refresh_due = None
        charger_store.set_connected(self.conn, self.charge_point_id, False, self.clock())
        self._fail_all("offline", "charger disconnected")
        self._flush_live(force=True)
        return self._take()

    def receive(self, connection_id: int, text: str) -> Effects:
        """One frame from the charger; replies and consequences come back as Effects."""
        if connection_id != self.connection_id:
            return self._take()  # a frame from a replaced connection: its socket is closing
        try:
            frame = frames.parse(text)
        except FrameError as exc:
            self._reply_error(exc)
            return self._take()
        if isinstance(frame, Call):
            self._serve(frame)
        else:
            self._settle(frame)
        return self._take()

    def request(self, request: CentralRequest, request_id: Any = None) -> Effects:
        """Queue a central-initiated request (sent when nothing else is outstanding)."""
        self._enqueue(request, request_id)
        return self._take()

    def cancel(self, request_id: Any) -> Effects:
        """Withdraw a queued request before it is sent (outcome `cancelled`).

        A request already with the charger cannot be taken back: nothing happens now, and
        its outcome follows when the charger answers or the call times out.
        """
        call = self.calls.withdraw(request_id)
        if call is not None:
            self._outcome(call, "cancelled", description="withdrawn before it was sent to the charger")
        return self._take()

    def _enqueue(self, request: CentralRequest, request_id: Any) -> None:
        def finish(outcome: str, description: str) -> None:
            self.effects.outcomes.append(CommandOutcome(self.charge_point_id, request_id, request.action, outcome, description=description))  # type: ignore[arg-type]

        if self.connection_id is None:
            return finish("offline", "charger is not connected")
        if self.registration == "Rejected":
            return finish("not_accepted", "charger registration is Rejected")
        context = None
        if isinstance(request, ReserveNow):
            context = tx_store.create_reservation(
                self.conn, self.charge_point_id, connector_id=request.connector_id, id_tag=request.id_tag,
                expiry=request.expiry, now=self.clock(), parent_id_tag=request.parent_id_tag,
            )
            payload = request.payload(context)
        else:
            payload = request.payload()
        try:
            frames.validate(request.action, payload)
        except FrameError as exc:
            if context is not None:
                tx_store.set_reservation_status(self.conn, context, "Rejected")
            return finish("invalid_request", exc.description)
        if not self.calls.offer(PendingCall(request, request_id, payload, context=context)):
            if context is not None:
                tx_store.set_reservation_status(self.conn, context, "Rejected")
            return finish("queue_full", f"{self.calls.limit} requests already wait for this charger")
        self._pump()

    def tick(self) -> Effects:
        """Time passed: expire the outstanding call, refresh a reconnected charger, write live figures."""
        now = self.monotonic()
        expired = self.calls.expired(now)
        if expired is not None:
            self.log.warning("central call timed out", action=expired.request.action, unique_id=expired.unique_id)
            self._outcome(expired, "timeout", description=f"no answer within {self.calls.timeout:g} s")
            self._pump()
        if self.refresh_due is not None and now >= self.refresh_due:
            self.refresh_due = None
            if not self.boot_seen and self.connection_id is not None:
                self.log.info("charger reconnected without booting; asking for its status")
                self._enqueue(TriggerMessage("StatusNotification"), request_id=None)
        if now >= self._next_expiry_check:
            self._next_expiry_check = now + RESERVATION_CHECK_INTERVAL
            for reservation_id in tx_store.expire_reservations(self.conn, self.charge_point_id, self.clock()):
                self.log.info("reservation expired", reservation_id=reservation_id)
        self._flush_live()
        return self._take()

    def next_deadline(self) -> float | None:
        """The monotonic time at which `tick()` has something to do, if any."""
        candidates = [d for d in (self.calls.deadline(), self.refresh_due) if d is not None]
        if self._live_pending:
            candidates.append(min(self._live_written.get(t, 0.0) for t in self._live_pending) + self.policy.live_metrics_db_interval)
        return min(candidates) if candidates else None

    def next_tick(self) -> float:
        """When `tick()` must run next: `next_deadline()` or the periodic reservation sweep."""
        deadline = self.next_deadline()
        return self._next_expiry_check if deadline is None else min(deadline, self._next_expiry_check)

    # ------------------------------------------------------ serving CALLs
    def _serve(self, call: Call) -> None:
        try:
            frames.check_action(call)
            self.messages[call.action] += 1  # known actions only: bounded by OCPP's list (for /metrics)
            frames.validate(call.action, call.payload, unique_id=call.unique_id)
            self._check_admitted(call)
            now = self.clock()
            reply = HANDLERS[call.action](self, call.payload, now)
            if now - self._last_touch >= TOUCH_INTERVAL:  # last_seen to the minute, not one fsync per frame
                charger_store.touch(self.conn, self.charge_point_id, now)
                self._last_touch = now
        except FrameError as exc:
            exc.unique_id = call.unique_id
            self._reply_error(exc, call.action)
            return
        except Exception as exc:  # noqa: BLE001 - the charger still gets an answer; the log has the trace
            self.log.exception("handler failed", action=call.action, error=repr(exc))
            self.effects.frames.append(frames.encode_error(call.unique_id, "InternalError", f"{call.action} could not be processed"))
            return
        self.effects.frames.append(frames.encode_result(call.unique_id, reply))

    def _check_admitted(self, call: Call) -> None:
        if call.action == "BootNotification" or self.accepted:
            return
        if self.registration == "Pending" and call.action in self.triggered:
            self.triggered.discard(call.action)
            return
        state = "not yet accepted" if self.registration != "Rejected" else "Rejected"
        raise FrameError("SecurityError", f"charge point is {state}; send BootNotification and wait for Accepted", call.unique_id)

    def booted(self, registration: str) -> None:
        """BootNotification answered with `registration` (called by its handler)."""
        self.boot_seen = True
        self.refresh_due = None
        self.registration = registration
        self.accepted = registration == "Accepted"

    def _reply_error(self, exc: FrameError, action: str = "") -> None:
        self.log.warning("frame refused", code=exc.code, description=exc.description, action=action[:64], unique_id=exc.unique_id)
        self.effects.frames.append(frames.encode_error(exc.unique_id, exc.code, exc.description, exc.details))

    # ------------------------------------------------ meter values and live
    def store_meter_values(self, connector_id: int, transaction_id: int | None, meter_value: list[dict], now: float) -> None:
        """Store one MeterValues (or StopTransaction transactionData) and queue its export rows.

        A sample whose value reads as NaN or an infinity is kept as the charger's text in
        `meter_values`, but its export reading carries null for it, flagged by name with
        the text in `raw.non_finite`, and it moves no session figure: one such sample must
        not poison the upload, nor the session's energy.
        """
        samples = parse_samples(meter_value)
        figures = energy_and_power(samples)
        bad = non_finite_quantities(samples)
        poison = non_finite(samples)
        if poison:
            self.log.warning(
                "non-finite sampled values stored as null", charge_point_id=self.charge_point_id, connector_id=connector_id,
                transaction_id=transaction_id, samples=[{"measurand": s["measurand"], "value": str(s["value"])[:64]} for s in poison[:8]],
            )
        exports = []
        if transaction_id is not None:
            for timestamp in sorted(figures.keys() | bad.keys()):
                values = figures.get(timestamp, {})
                raw: dict[str, Any] = {"event": "meter_values"}
                record: dict[str, Any] = {
                    "values": {"transaction_id": transaction_id, "connector_id": connector_id, "energy_wh": values.get("energy_wh"), "power_w": values.get("power_w")},
                    "raw": raw,
                }
                if timestamp in bad:
                    raw["non_finite"] = bad[timestamp]
                    record["flags"] = sorted(bad[timestamp])
                exports.append((timestamp, record))
        if tx_store.add_meter_values(self.conn, self.charge_point_id, connector_id, transaction_id, samples, received=now, exports=exports) and exports:
            self.exports_added = True
        extra = soc_and_current(samples)
        if transaction_id is None or not (figures or extra):
            return
        timestamp = max(figures.keys() | extra.keys())
        latest = {**(figures[max(figures)] if figures else {}), **(extra[max(extra)] if extra else {})}  # each quantity's newest
        tx = tx_store.get_transaction(self.conn, transaction_id)
        session = None
        if tx is not None and latest.get("energy_wh") is not None:
            session = latest["energy_wh"] - tx["meter_start"]
        self.effects.live.append(MeterUpdate(self.charge_point_id, transaction_id, connector_id, timestamp, latest.get("energy_wh"), latest.get("power_w"), session,
                                             latest.get("soc_percent"), latest.get("current_a"), latest.get("current_phases_a")))
        if not figures:  # state of charge or current alone: the session's energy and power stay as they are
            return
        timestamp = max(figures)
        previous = self._live_pending.get(transaction_id)
        if previous is None or previous[0] <= timestamp:
            self._live_pending[transaction_id] = (timestamp, figures[timestamp].get("energy_wh"), figures[timestamp].get("power_w"))
        self._flush_live()

    def _flush_live(self, force: bool = False) -> None:
        """Write live session figures, at most once per `live_metrics_db_interval` per session."""
        now = self.monotonic()
        for transaction_id, (timestamp, energy, power) in list(self._live_pending.items()):
            last = self._live_written.get(transaction_id)
            if force or last is None or now - last >= self.policy.live_metrics_db_interval:
                tx_store.update_meter(self.conn, transaction_id, energy_wh=energy, power_w=power, timestamp=timestamp)
                self._live_written[transaction_id] = now
                del self._live_pending[transaction_id]
        if len(self._live_written) > 64:  # forget sessions long gone (bounded)
            for transaction_id in sorted(self._live_written, key=self._live_written.get)[:-32]:  # type: ignore[arg-type]
                if transaction_id not in self._live_pending:
                    del self._live_written[transaction_id]

    # -------------------------------------------------- central-initiated
    def _pump(self) -> None:
        if self.connection_id is None:
            return
        call = self.calls.next_to_send(self.monotonic())
        if call is not None:
            if call.request.action == "TriggerMessage":
                self.triggered.add(call.payload["requestedMessage"])
            self.effects.frames.append(frames.encode_call(call.unique_id, call.request.action, call.payload))

    def _settle(self, frame: CallResult | CallError) -> None:
        call = self.calls.answer(frame.unique_id)
        if call is None:
            self.log.warning("reply to no outstanding call ignored", unique_id=frame.unique_id)
            return
        if isinstance(frame, CallError):
            self._outcome(call, "error", error_code=frame.code, description=frame.description)
        else:
            try:
                frames.validate(call.request.action, frame.payload, response=True, unique_id=frame.unique_id)
            except FrameError as exc:
                self._outcome(call, "invalid_response", payload=frame.payload, error_code=exc.code, description=exc.description)
            else:
                self._outcome(call, "result", payload=frame.payload)
        self._pump()

    def _outcome(self, call: PendingCall, outcome: str, payload: dict | None = None, error_code: str = "", description: str = "") -> None:
        if call.context is not None:  # a reservation: its status follows the charger's answer
            status = (payload or {}).get("status") if outcome == "result" else "Rejected"
            tx_store.set_reservation_status(self.conn, call.context, status or "Rejected")
            payload = {**(payload or {}), "reservationId": call.context}
        if call.request.action == "CancelReservation" and outcome == "result" and (payload or {}).get("status") == "Accepted":
            tx_store.set_reservation_status(self.conn, call.request.reservation_id, "Cancelled")  # type: ignore[attr-defined]
        self.effects.outcomes.append(CommandOutcome(
            self.charge_point_id, call.request_id, call.request.action, outcome,  # type: ignore[arg-type]
            payload=payload or {}, error_code=error_code, description=description, unique_id=call.unique_id,
        ))

    def _fail_all(self, outcome: str, description: str) -> None:
        """The connection is gone: the call with the charger ends as `timeout` (sent, its
        effect unknown), the waiting ones with `outcome` (never sent)."""
        outstanding, waiting = self.calls.drain()
        if outstanding is not None:
            self._outcome(outstanding, "timeout", description=f"sent, but {description} before the charger answered")
        for call in waiting:
            self._outcome(call, outcome, description=description)

    def _take(self) -> Effects:
        effects, self.effects = self.effects, Effects()
        if self.exports_added:
            effects.exports = True
            self.exports_added = False
        return effects
