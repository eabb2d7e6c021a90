"""The charger and transaction store against a real SQLite file."""

from __future__ import annotations

import pytest

from storage import chargers as store
from storage import local_auth_list
from storage import ocpp_transactions as txs
from storage.db import connect


def test_charger_crud_and_lookup_by_serial(db):
    store.add_charger(db, "CP1", auth_key="secret-key-0001", serial_number="SN-1")
    store.add_charger(db, "CP2")
    assert store.get_charger(db, "CP1")["serial_number"] == "SN-1"
    assert "auth_key_hash" not in store.get_charger(db, "CP1")
    assert store.get_charger_by_serial(db, "SN-1")["charge_point_id"] == "CP1"
    assert [c["charge_point_id"] for c in store.list_chargers(db)] == ["CP1", "CP2"]
    assert store.check_auth_key(store.get_auth_key_hash(db, "CP1"), "secret-key-0001")
    assert not store.check_auth_key(store.get_auth_key_hash(db, "CP1"), "wrong")
    assert not store.check_auth_key(store.get_auth_key_hash(db, "CP2"), "")
    store.update_charger_status(db, "CP1", "Faulted")
    assert store.get_charger(db, "CP1")["status"] == "Faulted"
    with pytest.raises(ValueError):
        store.update_charger_status(db, "CP1", "broken")
    assert store.remove_charger(db, "CP2")
    assert store.get_charger(db, "CP2") is None


def test_available_needs_connected_accepted_and_an_available_connector(db):
    store.record_boot(db, "CP1", vendor="V", model="M", serial_number=None, firmware_version=None, registration_status="Accepted", now=10)
    store.record_boot(db, "CP2", vendor="V", model="M", serial_number=None, firmware_version=None, registration_status="Accepted", now=10)
    store.record_status(db, "CP1", 1, status="Available", error_code="NoError", timestamp=11, received=11)
    store.record_status(db, "CP2", 1, status="Charging", error_code="NoError", timestamp=11, received=11)
    assert [c["charge_point_id"] for c in store.list_available_chargers(db)] == ["CP1"]
    store.set_connected(db, "CP1", False, 12)
    assert store.list_available_chargers(db) == []


def test_an_override_counts_for_availability_keeps_the_report_and_dies_with_its_charger(db):
    store.record_boot(db, "CP1", vendor="V", model="M", serial_number=None, firmware_version=None, registration_status="Accepted", now=10)
    store.record_status(db, "CP1", 1, status="Available", error_code="NoError", timestamp=11, received=11)
    assert store.set_connector_override(db, "CP1", 1, "Faulted", reason="cable cut", now=12) == {"status": "Faulted", "reason": "cable cut", "created": 12}
    assert store.set_connector_override(db, "CP1", 2, "Faulted", reason=None, now=12) is None  # never reported
    assert store.list_available_chargers(db) == []
    [connector] = store.list_chargers_with_connectors(db)[0]["connectors"]
    assert (connector["status"], connector["override"]["status"]) == ("Available", "Faulted")
    assert store.clear_connector_override(db, "CP1", 1) and not store.clear_connector_override(db, "CP1", 1)
    assert [c["charge_point_id"] for c in store.list_available_chargers(db)] == ["CP1"]
    store.set_connector_override(db, "CP1", 1, "Unavailable", reason=None, now=13)
    store.remove_charger(db, "CP1")
    assert store.connector_overrides(db) == {}


def test_a_database_from_before_overrides_upgrades_in_place(tmp_path):
    from storage.db import migrate

    conn = connect(tmp_path / "old.db")
    migrate(conn, store.COMPONENT, store.MIGRATIONS[:3])  # the schema the previous release shipped
    store.record_boot(conn, "CP1", vendor="V", model="M", serial_number="SN-1", firmware_version=None, registration_status="Accepted", now=10)
    store.record_status(conn, "CP1", 1, status="Available", error_code="NoError", timestamp=11, received=11)
    assert store.list_chargers_with_connectors(conn)[0]["connectors"][0]["override"] is None  # readable before the upgrade too
    store.init(conn)
    assert store.get_charger_by_serial(conn, "SN-1")["charge_point_id"] == "CP1"
    assert store.set_connector_override(conn, "CP1", 1, "Faulted", reason=None, now=12)["status"] == "Faulted"
    conn.close()


