"""The energy manager actor: a thin shell around `actors.energy.control.step`.

Under the root supervisor, one for the site. Every `energy_interval` seconds it

1. asks the root supervisor for the actor tree (`GetTree`): the device actors already
   publish their latest values there (at most 5 s old), so no device needs to know the
   energy manager exists and no reading travels twice;
2. reads each loadpoint's charger from the charger store (connector status, the session
   under way, vendor/model) and takes the charging power from the charger actor's
   `LiveUpdate`s (it subscribes on every new charger-actor address);
3. runs the controller, and when the limit changed sends `SetChargingProfile` (see
   `actors.energy.profiles` for the variant order on `Rejected`), or `ClearChargingProfile`
   when the loadpoint leaves smart charging; after an accepted profile it reads the
   charger's composite schedule back for REST;
4. stores the controller state (`storage.loadpoints`) and publishes every loadpoint's
   decision, with its reason, to the tree (REST reads it there) and to the live feed
   (`loadpoint/<id>`).

It keeps nothing worth losing in memory: a restarted actor reloads the state and the
modes set over REST, and re-sends the current limit once (a charger that restarted
meanwhile may have lost it).

Config (from the child spec): {"db_path", "loadpoints": [LoadpointConfig fields], "settings": ControlSettings fields}.
"""

from __future__ import annotations

import itertools
import sqlite3
import time
from collections import deque
from dataclasses import replace
from datetime import timedelta
from typing import Any

from thespian.actors import WakeupMessage

from actors.energy import profiles
from actors.energy.control import PLUGGED_STATUSES, ControlSettings, ControlState, Decision, Inputs, LoadpointConfig, step
from actors.energy.messages import LoadpointModeSet, SetLoadpointMode
from actors.energy.readings import device_values, live_events, rt_get, stack_level
from actors.energy.runtime import Runtime, runtime_view
from actors.live.publisher import LivePublisher
from actors.ocpp.messages import (ChargerCommand, ClearChargingProfile, CommandOutcome, ConnectorStatus, GetCompositeSchedule,
                                  GetConfiguration, LiveUpdate, SetChargingProfile, Subscribe)
from storage import chargers as charger_store
from storage import loadpoints as store
from storage import ocpp_transactions as tx_store
from storage.db import connect
from supervisor.actor import SupervisedActor
from supervisor.messages import GetTree, Lookup, LookupResult, Tree

TICK = "tick"
LOOKUP_REFRESH = 30.0  # charger actors restart with new addresses (and without our subscription)
READING_MAX_AGE = 30.0  # a device reading older than this (wall seconds) is unknown, not truth
POWER_MAX_AGE = 120.0  # a charger's power older than this is unknown
POWER_HISTORY = 64  # the charger's recent power samples, to pair the meter's reading with the car's power at that time
POWER_GRACE = 15.0  # after a start, hold a charging car's limit this long for its first power sample (then estimate from the limit)
COMMAND_TIMEOUT = 60.0  # a command without an outcome by then is given up (the charger actor may have restarted)
EXHAUSTED_RETRY = 300.0  # after every variant was rejected, try again this much later


