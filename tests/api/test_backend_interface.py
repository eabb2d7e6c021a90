"""What a charging backend's users do, over REST against the real gateway backend and real SQLite stores.

The actor side is scripted (`ScriptedPort`): a charger actor that answers ChangeAvailability
Accepted, or none (the charger is offline). Everything else is what the gateway serves:
available chargers and serial lookup, connector overrides kept across an API restart,
payment references, reservations, and the token on every read of personal data.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest
from aiohttp.test_utils import TestClient, TestServer

from actors.api.app import build_app
from actors.api.openapi import build_document
from actors.ocpp.messages import ChangeAvailability, ChargerCommand, CommandOutcome
from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store
from storage.db import connect
from tests.api.conftest import TOKEN, check_response
from tests.api.test_gateway_backend import TREE, ScriptedPort, backend

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOC = build_document("test")
NOW = 1795248000.0  # 2026-11-21T08:00:00Z


def _fill(path) -> dict[str, int]:
    """Three chargers and CP-1's sessions and reservations, as the OCPP family stores them."""
    conn = connect(path)
    charger_store.init(conn)
    tx_store.init(conn)
    for cp, serial, status in (("CP-1", "SN-123", "Available"), ("CP-2", "SN-456", "Charging"), ("CP-3", "SN-789", "Available")):
        charger_store.record_boot(conn, cp, vendor="ACME", model="W", serial_number=serial, firmware_version="1", registration_status="Accepted", now=NOW)
        charger_store.record_status(conn, cp, 1, status=status, error_code="NoError", timestamp=NOW, received=NOW)
    charger_store.set_connected(conn, "CP-3", False, NOW)  # its last report said Available, but it is gone
    ids = {
        "active": tx_store.create_reservation(conn, "CP-1", connector_id=1, id_tag="ALICE", expiry=NOW + 10**9, now=NOW),
        "expired": tx_store.create_reservation(conn, "CP-1", connector_id=1, id_tag="BOB", expiry=NOW - 60, now=NOW - 120),
        "cancelled": tx_store.create_reservation(conn, "CP-1", connector_id=1, id_tag="CAROL", expiry=NOW + 10**9, now=NOW),
        "used": tx_store.create_reservation(conn, "CP-2", connector_id=1, id_tag="DAVE", expiry=NOW + 10**9, now=NOW),
    }
    tx_store.set_reservation_status(conn, ids["active"], "Accepted")
    tx_store.set_reservation_status(conn, ids["cancelled"], "Cancelled")
    ids["session"], _ = tx_store.start_transaction(conn, "CP-2", connector_id=1, id_tag="DAVE", meter_start=0, start_time=NOW, received=NOW,
                                                    reservation_id=ids["used"])
    conn.close()
    return ids


def _charger_actor(answers: list) -> ScriptedPort:
    """CP-1's actor: every command it is asked to send answered Accepted, and recorded in `answers`."""

    def reply(msg):
        assert isinstance(msg, ChargerCommand)
        answers.append(msg.request)
        return CommandOutcome("CP-1", msg.request_id, msg.request.action, "result", {"status": "Accepted"})

    return ScriptedPort(TREE, {"chargers/CP-1": "cp1-address"}, reply)


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


class Api:
    """The REST API over a GatewayBackend on `tmp_path`'s database; `restart()` builds a fresh one (nothing kept in memory)."""

    def __init__(self, tmp_path, executor, port) -> None:
        self.tmp_path, self.executor, self.port, self.client = tmp_path, executor, port, None

    async def start(self) -> TestClient:
        app = build_app(backend(self.tmp_path, self.executor, self.port), token=TOKEN, version="test", command_timeout=5.0)
        self.client = TestClient(TestServer(app, host="127.0.0.1", port=0))
        await self.client.start_server()
        return self.client

    async def restart(self) -> TestClient:
        await self.client.close()
        return await self.start()

    async def get(self, path: str, template: str, status: int = 200) -> dict:
        response = await self.client.get(path, headers=AUTH)
        body = await response.json()
        assert response.status == status, body
        check_response(DOC, "GET", template, status, body)
        return body

    async def send(self, method: str, path: str, template: str, body: dict | None = None, status: int = 200) -> dict:
        response = await self.client.request(method, path, json=body, headers=AUTH)
        answer = await response.json()
        assert response.status == status, answer
        check_response(DOC, method, template, status, answer)
        return answer