def test_a_payment_reference_is_set_once_unless_replaced(db):
    tid, _ = txs.start_transaction(db, "CP1", connector_id=1, id_tag="ALICE", meter_start=0, start_time=100.0, received=100.0)
    assert txs.set_payment_reference(db, tid, "pay-1") == "pay-1"
    assert txs.set_payment_reference(db, tid, "pay-1") == "pay-1"
    with pytest.raises(txs.PaymentReferenceConflictError) as conflict:
        txs.set_payment_reference(db, tid, "pay-2")
    assert conflict.value.current == "pay-1" and txs.get_transaction(db, tid)["payment_ref"] == "pay-1"
    assert txs.set_payment_reference(db, tid, "pay-2", replace=True) == "pay-2"
    assert txs.set_payment_reference(db, tid + 1, "pay-1") is None


def test_older_status_goes_to_history_but_not_current(db):
    store.add_charger(db, "CP1")
    assert store.record_status(db, "CP1", 1, status="Charging", error_code="NoError", timestamp=200, received=300)
    assert not store.record_status(db, "CP1", 1, status="Preparing", error_code="NoError", timestamp=100, received=301)
    assert store.list_connectors(db, "CP1")[0]["status"] == "Charging"
    assert [h["status"] for h in store.status_history(db, "CP1")] == ["Charging", "Preparing"]
    listing = store.list_chargers_with_connectors(db)
    assert listing[0]["connectors"][0]["status"] == "Charging"


def test_a_status_ordered_as_received_yields_to_the_next_one_received_even_stamped_to_the_second(db):
    """A future-dated status is stored at its receive time (300.7); the charger, clock fixed,
    stamps the next one 300 (whole seconds). It arrives later, so it is the current one."""
    store.add_charger(db, "CP1")
    store.record_status(db, "CP1", 1, status="Faulted", error_code="GroundFailure", timestamp=300.7, received=300.7, charger_timestamp="2027-01-01T00:00:00Z")
    assert store.record_status(db, "CP1", 1, status="Available", error_code="NoError", timestamp=300.0, received=300.9)
    assert (store.list_connectors(db, "CP1")[0]["status"], store.list_connectors(db, "CP1")[0]["charger_timestamp"]) == ("Available", None)
    assert not store.record_status(db, "CP1", 1, status="Preparing", error_code="NoError", timestamp=299.0, received=301.0)  # ordered by its own clock again


def test_transaction_ids_persist_across_reopen_and_replays_keep_their_id(tmp_path):
    path = tmp_path / "gw.db"
    conn = connect(path)
    txs.init(conn)
    first, new = txs.start_transaction(conn, "CP1", connector_id=1, id_tag="TAG", meter_start=100, start_time=1000.0, received=1000.0)
    assert new
    again, new_again = txs.start_transaction(conn, "CP1", connector_id=1, id_tag="TAG", meter_start=100, start_time=1000.0, received=1001.0)
    assert (again, new_again) == (first, False)
    conn.close()
    conn = connect(path)
    txs.init(conn)
    second, _ = txs.start_transaction(conn, "CP1", connector_id=1, id_tag="TAG", meter_start=500, start_time=2000.0, received=2000.0)
    assert second > first
    conn.close()


def test_stop_of_a_never_issued_id_stores_nothing_and_moves_no_counter(db):
    assert txs.stop_transaction(db, "CP1", 77, meter_stop=900, stop_time=50.0, received=60.0, reason="PowerLoss") is None
    assert txs.get_transaction(db, 77) is None
    new_id, _ = txs.start_transaction(db, "CP1", connector_id=1, id_tag="T", meter_start=0, start_time=70.0, received=70.0)
    assert new_id == 1


def test_stop_of_another_chargers_session_changes_nothing(db):
    tid, _ = txs.start_transaction(db, "CP1", connector_id=1, id_tag="T", meter_start=0, start_time=70.0, received=70.0)
    assert txs.stop_transaction(db, "CP2", tid, meter_stop=900, stop_time=80.0, received=80.0) is None
    assert txs.get_transaction(db, tid)["status"] == "Active"


def test_transaction_ids_skip_ids_held_by_old_unknown_start_rows(db):
    with db:  # rows an earlier version recorded for stops of never-issued ids
        db.executemany(
            "INSERT INTO transactions (transaction_id, charge_point_id, connector_id, id_tag, meter_start, start_time, status, unknown_start, received)"
            " VALUES (?, 'X', 0, '', 0, ?, 'Finished', 1, 0)", [(1, 1.0), (2, 2.0), (2**31 - 1, 3.0)])
        db.execute("INSERT INTO ocpp_counters (name, value) VALUES ('transaction_id', ?)", (2**31,))
    new_id, _ = txs.start_transaction(db, "CP1", connector_id=1, id_tag="T", meter_start=0, start_time=70.0, received=70.0)
    assert new_id == 3


