"""One handler per charger-initiated OCPP 1.6 action, routed by action name.

A handler gets the charger's protocol state, the schema-validated payload and the wall
clock `now`; it stores what must be stored (each write one SQLite transaction, done before
the reply is returned, so a reply always means "committed") and returns the CALLRESULT
payload. A handler raises `FrameError` for a payload that is well-formed but unusable.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from actors.ocpp.live_events import transaction_started, transaction_stopped
from actors.ocpp.frames import FrameError, format_timestamp, parse_timestamp
from actors.ocpp.messages import ConnectorStatus, LiveUpdate
from storage import chargers as charger_store
from storage import local_auth_list
from storage import ocpp_transactions as tx_store

if TYPE_CHECKING:
    from actors.ocpp.protocol import ChargerProtocol

Handler = Callable[["ChargerProtocol", dict, float], dict]
HANDLERS: dict[str, Handler] = {}

ENERGY = "Energy.Active.Import.Register"
POWER = "Power.Active.Import"


def handles(action: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        HANDLERS[action] = fn
        return fn

    return register


@handles("BootNotification")
def boot_notification(p: ChargerProtocol, payload: dict, now: float) -> dict:
    """Answer with the registration the operator gave the charger.

    A blocked charger is Rejected (its registration kept for when it is unblocked), and
    so is one whose row is gone: the operator removed it while it was connected, and its
    boot must not bring it back.
    """
    existing = charger_store.get_charger(p.conn, p.charge_point_id)
    if existing is None:
        p.log.warning("BootNotification from a charge point that was removed: Rejected")
        status = "Rejected"
    else:
        status = "Rejected" if existing["blocked"] else existing["registration_status"]
        charger_store.record_boot(
            p.conn, p.charge_point_id,
            vendor=payload["chargePointVendor"], model=payload["chargePointModel"],
            serial_number=payload.get("chargePointSerialNumber") or payload.get("chargeBoxSerialNumber"),
            firmware_version=payload.get("firmwareVersion"), registration_status=existing["registration_status"], now=now,
        )
    p.booted(status)
    interval = p.policy.heartbeat_interval if status == "Accepted" else p.policy.boot_retry_interval
    return {"status": status, "currentTime": format_timestamp(now), "interval": interval}


@handles("Heartbeat")
def heartbeat(p: ChargerProtocol, payload: dict, now: float) -> dict:
    return {"currentTime": format_timestamp(now)}


@handles("StatusNotification")
def status_notification(p: ChargerProtocol, payload: dict, now: float) -> dict:
    """Record a connector's status, ordered by the charger's timestamp.

    A timestamp more than `FUTURE_SKEW` ahead of our clock would outrank every correct
    notification after it (the connector's status would freeze): it is ordered as "now"
    instead, its text kept in the record's `charger_timestamp`, and a warning logged.
    """
    connector_id = _connector(payload, p)
    timestamp = parse_timestamp(payload["timestamp"]) if "timestamp" in payload else now
    charger_timestamp = None
    if timestamp > now + charger_store.FUTURE_SKEW:
        p.log.warning("StatusNotification dated in the future: ordered as received", timestamp=payload["timestamp"][:40],
                      ahead_s=round(timestamp - now), connector_id=connector_id)
        charger_timestamp, timestamp = payload["timestamp"][:64], now
    current = charger_store.record_status(
        p.conn, p.charge_point_id, connector_id,
        status=payload["status"], error_code=payload["errorCode"], timestamp=timestamp, received=now,
        info=payload.get("info"), vendor_error_code=payload.get("vendorErrorCode"), charger_timestamp=charger_timestamp,
    )
    if current:
        p.effects.live.append(ConnectorStatus(p.charge_point_id, connector_id, payload["status"], payload["errorCode"], timestamp))
    return {}


def id_tag_info(p: ChargerProtocol, id_tag: str, now: float, transaction_id: int | None = None) -> dict:
    """The local authorization list decides; unknown tags follow the policy.

    An Accepted tag of the list past its expiry is Expired; one with an active session on
    another charge point (other than `transaction_id`, the session being started) is
    ConcurrentTx. Tags not on the list are not checked for that: under the default
    `unknown_id_tags = "accept"` a tag means nothing, and an operator who wants one tag
    one car puts the tag on the list.
    """
    entry = local_auth_list.get_authorization(p.conn, id_tag)
    if entry is None:
        return {"status": "Accepted" if p.policy.unknown_id_tags == "accept" else "Invalid"}
    status = entry["status"]
    if status == "Accepted" and entry["expiry"] is not None and entry["expiry"] < now:
        status = "Expired"
    if status == "Accepted" and _charging_elsewhere(p, id_tag, transaction_id):
        status = "ConcurrentTx"
    info: dict[str, Any] = {"status": status}
    if entry["expiry"] is not None:
        info["expiryDate"] = format_timestamp(entry["expiry"])
    if entry["parent_id_tag"]:
        info["parentIdTag"] = entry["parent_id_tag"]
    return info


def _charging_elsewhere(p: ChargerProtocol, id_tag: str, transaction_id: int | None) -> bool:
    """Whether `id_tag` has an active session on another charge point.

    Authorize from the charger it charges at is how a driver stops the session, so that
    charger's own sessions never count; for StartTransaction the session just stored
    does not either.
    """
    for tx in tx_store.transactions_for_id_tag(p.conn, id_tag, limit=20):
        if tx["status"] == "Active" and tx["transaction_id"] != transaction_id and tx["charge_point_id"] != p.charge_point_id:
            return True
    return False


@handles("Authorize")
def authorize(p: ChargerProtocol, payload: dict, now: float) -> dict:
    return {"idTagInfo": id_tag_info(p, payload["idTag"], now)}


@handles("StartTransaction")
def start_transaction(p: ChargerProtocol, payload: dict, now: float) -> dict:
    """Always recorded, even for a refused idTag: the charger may already be charging (offline start)."""
    connector_id = _connector(payload, p, allow_zero=False)
    transaction_id, new = tx_store.start_transaction(
        p.conn, p.charge_point_id, connector_id=connector_id, id_tag=payload["idTag"],
        meter_start=payload["meterStart"], start_time=parse_timestamp(payload["timestamp"]), received=now,
        reservation_id=payload.get("reservationId"),
    )
    p.log.info("transaction started" if new else "replayed StartTransaction answered with its id",
               transaction_id=transaction_id, connector_id=connector_id)
    if new:
        p.effects.live.extend(transaction_started(p.charge_point_id, transaction_id, connector_id, payload["idTag"],
                                                  payload["meterStart"], parse_timestamp(payload["timestamp"])))
    return {"transactionId": transaction_id, "idTagInfo": id_tag_info(p, payload["idTag"], now, transaction_id)}


@handles("MeterValues")
def meter_values(p: ChargerProtocol, payload: dict, now: float) -> dict:
    """Store the samples; ones naming a transaction that is not this charger's are kept without it.

    MeterValues.conf has no field to refuse anything, and OCPP 1.6 defines no CALLERROR
    for this, so the charger gets its empty answer and the log the warning; another
    charger's session, its figures and its live feed are never touched.
    """
    connector_id = _connector(payload, p)
    transaction_id = payload.get("transactionId")
    if transaction_id is not None and _owned(p, transaction_id, "MeterValues") is None:
        transaction_id = None
    p.store_meter_values(connector_id, transaction_id, payload["meterValue"], now)
    return {}


def _owned(p: ChargerProtocol, transaction_id: int, action: str) -> dict | None:
    """The transaction if it is this charger's; None (and a warning) if never issued or another charger's."""
    tx = tx_store.get_transaction(p.conn, transaction_id)
    if tx is not None and tx["charge_point_id"] == p.charge_point_id:
        return tx
    if tx is not None:
        p.log.warning(f"{action} names another charge point's transaction: not applied to it", transaction_id=transaction_id)
    elif action != "StopTransaction":  # StopTransaction logs its own warning for a never-issued id
        p.log.warning(f"{action} names a transaction id never issued: stored without it", transaction_id=transaction_id)
    return None


@handles("StopTransaction")
def stop_transaction(p: ChargerProtocol, payload: dict, now: float) -> dict:
    """Finish one of this charger's sessions.

    A stop naming an id the central system never issued is accepted (OCPP 1.6 expects
    the central system to take it, so the charger can drop it from its queue) but
    creates no session and moves no id counter: ids are the central system's to issue.
    Its readings are kept under the charger without the id, and its end is exported
    flagged `unknown_start`. A stop naming another charger's session is answered the
    same way and changes nothing of that session; its readings too are kept under the
    sender without the id, and nothing is exported for it.
    """
    transaction_id = payload["transactionId"]
    stop_time = parse_timestamp(payload["timestamp"])
    reply: dict[str, Any] = {}
    if "idTag" in payload:
        reply["idTagInfo"] = id_tag_info(p, payload["idTag"], now)
    before = _owned(p, transaction_id, "StopTransaction")
    if before is None:
        if tx_store.get_transaction(p.conn, transaction_id) is None:
            _stop_unknown(p, payload, transaction_id, stop_time, now)
        elif payload.get("transactionData"):
            p.store_meter_values(0, None, payload["transactionData"], now)
        return reply
    if payload.get("transactionData"):
        p.store_meter_values(before["connector_id"], transaction_id, payload["transactionData"], now)
    export = {
        "values": {
            "transaction_id": transaction_id,
            "connector_id": before["connector_id"],
            "energy_wh": payload["meterStop"],
            "session_energy_wh": payload["meterStop"] - before["meter_start"],
            "start_time": before["start_time"],
            "stop_time": stop_time,
        },
        "raw": {"event": "session_end", "stop_reason": payload.get("reason", "Local"), "unknown_start": False},
    }
    tx = tx_store.stop_transaction(
        p.conn, p.charge_point_id, transaction_id, meter_stop=payload["meterStop"], stop_time=stop_time, received=now,
        reason=payload.get("reason", "Local"), id_tag=payload.get("idTag"),
        export=export if before["status"] == "Active" else None,
    )
    p.exports_added = True
    if tx is not None and before["status"] == "Active":  # a repeated StopTransaction announces nothing new
        p.effects.live.append(LiveUpdate(p.charge_point_id, transaction_id, tx["connector_id"], stop_time, payload["meterStop"], 0.0, tx["energy_wh"]))
        p.effects.live.extend(transaction_stopped(p.charge_point_id, transaction_id, tx["connector_id"], payload["meterStop"],
                                                  tx["energy_wh"], tx["stop_reason"] or "Local", stop_time))
    return reply


def _stop_unknown(p: ChargerProtocol, payload: dict, transaction_id: int, stop_time: float, now: float) -> None:
    """A StopTransaction for an id never issued: keep what it says under the charger, store no session."""
    p.log.warning("StopTransaction for a transaction id never issued: accepted, no session stored",
                  transaction_id=transaction_id, meter_stop=payload["meterStop"])
    if payload.get("transactionData"):
        p.store_meter_values(0, None, payload["transactionData"], now)
    tx_store.queue_export(p.conn, p.charge_point_id, stop_time, {
        "values": {"transaction_id": None, "connector_id": 0, "energy_wh": payload["meterStop"], "stop_time": stop_time},
        "raw": {"event": "session_end", "stop_reason": payload.get("reason", "Local"), "unknown_start": True,
                "charger_transaction_id": transaction_id},
    })
    p.exports_added = True


@handles("DataTransfer")
def data_transfer(p: ChargerProtocol, payload: dict, now: float) -> dict:
    """No vendor extensions are implemented: the spec's answer for that is UnknownVendorId."""
    p.log.info("DataTransfer ignored", vendor_id=payload["vendorId"], message_id=payload.get("messageId"))
    return {"status": "UnknownVendorId"}


@handles("DiagnosticsStatusNotification")
def diagnostics_status_notification(p: ChargerProtocol, payload: dict, now: float) -> dict:
    p.log.info("diagnostics status", status=payload["status"])
    return {}


@handles("FirmwareStatusNotification")
def firmware_status_notification(p: ChargerProtocol, payload: dict, now: float) -> dict:
    p.log.info("firmware status", status=payload["status"])
    return {}


def _connector(payload: dict, p: ChargerProtocol, allow_zero: bool = True) -> int:
    connector_id = payload["connectorId"]
    if connector_id < (0 if allow_zero else 1):
        raise FrameError("PropertyConstraintViolation", f"connectorId {connector_id} is out of range")
    return connector_id


def parse_samples(meter_value: list[dict]) -> list[dict]:
    """Flatten OCPP meterValue entries into sample rows (epoch timestamps, spec defaults filled in)."""
    rows = []
    for entry in meter_value:
        timestamp = parse_timestamp(entry["timestamp"])
        for sv in entry["sampledValue"]:
            measurand = sv.get("measurand", ENERGY)
            rows.append({
                "timestamp": timestamp, "measurand": measurand, "value": sv["value"],
                "phase": sv.get("phase"), "location": sv.get("location"), "context": sv.get("context"),
                "unit": sv.get("unit", "Wh" if measurand.startswith("Energy") else ""),
                "format": sv.get("format", "Raw"),
            })
    return rows


#: The quantities an export reading carries, by the measurand they come from.
QUANTITY = {ENERGY: "energy_wh", POWER: "power_w"}


def _export_sample(s: dict) -> bool:
    """Samples the export reading is built from: phase-less totals at the outlet, not signed blobs."""
    return not s["phase"] and s["format"] != "SignedData" and s["location"] in (None, "Outlet") and s["measurand"] in QUANTITY


def _number(s: dict) -> float | None:
    """The sample's value in Wh or W (kWh and kW scaled); None when it is not a number at all."""
    try:
        value = float(s["value"])
    except ValueError:
        return None
    return value * 1000 if s["unit"] in ("kWh", "kW") else value


def energy_and_power(samples: list[dict]) -> dict[float, dict[str, float]]:
    """Per timestamp: total imported energy in Wh and power in W (phase-less samples only).

    Only finite numbers: "NaN", "Infinity" or "1e400" are valid OCPP strings but no
    meter reading, and must not move a session's energy (see `non_finite`).
    """
    figures: dict[float, dict[str, float]] = {}
    for s in samples:
        if not _export_sample(s):
            continue
        value = _number(s)
        if value is not None and math.isfinite(value):
            figures.setdefault(s["timestamp"], {})[QUANTITY[s["measurand"]]] = value
    return figures


SOC = "SoC"
CURRENT = "Current.Import"
CURRENT_PHASES = ("L1", "L2", "L3")


@dataclass(frozen=True)
class MeterUpdate(LiveUpdate):
    """A MeterValues' `LiveUpdate` with what else a driver's app shows: the EV's state of charge and the current.

    `current_a` is the phase-less Current.Import sample, or the largest phase when the
    charger samples only phases (the phase that limits the charge); `current_phases_a`
    has each phase sampled. None when the charger does not sample them.
    """

    soc_percent: float | None = None
    current_a: float | None = None
    current_phases_a: dict[str, float] | None = None


def _finite(s: dict) -> float | None:
    try:
        value = float(s["value"])
    except (TypeError, ValueError):
        return None
    return value if math.isfinite(value) else None


def soc_and_current(samples: list[dict]) -> dict[float, dict[str, Any]]:
    """Per timestamp: soc_percent (SoC, 0-100, any location: chargers sample it at the EV), current_a and
    current_phases_a (Current.Import at the outlet, in A). Works on parsed samples and on stored rows alike."""
    figures: dict[float, dict[str, Any]] = {}
    for s in samples:
        if s.get("format") == "SignedData":
            continue
        value = _finite(s)
        if value is None:
            continue
        entry = figures.setdefault(s["timestamp"], {})
        if s["measurand"] == SOC and 0.0 <= value <= 100.0:
            entry["soc_percent"] = value
        elif s["measurand"] == CURRENT and s.get("location") in (None, "", "Outlet") and s.get("unit") in (None, "", "A"):
            phase = s.get("phase") or None
            if phase is None:
                entry["current_a"] = value
            elif phase in CURRENT_PHASES:
                entry.setdefault("current_phases_a", {})[phase] = value
    for entry in figures.values():
        if "current_a" not in entry and entry.get("current_phases_a"):
            entry["current_a"] = max(entry["current_phases_a"].values())
    return {t: e for t, e in figures.items() if e}


def non_finite(samples: list[dict]) -> list[dict]:
    """Samples whose value reads as NaN or an infinity (also after kWh/kW scaling), any measurand.

    JSON has no such numbers; the export stores them as null with a flag, never as a float.
    """
    bad = []
    for s in samples:
        if s["format"] == "SignedData":
            continue
        value = _number(s)
        if value is not None and not math.isfinite(value):
            bad.append(s)
    return bad


def non_finite_quantities(samples: list[dict]) -> dict[float, dict[str, str]]:
    """Per timestamp: export quantities (energy_wh, power_w) whose sample was non-finite, with its text."""
    found: dict[float, dict[str, str]] = {}
    for s in non_finite(samples):
        if _export_sample(s):
            found.setdefault(s["timestamp"], {})[QUANTITY[s["measurand"]]] = str(s["value"])[:64]
    return found