@pytest.fixture
async def api(tmp_path, executor):
    ids = _fill(tmp_path / "egw.db")
    answers: list = []
    served = Api(tmp_path, executor, _charger_actor(answers))
    served.ids, served.answers = ids, answers
    await served.start()
    yield served
    await served.client.close()


def _ids(body: dict) -> list[str]:
    return [c["id"] for c in body["chargers"]]


async def test_available_chargers_are_connected_accepted_with_an_available_connector_and_a_serial_finds_its_charger(api):
    assert _ids(await api.get("/api/chargers", "/api/chargers")) == ["CP-1", "CP-2", "CP-3"]
    assert _ids(await api.get("/api/chargers?status=Available", "/api/chargers")) == ["CP-1"]  # CP-3 is offline
    assert _ids(await api.get("/api/chargers?status=Charging", "/api/chargers")) == ["CP-2"]
    found = await api.get("/api/chargers?serial=SN-123", "/api/chargers")
    assert _ids(found) == ["CP-1"] and found["chargers"][0]["serial"] == "SN-123"
    assert _ids(await api.get("/api/chargers?serial=SN-000", "/api/chargers")) == []
    assert _ids(await api.get("/api/chargers?serial=SN-456&status=Available", "/api/chargers")) == []
    bad = await api.get("/api/chargers?status=Broken", "/api/chargers", status=400)
    assert bad["field"] == "query.status"


async def test_an_override_is_shown_beside_the_reported_status_tells_the_charger_survives_a_restart_and_lifts(api):
    path, template = "/api/chargers/CP-1/connectors/1/override", "/api/chargers/{id}/connectors/{connectorId}/override"
    result = await api.send("PUT", path, template, {"status": "Faulted", "reason": "cable cut"})
    assert (result["status"], result["reported_status"], result["override"]["reason"]) == ("Faulted", "Available", "cable cut")
    assert result["change_availability"] == {"sent": True, "type": "Inoperative", "status": "Accepted", "error": None}
    assert api.answers == [ChangeAvailability(connector_id=1, type="Inoperative")]
    assert _ids(await api.get("/api/chargers?status=Available", "/api/chargers")) == []
    assert _ids(await api.get("/api/chargers?status=Faulted", "/api/chargers")) == ["CP-1"]

    await api.restart()
    connector = (await api.get("/api/chargers/CP-1", "/api/chargers/{id}"))["connectors"][0]
    assert (connector["status"], connector["reported_status"], connector["override"]["status"]) == ("Faulted", "Available", "Faulted")

    lifted = await api.send("DELETE", path, template)
    assert (lifted["lifted"], lifted["status"], lifted["override"]) == (True, "Available", None)
    assert lifted["change_availability"]["type"] == "Operative" and api.answers[-1] == ChangeAvailability(connector_id=1, type="Operative")
    assert _ids(await api.get("/api/chargers?status=Available", "/api/chargers")) == ["CP-1"]
    again = await api.send("DELETE", path, template)
    assert (again["lifted"], again["change_availability"]["sent"]) == (False, False) and len(api.answers) == 2


