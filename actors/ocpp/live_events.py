"""Charger effects as live events: what the charger actor emits after each OCPP message.

The charger protocol already produces `LiveUpdate` (a session's latest meter figures,
also sent at StopTransaction) and `ConnectorStatus` (a StatusNotification that changed
something). The charger actor is the right source for transaction and charger topics:
it sees each MeterValues the moment it is committed, whereas the `charger:<id>` readings
that pass through the outbox arrive in batches, later. (The harvest actor therefore
skips `charger:` readings for the feed.) Like the harvest family's events
(`actors.harvest.live_events`) these are plain `LiveEvent`s on `actors.live.topics`,
sent through `actors.live.publisher.LivePublisher`: the feed's one interface for sources.

    LiveUpdate       -> transaction/<id>  "meter_values" (energy_wh, power_w, session_energy_wh,
                        soc_percent and current_a, null when the charger does not sample them,
                        current_phases_a when it samples phases)
    ConnectorStatus  -> charger/<id>      "connector_status"
                        (+ transaction/<id> "status" when a session runs on that connector)
    transaction_started / transaction_stopped (from the StartTransaction / StopTransaction
    handlers) -> transaction/<id> and charger/<id>  "started" / "stopped"
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from actors.live.messages import LiveEvent
from actors.live.topics import charger_topic, transaction_topic


def live_events(update: Any, transaction_on: Callable[[int], int | None] | None = None) -> list[LiveEvent]:
    """The feed's events for one item of a charger protocol's `effects.live`.

    `transaction_on(connector_id)` names the session running on a connector (if known),
    so status changes also reach that session's subscribers. LiveEvents pass unchanged.
    """
    now = time.time()
    if isinstance(update, LiveEvent):
        return [update]
    kind = type(update).__name__
    if kind in ("LiveUpdate", "MeterUpdate"):  # MeterUpdate (actors.ocpp.handlers) adds state of charge and current
        data = {"charger": update.charge_point_id, "connector": update.connector_id, "transaction_id": update.transaction_id,
                "energy_wh": update.energy_wh, "power_w": update.power_w, "session_energy_wh": update.session_energy_wh,
                "soc_percent": getattr(update, "soc_percent", None), "current_a": getattr(update, "current_a", None)}
        phases = getattr(update, "current_phases_a", None)
        if phases:
            data["current_phases_a"] = dict(phases)
        return [LiveEvent(transaction_topic(update.transaction_id), "meter_values", data, update.timestamp, now)]
    if kind == "ConnectorStatus":
        data = {"charger": update.charge_point_id, "connector": update.connector_id, "status": update.status, "error_code": update.error_code}
        events = [LiveEvent(charger_topic(update.charge_point_id), "connector_status", data, update.timestamp, now)]
        transaction_id = transaction_on(update.connector_id) if transaction_on is not None else None
        if transaction_id is not None:
            events.append(LiveEvent(transaction_topic(transaction_id), "status", {**data, "transaction_id": transaction_id}, update.timestamp, now))
        return events
    return []


def transaction_started(charge_point_id: str, transaction_id: int, connector_id: int, id_tag: str, meter_start: float, start_time: float) -> list[LiveEvent]:
    """For the StartTransaction handler: a session began (on both its topic and its charger's)."""
    data = {"charger": charge_point_id, "connector": connector_id, "transaction_id": transaction_id, "id_tag": id_tag, "meter_start_wh": meter_start}
    now = time.time()
    return [LiveEvent(transaction_topic(transaction_id), "started", data, start_time, now),
            LiveEvent(charger_topic(charge_point_id), "transaction_started", data, start_time, now)]


def transaction_stopped(charge_point_id: str, transaction_id: int, connector_id: int, meter_stop: float, energy_wh: float | None,
                        reason: str, stop_time: float) -> list[LiveEvent]:
    """For the StopTransaction handler: the session ended (the last message of its topic)."""
    data = {"charger": charge_point_id, "connector": connector_id, "transaction_id": transaction_id, "meter_stop_wh": meter_stop,
            "energy_wh": energy_wh, "reason": reason}
    now = time.time()
    return [LiveEvent(transaction_topic(transaction_id), "stopped", data, stop_time, now),
            LiveEvent(charger_topic(charge_point_id), "transaction_stopped", data, stop_time, now)]
