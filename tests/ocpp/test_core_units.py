"""The protocol core without sockets or actors: injected clocks, real SQLite."""

from __future__ import annotations

import json

import pytest

from actors.ocpp.export import ExportForwarder
from actors.ocpp.messages import LiveUpdate, Reset
from actors.ocpp.policy import OcppPolicy
from actors.ocpp.protocol import ChargerProtocol
from actors.ocpp.sequencing import Resequencer
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store


class Clock:
    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


def booted(db, policy: OcppPolicy, mono: Clock) -> ChargerProtocol:
    charger_store.add_charger(db, "CP1", registration_status="Accepted")
    p = ChargerProtocol("CP1", db, policy, monotonic=mono)
    p.connected(1)
    effects = p.receive(1, json.dumps([2, "b", "BootNotification", {"chargePointVendor": "V", "chargePointModel": "M"}]))
    assert json.loads(effects.frames[0])[2]["status"] == "Accepted"
    return p


def meter(p: ChargerProtocol, uid: str, tx: int, wh: int, minute: int):
    payload = {"connectorId": 1, "transactionId": tx, "meterValue": [{"timestamp": f"2026-01-01T00:{minute:02d}:00Z", "sampledValue": [{"value": str(wh)}]}]}
    return p.receive(1, json.dumps([2, uid, "MeterValues", payload]))


def test_live_figures_pushed_at_once_but_written_at_most_every_interval(db):
    mono = Clock()
    p = booted(db, OcppPolicy(live_metrics_db_interval=10.0), mono)
    start = p.receive(1, json.dumps([2, "s", "StartTransaction", {"connectorId": 1, "idTag": "T", "meterStart": 0, "timestamp": "2026-01-01T00:00:00Z"}]))
    tx = json.loads(start.frames[0])[2]["transactionId"]
    first = meter(p, "m1", tx, 100, 1)
    assert [u.energy_wh for u in first.live if isinstance(u, LiveUpdate)] == [100]
    assert tx_store.get_transaction(db, tx)["last_meter_wh"] == 100  # first sample written at once
    mono.t += 3
    second = meter(p, "m2", tx, 200, 2)
    assert [u.energy_wh for u in second.live if isinstance(u, LiveUpdate)] == [200]  # pushed immediately
    assert tx_store.get_transaction(db, tx)["last_meter_wh"] == 100  # database lags on purpose
    assert len(tx_store.meter_values(db, transaction_id=tx)) == 2  # but every sample is stored
    assert p.next_deadline() == pytest.approx(1010.0)
    mono.t += 7
    p.tick()
    assert tx_store.get_transaction(db, tx)["last_meter_wh"] == 200


def test_requests_time_out_on_the_injected_clock(db):
    mono = Clock()
    p = booted(db, OcppPolicy(call_timeout=30.0), mono)
    sent = p.request(Reset("Soft"), request_id="r1")
    assert json.loads(sent.frames[0])[2] == "Reset"
    mono.t += 29.9
    assert p.tick().outcomes == []
    mono.t += 0.2
    [outcome] = p.tick().outcomes
    assert (outcome.request_id, outcome.outcome) == ("r1", "timeout")
    late = p.receive(1, json.dumps([3, json.loads(sent.frames[0])[1], {"status": "Accepted"}]))
    assert late.outcomes == [] and late.frames == []  # a late answer is ignored, not answered


def test_restarted_protocol_reloads_acceptance_from_storage(db):
    mono = Clock()
    booted(db, OcppPolicy(), mono)
    again = ChargerProtocol("CP1", db, OcppPolicy(), monotonic=mono)
    again.connected(2)
    reply = again.receive(2, json.dumps([2, "h", "Heartbeat", {}]))
    assert json.loads(reply.frames[0])[0] == 3  # no new BootNotification needed
    mono.t += 10
    trigger = again.tick()
    assert json.loads(trigger.frames[0])[2:] == ["TriggerMessage", {"requestedMessage": "StatusNotification"}]


def test_resequencer_releases_in_order_and_detects_loss():
    r = Resequencer(0, limit=2)
    assert r.push(1, "b") == []
    assert r.push(0, "a") == ["a", "b"]
    assert r.push(0, "a") == []  # duplicate
    assert r.push(3, "d") == [] and r.push(4, "e") == [] and not r.overflowed
    r.push(5, "f")
    assert r.overflowed  # seq 2 never came