class EnergyActor(SupervisedActor):
    def on_start(self, config: dict[str, Any]) -> None:
        self.conn = connect(config["db_path"])
        try:  # only its own tables: the charger and transaction stores are the OCPP family's to migrate, and only read here
            store.init(self.conn)
        except sqlite3.OperationalError:  # the API migrated the same tables at the same moment (a mode set): now they exist
            store.init(self.conn)
        self.settings = ControlSettings(**config.get("settings", {}))
        self.loadpoints = [LoadpointConfig(**{**d, "pv": tuple(d.get("pv", ())), "loads": tuple(d.get("loads", ()))}) for d in config["loadpoints"]]
        modes = store.modes(self.conn)
        self.runtime: dict[str, Runtime] = {}
        for lp in self.loadpoints:
            state = ControlState.from_dict(store.load_state(self.conn, lp.id), phases=1 if lp.phases == "1" else 3)
            state.last_tick = None  # monotonic times of another process mean nothing here
            state.switches = []
            rt = Runtime(state=state, mode=modes.get(lp.id, lp.mode), mode_source="rest" if lp.id in modes else "config")
            self.runtime[lp.id] = rt
        self.values: dict[str, dict[str, Any]] = {}
        self.chargers: dict[str, Any] = {}  # charge point id -> charger actor address
        self.looked_up: dict[str, float] = {}
        self.stack_levels: dict[str, int] = {}
        self.power: dict[tuple[str, int], tuple[float, float, int]] = {}  # (cp, connector) -> (W, monotonic, transaction id)
        self.power_history: dict[tuple[str, int], deque[tuple[float, float]]] = {}  # (cp, connector) -> (sample's wall time, W), recent
        self._ids = itertools.count(1)
        self.pending: dict[str, tuple[str, str, Any]] = {}  # request id -> (kind, loadpoint or charger, extra)
        self.pending_since: dict[str, float] = {}  # request id -> monotonic time sent (answers lost with a charger actor are dropped)
        self.live = LivePublisher(self)
        self._tree_asked = 0.0
        self.started = time.monotonic()
        self.wakeupAfter(timedelta(seconds=0.05), payload=TICK)
        self.log.info("energy manager started", loadpoints=[lp.id for lp in self.loadpoints], interval_s=self.settings.interval,
                      main_fuse_a=self.settings.main_fuse_a, modes={lp.id: self.runtime[lp.id].mode for lp in self.loadpoints})

    def on_stop(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            conn.close()
            self.conn = None

    # ------------------------------------------------------------------ loop
    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:  # noqa: N802
        if msg.payload != TICK:
            return
        self.wakeupAfter(timedelta(seconds=self.settings.interval), payload=TICK)
        now = time.monotonic()
        for lp_id, (_, sent_at, _) in self._in_flight():
            if now - sent_at > COMMAND_TIMEOUT:
                self._give_up(lp_id)
        for request_id, sent_at in list(self.pending_since.items()):
            if now - sent_at > COMMAND_TIMEOUT:  # its charger actor died with it: no outcome will ever come
                self.pending.pop(request_id, None)
                self.pending_since.pop(request_id, None)
        for cp in {lp.charger for lp in self.loadpoints}:
            if cp in self.chargers and cp not in self.stack_levels:
                self._ask_stack_level(cp)
            if cp not in self.chargers or now - self.looked_up.get(cp, 0.0) > LOOKUP_REFRESH:
                self.looked_up[cp] = now
                self.send(self.parent, Lookup(f"chargers/{cp}"))
        self._tree_asked = now
        self.send(self.parent, GetTree())

    def _in_flight(self) -> list[tuple[str, tuple[str, float, tuple]]]:
        return [(lp_id, rt.in_flight) for lp_id, rt in self.runtime.items() if rt.in_flight is not None]

    def _give_up(self, lp_id: str) -> None:
        rt = self.runtime[lp_id]
        if rt.in_flight is not None:
            self.pending.pop(rt.in_flight[0], None)
            rt.in_flight = None

    def receiveMsg_Tree(self, msg: Tree, sender: Any) -> None:  # noqa: N802
        self.values = device_values(msg.records)
        granted: dict[str, float] = {}  # per surplus source: power this round's earlier loadpoints were given on top of what they drew
        for lp in self.loadpoints:
            self._decide(lp, granted)
        self._publish()

    # ------------------------------------------------------------- chargers
    def receiveMsg_LookupResult(self, msg: LookupResult, sender: Any) -> None:  # noqa: N802
        if self.live.lookup_result(msg):
            return
        if not msg.path.startswith("chargers/"):
            return
        cp = msg.path.split("/", 1)[1]
        old = self.chargers.get(cp)
        if msg.address is None:
            self.chargers.pop(cp, None)
            return
        self.chargers[cp] = msg.address
        if old != msg.address:  # a new charger actor: subscribe, learn its stack level, and tell it our limit again
            self.send(msg.address, Subscribe())
            self.stack_levels.pop(cp, None)
            self._ask_stack_level(cp)
            for lp in self.loadpoints:
                if lp.charger == cp:
                    self.runtime[lp.id].sent_key = None

    def receiveMsg_LiveUpdate(self, msg: LiveUpdate, sender: Any) -> None:  # noqa: N802
        if msg.power_w is not None:
            key = (msg.charge_point_id, msg.connector_id)
            self.power[key] = (float(msg.power_w), time.monotonic(), msg.transaction_id)
            # the charger's own time of the sample, but never later than when it reached us: a charger
            # whose clock runs ahead would otherwise never pair with a meter value (held forever);
            # one whose clock runs behind pairs with the latest sample, as without pairing
            stamp = min(float(msg.timestamp), time.time())
            self.power_history.setdefault(key, deque(maxlen=POWER_HISTORY)).append((stamp, float(msg.power_w)))

    def receiveMsg_ConnectorStatus(self, msg: ConnectorStatus, sender: Any) -> None:  # noqa: N802
        for lp in self.loadpoints:  # a car plugged in or left: decide now, not at the next tick
            if lp.charger == msg.charge_point_id and lp.connector == msg.connector_id:
                if msg.status not in PLUGGED_STATUSES:
                    self.power.pop((lp.charger, lp.connector), None)
                    self.power_history.pop((lp.charger, lp.connector), None)
                self._decide(lp)
                self._publish()

    def _ask_stack_level(self, cp: str) -> None:
        """GetConfiguration ChargeProfileMaxStackLevel, unless that question is still open."""
        if not any(kind == "stack_level" and subject == cp for kind, subject, _ in self.pending.values()):
            self._command(cp, "stack_level", cp, GetConfiguration(key=("ChargeProfileMaxStackLevel",)))

    def _command(self, cp: str, kind: str, subject: str, request: Any, extra: Any = None) -> str | None:
        address = self.chargers.get(cp)
        if address is None:
            return None
        request_id = f"energy-{next(self._ids)}"
        self.pending[request_id] = (kind, subject, extra)
        self.pending_since[request_id] = time.monotonic()
        self.send(address, ChargerCommand(request, request_id))
        return request_id

    def receiveMsg_CommandOutcome(self, msg: CommandOutcome, sender: Any) -> None:  # noqa: N802
        entry = self.pending.pop(msg.request_id, None)
        self.pending_since.pop(msg.request_id, None)
        if entry is None:
            return
        kind, subject, extra = entry
        if kind == "stack_level":
            if msg.outcome not in ("result", "error"):
                return  # not asked yet (offline, its boot not accepted yet, no answer): asked again on the next loop
            self.stack_levels[subject] = stack_level(msg)
            for lp in self.loadpoints:
                if lp.charger == subject:
                    self._decide(lp)
            return
        if kind == "schedule":
            rt = self.runtime[subject]
            rt.schedule = {"status": msg.payload.get("status") if msg.outcome == "result" else msg.outcome, **{
                k: v for k, v in msg.payload.items() if k in ("scheduleStart", "chargingSchedule", "connectorId")}, "read_at": time.time()}
            self._publish()
            return
        rt = self.runtime[subject]
        lp = next(lp for lp in self.loadpoints if lp.id == subject)
        if rt.in_flight is None or rt.in_flight[0] != msg.request_id:
            return
        _, _, key = rt.in_flight
        rt.in_flight = None
        status = msg.payload.get("status") if msg.outcome == "result" else None
        rt.sent = {**(rt.sent or {}), "answer": status or msg.outcome, "error": msg.error_code or msg.description or None, "answered_at": time.time()}
        model = self._model_key(lp)
        if kind == "clear":
            if msg.outcome == "result":  # Accepted or Unknown: either way no profile of ours is left
                rt.sent_key = key
        elif status == "Accepted":
            rt.sent_key = key
            store.remember_variant(self.conn, model, rt.variant)
            self._command(lp.charger, "schedule", lp.id, GetCompositeSchedule(connector_id=lp.connector, duration=3600, charging_rate_unit="A"))
        elif status == "Rejected":
            following = profiles.next_variant(rt.variant, rt.charger.get("transaction_id") is not None)
            self.log.info("charger rejected a charging profile", loadpoint=lp.id, charger=lp.charger, model=model, variant=rt.variant,
                          limit_a=extra, next_variant=following)
            if following is not None:
                rt.variant = following
            elif extra == 0.0 and not rt.zero_refused:
                rt.zero_refused = True  # this model cannot be paused with 0 A: hold it at the minimum instead
                store.remember_variant(self.conn, model, zero_refused=True)
                rt.variant = profiles.first_variant(store.variant_for(self.conn, model)[0])
            else:
                rt.variant = profiles.first_variant(None)
                rt.exhausted_until = time.monotonic() + EXHAUSTED_RETRY
                self.log.warning("charger rejected every charging profile variant; retrying later", loadpoint=lp.id, model=model,
                                 retry_s=EXHAUSTED_RETRY)
        self._decide(lp)
        self._publish()

    # ------------------------------------------------------------ deciding
    def _model_key(self, lp: LoadpointConfig) -> str:
        return f"{rt_get(self.runtime[lp.id].charger, 'vendor')}/{rt_get(self.runtime[lp.id].charger, 'model')}"

    def _charger_state(self, lp: LoadpointConfig) -> dict[str, Any]:
        try:
            charger = charger_store.get_charger(self.conn, lp.charger) or {}
            status = next((c["status"] for c in charger_store.list_connectors(self.conn, lp.charger) if c["connector_id"] == lp.connector), None)
            tx = next((t for t in tx_store.active_transactions(self.conn, lp.charger) if t["connector_id"] == lp.connector), None)
        except sqlite3.OperationalError:  # the OCPP listener has not created its tables yet: no charger known
            charger, status, tx = {}, None, None
        power = self.power.get((lp.charger, lp.connector))
        fresh = power is not None and time.monotonic() - power[1] <= POWER_MAX_AGE
        return {"connected": bool(charger.get("connected")), "status": status, "transaction_id": tx["transaction_id"] if tx else None,
                "power_w": power[0] if fresh and power else None, "vendor": charger.get("vendor"), "model": charger.get("model")}

    def _reading(self, device: str | None, *names: str) -> float | None:
        if not device:
            return None
        entry = self.values.get(device)
        if entry is None or entry.get("age") is None or entry["age"] > READING_MAX_AGE:
            return None
        for name in names:
            value = entry["values"].get(name)
            if isinstance(value, (int, float)) and not isinstance(value, bool):
                return float(value)
        return None

    def _inputs(self, lp: LoadpointConfig, rt: Runtime, now: float) -> Inputs:
        charger = rt.charger
        plugged = charger.get("status") in PLUGGED_STATUSES or charger.get("transaction_id") is not None
        pv = [self._reading(d, "pv_power_w", "ac_power_w") for d in lp.pv]
        loads = [self._reading(d, "ac_power_w", "meter_power_w") for d in lp.loads]
        phase_currents = tuple(self._reading(lp.grid_meter, f"current_l{n}_a") for n in (1, 2, 3))
        grid_w = self._reading(lp.grid_meter, "meter_power_w", "ac_power_w")
        own_w, hold = charger.get("power_w"), False
        if grid_w is not None and plugged:
            own_w = self._power_at(lp, (self.values.get(lp.grid_meter) or {}).get("at"))
            # the car's power at the meter's moment is unknown: just (re)started, or the meter lags behind our first sample
            hold = own_w is None and (self.power_history.get((lp.charger, lp.connector)) or time.monotonic() - self.started < POWER_GRACE)
        return Inputs(now=now, mode=rt.mode, plugged=plugged, grid_w=grid_w, charge_w=own_w if plugged else 0.0, hold=bool(hold),
                      pv_w=sum(pv) if pv and None not in pv else None, loads_w=sum(loads) if loads and None not in loads else None,
                      battery_w=self._reading(lp.battery, "battery_power_w", "ac_power_w"), battery_soc=self._reading(lp.battery, "battery_soc_pct"),
                      phase_currents=phase_currents if None not in phase_currents else None)

    def _power_at(self, lp: LoadpointConfig, at: float | None) -> float | None:
        """The car's power when the meter was read: surplus = −grid + own power only holds for readings of one moment.

        The device actor publishes at most every few seconds; pairing its reading with the
        car's power of now would count a limit change twice (once in the stale grid power,
        once in the fresh car power).
        """
        history = self.power_history.get((lp.charger, lp.connector))
        if at is None or not history:
            return None
        before = [w for t, w in history if t <= at]
        return before[-1] if before else None

    def _decide(self, lp: LoadpointConfig, granted: dict[str, float] | None = None) -> None:
        """Decide for one loadpoint; with `granted`, several loadpoints on one surplus share it instead of each taking all of it.

        The meter shows what the cars drew, not what they were just allowed: a loadpoint
        decided later in the same round sees the surplus less every increase granted before
        it (decreases are not handed on before they show at the meter).
        """
        rt = self.runtime[lp.id]
        now = time.monotonic()
        was_connected = rt.charger.get("connected")
        rt.charger = self._charger_state(lp)
        if rt.charger["connected"] and not was_connected:
            rt.sent_key = None  # a charger that was away (rebooted, replaced) is told its limit again
        inputs = self._inputs(lp, rt, now)
        source = f"grid:{lp.grid_meter}" if lp.grid_meter else f"pv:{','.join(lp.pv)}"
        given = (granted or {}).get(source, 0.0)
        if given and inputs.grid_w is not None and lp.grid_meter:
            inputs = replace(inputs, grid_w=inputs.grid_w + given)
        elif given and inputs.loads_w is not None:
            inputs = replace(inputs, loads_w=inputs.loads_w + given)
        drawn = inputs.charge_w if inputs.charge_w is not None else (rt.state.current_a * lp.voltage * rt.state.phases if rt.state.enabled else 0.0)
        state, decision = step(lp, self.settings, rt.state, inputs)
        if granted is not None:
            allowed = (decision.limit_a if decision.managed else lp.max_current) * lp.voltage * decision.phases if decision.enabled else 0.0
            granted[source] = given + max(0.0, allowed - drawn)
        if decision.limit_a == 0.0 and rt.zero_refused and decision.managed:
            decision = Decision(lp.min_current, decision.phases, decision.enabled, decision.reason + f"; this charger model refuses 0 A, so it is held at the minimum {lp.min_current:g} A",
                                True, decision.surplus_w, decision.fuse_limit_a, decision.timers)
        rt.state, rt.decision, rt.decided_at = state, decision, time.time()
        store.save_state(self.conn, lp.id, {**state.to_dict(), "last_tick": None})
        self._tell_charger(lp, rt, decision)

    def _tell_charger(self, lp: LoadpointConfig, rt: Runtime, decision: Decision) -> None:
        key = decision.key()
        if key == rt.sent_key or rt.in_flight is not None or lp.charger not in self.chargers or not rt.charger.get("connected"):
            return
        if lp.charger not in self.stack_levels or time.monotonic() < rt.exhausted_until:
            return  # its ChargeProfileMaxStackLevel first (asked when the charger actor was found)
        if not decision.managed:
            request = ClearChargingProfile(**profiles.clear_request(lp.connector))
            kind, limit = "clear", None
            rt.sent = {"action": "ClearChargingProfile", "at": time.time(), "answer": None}
        else:
            remembered, zero_refused = store.variant_for(self.conn, self._model_key(lp))
            rt.zero_refused = rt.zero_refused or zero_refused
            if rt.sent is None and remembered:
                rt.variant = profiles.first_variant(remembered)
            profile = profiles.build_profile(rt.variant, limit_a=decision.limit_a, phases=decision.phases, voltage=lp.voltage, connector=lp.connector,
                                             max_stack_level=self.stack_levels[lp.charger], transaction_id=rt.charger.get("transaction_id"), now_wall=time.time())
            if profile is None:  # TxProfile without a session: start again from the first variant
                rt.variant = profiles.first_variant(None)
                return
            request = SetChargingProfile(connector_id=lp.connector, cs_charging_profiles=profile)
            kind, limit = "profile", decision.limit_a
            rt.sent = {"action": "SetChargingProfile", "variant": rt.variant, "limit_a": decision.limit_a, "phases": decision.phases,
                       "stack_level": profile["stackLevel"], "unit": profile["chargingSchedule"]["chargingRateUnit"], "at": time.time(), "answer": None}
        request_id = self._command(lp.charger, kind, lp.id, request, limit)
        self.log.info("limit sent to the charger", loadpoint=lp.id, charger=lp.charger, action=rt.sent["action"], limit_a=limit,
                      phases=decision.phases, variant=rt.sent.get("variant"), reason=decision.reason)
        if request_id is not None:
            rt.in_flight = (request_id, time.monotonic(), key)

    # ------------------------------------------------------------ modes
    def receiveMsg_SetLoadpointMode(self, msg: SetLoadpointMode, sender: Any) -> None:  # noqa: N802
        """The API stored a new mode; take it (from the store, the truth) and decide at once."""
        lp = next((lp for lp in self.loadpoints if lp.id == msg.loadpoint_id), None)
        if lp is None:
            self.send(sender, LoadpointModeSet(msg.loadpoint_id, None))
            return
        rt = self.runtime[lp.id]
        stored = store.modes(self.conn).get(lp.id)
        rt.mode, rt.mode_source = (stored, "rest") if stored else (lp.mode, "config")
        self.log.info("loadpoint mode changed", loadpoint=lp.id, mode=rt.mode)
        self._decide(lp)
        self._publish()
        self.send(sender, LoadpointModeSet(lp.id, self.view(lp)))

    # ------------------------------------------------------------ views
    def view(self, lp: LoadpointConfig) -> dict[str, Any]:
        return runtime_view(lp, self.runtime[lp.id])

    def _publish(self) -> None:
        views = {lp.id: self.view(lp) for lp in self.loadpoints}
        self.publish("running", loadpoints=views)
        self.live.emit_many(live_events(views))
