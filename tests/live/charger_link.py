"""A simulated charger talking to the real charger protocol in-process, feeding a hub.

`SimulatedChargePoint` (the `ocpp` package's client) sends real OCPP 1.6 frames;
`ProtocolLink` hands them to a real `ChargerProtocol` over a real SQLite file and does
with the effects what the charger actor does (replies back to the charge point) plus
what the feed asks the charger actor to do: `live_events(update)` for each live effect,
and the started/stopped events the StartTransaction/StopTransaction handlers are to emit.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from actors.live.hub import Hub
from actors.live.messages import LiveEvent
from actors.ocpp.live_events import live_events, transaction_started, transaction_stopped
from actors.ocpp.frames import parse_timestamp
from actors.ocpp.policy import OcppPolicy
from actors.ocpp.protocol import ChargerProtocol, Effects
from simulators.charger.chargepoint import SimulatedChargePoint
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store
from storage.db import connect


class ProtocolLink:
    """The charge point's `send`/`recv` connection, wired straight to a ChargerProtocol."""

    def __init__(self, protocol: ChargerProtocol, hub: Hub) -> None:
        self.protocol, self.hub = protocol, hub
        self.inbox: asyncio.Queue[str] = asyncio.Queue()
        self.calls: dict[str, tuple[str, dict]] = {}
        self.closed = False
        self._apply(protocol.connected(1))

    async def send(self, text: str) -> None:
        frame = json.loads(text)
        if frame[0] == 2:
            self.calls[frame[1]] = (frame[2], frame[3])
        effects = self.protocol.receive(1, text)
        started_or_stopped = self._announce(effects)
        if any(isinstance(update, LiveEvent) for update in effects.live):
            started_or_stopped = []  # the handlers emit them themselves now
        self._apply(effects)
        for event in started_or_stopped:  # appended after the handler's LiveUpdate, as in the handlers
            self.hub.publish(event)

    async def recv(self) -> str:
        return await self.inbox.get()

    async def close(self) -> None:
        self.closed = True

    def _apply(self, effects: Effects) -> None:
        for text in effects.frames:
            self.inbox.put_nowait(text)
        for update in effects.live:
            for event in live_events(update, self._transaction_on):
                self.hub.publish(event)

    def _announce(self, effects: Effects) -> list:
        """The started/stopped events, as the StartTransaction/StopTransaction handlers are to emit them."""
        cp = self.protocol.charge_point_id
        out = []
        for text in effects.frames:
            reply = json.loads(text)
            action, payload = self.calls.pop(reply[1], (None, None))
            if reply[0] != 3 or payload is None:
                continue
            if action == "StartTransaction":
                for event in transaction_started(cp, reply[2]["transactionId"], payload["connectorId"], payload["idTag"],
                                                 payload["meterStart"], parse_timestamp(payload["timestamp"])):
                    out.append(event)
            elif action == "StopTransaction":
                tx = tx_store.get_transaction(self.protocol.conn, payload["transactionId"])
                for event in transaction_stopped(cp, payload["transactionId"], tx["connector_id"], payload["meterStop"],
                                                 tx.get("energy_wh"), payload.get("reason", "Local"), parse_timestamp(payload["timestamp"])):
                    out.append(event)
        return out

    def _transaction_on(self, connector_id: int) -> int | None:
        for tx in tx_store.active_transactions(self.protocol.conn, self.protocol.charge_point_id):
            if tx["connector_id"] == connector_id:
                return tx["transaction_id"]
        return None


class Charger:
    """A booted simulated charge point on an in-process link; `await close()` at the end."""

    def __init__(self, db_path: Path, hub: Hub, charge_point_id: str = "CP-1") -> None:
        self.conn = connect(db_path)
        charger_store.init(self.conn)
        tx_store.init(self.conn)
        charger_store.add_charger(self.conn, charge_point_id, registration_status="Accepted")
        self.protocol = ChargerProtocol(charge_point_id, self.conn, OcppPolicy(live_metrics_db_interval=0.0))
        self.link = ProtocolLink(self.protocol, hub)
        self.cp = SimulatedChargePoint(charge_point_id, self.link, response_timeout=5)
        self._reader: asyncio.Task[Any] | None = None

    async def boot(self) -> SimulatedChargePoint:
        self._reader = asyncio.create_task(self.cp.start())
        assert (await self.cp.boot()).status == "Accepted"
        return self.cp

    async def close(self) -> None:
        if self._reader is not None:
            self._reader.cancel()
        self.conn.close()
