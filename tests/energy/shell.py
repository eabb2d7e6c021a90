"""The energy actor's shell driven directly (no actor system): messages in, messages out, a real SQLite store.

The actor class is a thespian ActorTypeDispatcher; outside an actor system its handlers
are plain methods, so a test hands it the messages its peers would send (the root's
Tree, a charger actor's LiveUpdate and CommandOutcome) and reads what it sends back.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from actors.energy.actor import EnergyActor
from actors.energy.specs import energy_children
from actors.ocpp.messages import CommandOutcome, LiveUpdate
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store
from storage.db import connect
from supervisor.messages import LookupResult, Tree


class Shell:
    def __init__(self, data_dir: Path, loadpoint: dict[str, Any] | list[dict[str, Any]], **settings: Any) -> None:
        self.data_dir = data_dir
        loadpoints = loadpoint if isinstance(loadpoint, list) else [loadpoint]
        self.config = energy_children({"loadpoints": loadpoints, "devices": [{"id": "grid"}], "data_dir": str(data_dir), **settings})[0].config
        self.sent: list[tuple[Any, Any]] = []
        self.actor = self.start()

    def start(self) -> EnergyActor:
        actor = EnergyActor()
        actor.send = lambda to, msg: self.sent.append((to, msg))
        actor.wakeupAfter = lambda *args, **kwargs: None
        actor.publish = lambda *args, **kwargs: None
        actor.parent = "root"
        actor.on_start(self.config)
        self.actor = actor
        return actor

    def charger_plugged_in(self, cp: str = "CP", model: str = "SimCar") -> int:
        conn = connect(self.data_dir / "egw.db")
        charger_store.init(conn)
        tx_store.init(conn)
        now = time.time()
        charger_store.add_charger(conn, cp, registration_status="Accepted", now=now)
        charger_store.record_boot(conn, cp, vendor="egw-sim", model=model, serial_number=None, firmware_version=None, registration_status="Accepted", now=now)
        charger_store.set_connected(conn, cp, True, now)
        charger_store.record_status(conn, cp, 1, status="Charging", error_code="NoError", timestamp=now, received=now)
        tx, _ = tx_store.start_transaction(conn, cp, connector_id=1, id_tag="TAG", meter_start=0, start_time=now, received=now)
        conn.close()
        return tx

    def meter(self, grid_w: float, at: float) -> None:
        record = {"name": "devices", "kind": "supervisor", "children": [{"name": "grid", "info": {"values": {"meter_power_w": grid_w}, "last_poll": at}}]}
        self.actor.receiveMsg_Tree(Tree((record,)), "root")

    def car(self, power_w: float, at: float, cp: str = "CP") -> None:
        self.actor.receiveMsg_LiveUpdate(LiveUpdate(cp, 1, 1, at, None, power_w, None), cp)

    def found(self, cp: str = "CP", stack_level: int = 8) -> None:
        self.actor.receiveMsg_LookupResult(LookupResult(f"chargers/{cp}", f"address-of-{cp}"), "root")
        request = self.last("GetConfiguration")
        self.answer(request, {"configurationKey": [{"key": "ChargeProfileMaxStackLevel", "readonly": True, "value": str(stack_level)}]}, cp=cp)

    def last(self, action: str) -> Any:
        return next(msg for _, msg in reversed(self.sent) if getattr(getattr(msg, "request", None), "action", "") == action)

    def requests(self, action: str) -> list[Any]:
        return [msg for _, msg in self.sent if getattr(getattr(msg, "request", None), "action", "") == action]

    def answer(self, command: Any, payload: dict[str, Any], outcome: str = "result", cp: str = "CP") -> None:
        self.actor.receiveMsg_CommandOutcome(CommandOutcome(cp, command.request_id, command.request.action, outcome, payload), cp)

    def limits(self) -> list[float]:
        return [float(m.request.cs_charging_profiles["chargingSchedule"]["chargingSchedulePeriod"][0]["limit"]) for m in self.requests("SetChargingProfile")]