def test_export_forwarder_resends_until_acked_and_batch_ids_increase(db):
    tx_store.queue_export(db, "CP1", 1.0, {"values": {"energy_wh": 10}, "raw": {}})
    f = ExportForwarder(db, "CP1", "chargers/CP1")
    batch = f.next_batch(0.0)
    assert batch.readings[0].device_id == "charger:CP1" and batch.readings[0].values == {"energy_wh": 10}
    assert f.next_batch(1.0) is None  # in flight, not yet timed out
    again = f.next_batch(100.0)
    assert again.batch_id == batch.batch_id  # re-sent after the ack timeout
    assert not f.acked(batch.batch_id + 1)
    assert f.acked(batch.batch_id)
    assert tx_store.pending_exports(db, "CP1") == []
    tx_store.queue_export(db, "CP1", 2.0, {"values": {"energy_wh": 20}, "raw": {}})
    assert f.next_batch(101.0).batch_id > batch.batch_id


def test_policy_rejects_nonsense():
    with pytest.raises(ValueError):
        OcppPolicy.from_config({"unknown_id_tags": "maybe"})
    with pytest.raises(ValueError):
        OcppPolicy.from_config({"call_queue_limit": 0})
    assert OcppPolicy.from_config({"heartbeat_interval": 60, "unrelated": 1}).heartbeat_interval == 60


def test_requests_built_from_api_payloads():
    from actors.ocpp.messages import RemoteStartTransaction, ReserveNow, request_from_payload

    assert request_from_payload("RemoteStartTransaction", {"idTag": "A", "connectorId": 1}) == RemoteStartTransaction("A", 1)
    reserve = request_from_payload("ReserveNow", {"connectorId": 1, "idTag": "B", "expiryDate": "2030-01-01T00:00:00Z"})
    assert isinstance(reserve, ReserveNow) and reserve.payload(7)["expiryDate"] == "2030-01-01T00:00:00.000Z"
    with pytest.raises(ValueError, match="expiryDate"):
        request_from_payload("ReserveNow", {"connectorId": 1, "idTag": "B", "expiryDate": "soon"})
    with pytest.raises(ValueError, match="bogus"):
        request_from_payload("Reset", {"type": "Hard", "bogus": 1})
    with pytest.raises(ValueError, match="Heartbeat"):
        request_from_payload("Heartbeat", {})


def test_reservations_past_their_expiry_are_marked_expired(db):
    mono = Clock()
    p = booted(db, OcppPolicy(), mono)
    wall = Clock(5000.0)
    p.clock = wall
    soon = tx_store.create_reservation(db, "CP1", connector_id=1, id_tag="A", expiry=5010.0, now=5000.0)
    later = tx_store.create_reservation(db, "CP1", connector_id=1, id_tag="B", expiry=9000.0, now=5000.0)
    tx_store.set_reservation_status(db, soon, "Accepted")
    p.tick()
    assert tx_store.get_reservation(db, soon)["status"] == "Accepted"
    wall.t, mono.t = 5020.0, mono.t + 31
    p.tick()
    assert tx_store.get_reservation(db, soon)["status"] == "Expired"
    assert tx_store.get_reservation(db, later)["status"] == "Requested"


def test_state_of_charge_and_current_from_meter_values():
    from actors.ocpp.handlers import parse_samples, soc_and_current

    def sampled(*values):
        return parse_samples([{"timestamp": "2026-11-21T08:00:00Z", "sampledValue": list(values)}])

    phases = sampled({"measurand": "SoC", "value": "64", "unit": "Percent", "location": "EV"},
                     {"measurand": "Current.Import", "value": "16.0", "unit": "A", "phase": "L1"},
                     {"measurand": "Current.Import", "value": "16.4", "unit": "A", "phase": "L2"},
                     {"measurand": "Current.Import", "value": "0.3", "unit": "A", "phase": "N"},
                     {"measurand": "Current.Import", "value": "99", "unit": "A", "location": "Inlet"})
    [figures] = soc_and_current(phases).values()
    assert figures == {"soc_percent": 64.0, "current_a": 16.4, "current_phases_a": {"L1": 16.0, "L2": 16.4}}  # the neutral and the inlet are not the charge
    total = sampled({"measurand": "Current.Import", "value": "31.9", "unit": "A"}, {"measurand": "Current.Import", "value": "16.0", "unit": "A", "phase": "L1"})
    assert next(iter(soc_and_current(total).values()))["current_a"] == 31.9  # the charger's own total wins over a phase
    nonsense = sampled({"measurand": "SoC", "value": "NaN"}, {"measurand": "SoC", "value": "130"}, {"measurand": "Current.Import", "value": "Infinity", "unit": "A"})
    assert soc_and_current(nonsense) == {}