def test_session_lifecycle_filters_and_payment(db):
    tid, _ = txs.start_transaction(db, "CP1", connector_id=1, id_tag="ALICE", meter_start=1000, start_time=100.0, received=100.0)
    txs.start_transaction(db, "CP2", connector_id=1, id_tag="BOB", meter_start=0, start_time=200.0, received=200.0)
    assert txs.update_meter(db, tid, energy_wh=1500, power_w=7000, timestamp=150.0)
    assert not txs.update_meter(db, tid, energy_wh=1200, power_w=1, timestamp=120.0)  # late replay
    assert txs.get_transaction(db, tid)["energy_wh"] == 500
    done = txs.stop_transaction(db, "CP1", tid, meter_stop=2000, stop_time=300.0, received=300.0, reason="Local", export={"energy_wh": 1000})
    assert done["energy_wh"] == 1000 and done["status"] == "Finished"
    assert txs.attach_payment_reference(db, tid, "pay-42")
    assert txs.get_transaction(db, tid)["payment_ref"] == "pay-42"
    assert [t["id_tag"] for t in txs.transactions_for_id_tag(db, "ALICE")] == ["ALICE"]
    assert [t["charge_point_id"] for t in txs.list_transactions(db, since=150.0)] == ["CP2"]
    assert [t["transaction_id"] for t in txs.transactions_for_charger(db, "CP1")] == [tid]
    assert txs.pending_exports(db, "CP1")[0]["record"] == {"energy_wh": 1000}


def test_meter_values_deduplicated_and_ordered_by_timestamp(db):
    tid, _ = txs.start_transaction(db, "CP1", connector_id=1, id_tag="T", meter_start=0, start_time=1.0, received=1.0)
    late = [{"timestamp": 30.0, "measurand": "Energy.Active.Import.Register", "value": "30", "unit": "Wh"}]
    early = [{"timestamp": 10.0, "measurand": "Energy.Active.Import.Register", "value": "10", "unit": "Wh"}]
    assert txs.add_meter_values(db, "CP1", 1, tid, late, received=100.0, exports=[(30.0, {"energy_wh": 30})]) == 1
    assert txs.add_meter_values(db, "CP1", 1, tid, early, received=101.0) == 1
    assert txs.add_meter_values(db, "CP1", 1, tid, late, received=102.0, exports=[(30.0, {"energy_wh": 30})]) == 0
    assert [m["value"] for m in txs.transaction_with_meter_values(db, tid)["meter_values"]] == ["10", "30"]
    assert len(txs.pending_exports(db, "CP1")) == 1  # the duplicate queued nothing


def test_export_queue_is_bounded_and_counts_drops(db, monkeypatch):
    monkeypatch.setattr(txs, "EXPORT_QUEUE_LIMIT", 3)
    for i in range(5):
        txs.queue_export(db, "CP1", float(i), {"n": i})
    pending = txs.pending_exports(db, "CP1")
    assert [p["record"]["n"] for p in pending] == [2, 3, 4]
    assert txs.exports_dropped(db, "CP1") == 2
    assert txs.ack_exports(db, "CP1", pending[1]["id"]) == 2
    assert [p["record"]["n"] for p in txs.pending_exports(db, "CP1")] == [4]


def test_reservations_and_authorization_list(db):
    rid = txs.create_reservation(db, "CP1", connector_id=1, id_tag="T", expiry=500.0, now=1.0)
    txs.set_reservation_status(db, rid, "Accepted")
    txs.start_transaction(db, "CP1", connector_id=1, id_tag="T", meter_start=0, start_time=2.0, received=2.0, reservation_id=rid)
    assert txs.get_reservation(db, rid)["status"] == "Used"
    assert txs.create_reservation(db, "CP1", connector_id=1, id_tag="U", expiry=500.0, now=3.0) == rid + 1
    local_auth_list.set_authorization(db, "TAG1", "Blocked")
    assert local_auth_list.get_authorization(db, "TAG1")["status"] == "Blocked"
    local_auth_list.remove_authorization(db, "TAG1")
    assert local_auth_list.get_authorization(db, "TAG1") is None