async def test_an_override_of_an_offline_charger_is_stored_and_says_the_charger_was_not_told(api):
    result = await api.send("PUT", "/api/chargers/CP-3/connectors/1/override", "/api/chargers/{id}/connectors/{connectorId}/override",
                            {"status": "Unavailable", "reason": "maintenance"})
    assert result["status"] == "Unavailable" and result["change_availability"] == {"sent": False, "type": "Inoperative", "status": None, "error": "charger_offline"}
    quiet = await api.send("PUT", "/api/chargers/CP-1/connectors/1/override", "/api/chargers/{id}/connectors/{connectorId}/override",
                           {"status": "Unavailable", "change_availability": False})
    assert quiet["status"] == "Unavailable" and quiet["change_availability"]["sent"] is False and api.answers == []
    missing = await api.send("PUT", "/api/chargers/CP-1/connectors/2/override", "/api/chargers/{id}/connectors/{connectorId}/override",
                             {"status": "Faulted"}, status=404)
    assert missing["field"] == "path.connectorId"
    unknown = await api.send("DELETE", "/api/chargers/CP-9/connectors/1/override", "/api/chargers/{id}/connectors/{connectorId}/override", status=404)
    assert unknown["field"] == "path.id"


async def test_a_payment_reference_is_stored_idempotent_and_replaced_only_when_asked(api):
    tx = api.ids["session"]
    path, template = f"/api/transactions/{tx}/payment", "/api/transactions/{id}/payment"
    assert (await api.send("PUT", path, template, {"reference": "pay-1"}))["payment_ref"] == "pay-1"
    assert (await api.send("PUT", path, template, {"reference": "pay-1"}))["payment_ref"] == "pay-1"  # a retry
    conflict = await api.send("PUT", path, template, {"reference": "pay-2"}, status=409)
    assert (conflict["error"], conflict["payment_ref"]) == ("payment_reference_conflict", "pay-1")
    assert (await api.get(f"/api/transactions/{tx}", "/api/transactions/{id}"))["payment_ref"] == "pay-1"
    assert (await api.send("PUT", path, template, {"reference": "pay-2", "replace": True}))["payment_ref"] == "pay-2"
    assert (await api.get(f"/api/transactions/{tx}", "/api/transactions/{id}"))["payment_ref"] == "pay-2"
    too_long = await api.send("PUT", path, template, {"reference": "x" * 129}, status=400)
    assert too_long["field"] == "reference"
    assert (await api.send("PUT", "/api/transactions/999/payment", template, {"reference": "pay-1"}, status=404))["field"] == "path.id"


async def test_reservations_read_by_charger_and_state(api):
    ids = api.ids
    everything = await api.get("/api/reservations", "/api/reservations")
    assert [r["id"] for r in everything["reservations"]] == sorted((ids[k] for k in ("active", "expired", "cancelled", "used")), reverse=True)
    for state in ("active", "expired", "cancelled", "used"):
        found = await api.get(f"/api/reservations?status={state}", "/api/reservations")
        assert [r["id"] for r in found["reservations"]] == [ids[state]], state
    used = await api.get(f"/api/reservations/{ids['used']}", "/api/reservations/{id}")
    assert (used["status"], used["ocpp_status"], used["transaction_id"], used["id_tag"]) == ("used", "Used", ids["session"], "DAVE")
    expired = await api.get(f"/api/reservations/{ids['expired']}", "/api/reservations/{id}")
    assert (expired["status"], expired["ocpp_status"]) == ("expired", "Requested")  # past its expiry before the charger actor marked it
    assert [r["id"] for r in (await api.get("/api/reservations?charger=CP-2", "/api/reservations"))["reservations"]] == [ids["used"]]
    assert (await api.get("/api/reservations/999", "/api/reservations/{id}", status=404))["field"] == "path.id"


@pytest.mark.parametrize("path", ["/api/reservations", "/api/reservations/1", "/api/reservations?charger=CP-1", "/api/transactions", "/api/transactions/1"])
async def test_personal_data_needs_the_token(api, path):
    response = await api.client.get(path)
    assert response.status == 401
    assert "ALICE" not in await response.text() and "DAVE" not in await response.text()
