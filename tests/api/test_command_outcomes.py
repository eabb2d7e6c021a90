"""REST charger commands: one mapping of OCPP outcomes to HTTP, 202 + polling, Idempotency-Key.

The app is served over a real socket (aiohttp's test server) on a scripted backend whose
`charger_command` answers what each test needs, or waits until the test releases it; the
gateway backend's withdrawal of a command it gave up on is driven by a scripted actor port.
Every answer is also checked against the served OpenAPI document.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from aiohttp.test_utils import TestClient, TestServer

from actors.api.app import build_app
from actors.api.backend import ChargerError, NoAnswerError, UnavailableError
from actors.api.commands import CommandLedger
from actors.api.gateway import GatewayBackend, GatewaySettings
from actors.api.openapi import build_document
from actors.ocpp.messages import CancelCommand, ChargerCommand, CommandOutcome
from tests.api.conftest import TOKEN, MemoryBackend, check_response
from tests.api.test_gateway_backend import TREE, ScriptedPort, _known_charger

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOC = build_document("test")


class ScriptedCharger(MemoryBackend):
    """`charger_command` answers `self.answers[command]` (a payload, or an ApiError to raise);
    with `self.gate` set it first waits until the test opens the gate."""

    def __init__(self) -> None:
        super().__init__()
        self.answers: dict[str, Any] = {}
        self.calls: list[tuple[str, str, dict]] = []
        self.gate: asyncio.Event | None = None

    async def charger_command(self, charger_id: str, command: str, params: dict[str, Any]) -> dict[str, Any]:
        self.calls.append((charger_id, command, params))
        if self.gate is not None:
            await self.gate.wait()
        answer = self.answers.get(command, {"status": "Accepted"})
        if isinstance(answer, Exception):
            raise answer
        return dict(answer)


@pytest.fixture
async def scripted():
    backend = ScriptedCharger()
    app = build_app(backend, token=TOKEN, version="test", backend_timeout=0.5, command_timeout=0.5)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        yield client, backend


async def post(client: TestClient, path: str, body: Any = None, template: str | None = None, **headers: str) -> tuple[int, dict, Any]:
    response = await client.post(path, json=body, headers={**AUTH, **headers})
    data = await response.json()
    check_response(DOC, "POST", template or "/api/chargers/{id}/" + path.rsplit("/", 1)[1], response.status, data)
    return response.status, dict(response.headers), data


@pytest.mark.parametrize(("answer", "status", "charger_status"), [
    ({"status": "Accepted"}, 200, "Accepted"),
    ({"status": "Scheduled"}, 200, "Scheduled"),  # ChangeAvailability during a session: a yes, applied afterwards
    ({"status": "Rejected"}, 409, "Rejected"),
    ({"status": "NotSupported"}, 409, "NotSupported"),
])
async def test_the_chargers_status_decides_between_200_and_409(scripted, answer, status, charger_status):
    client, backend = scripted
    backend.answers["ChangeAvailability"] = answer
    code, _, body = await post(client, "/api/chargers/CP-1/availability", {"connectorId": 1, "type": "Inoperative"})
    assert (code, body["status"], body["result"], body["charger"], body["command"]) == (status, charger_status, answer, "CP-1", "ChangeAvailability")
    if status == 409:
        assert body["error"] == "rejected"


async def test_unlock_and_local_list_answers_map_by_their_own_statuses(scripted):
    client, backend = scripted
    backend.answers["UnlockConnector"] = {"status": "Unlocked"}
    assert (await post(client, "/api/chargers/CP-1/unlock", {"connectorId": 1}))[0] == 200
    backend.answers["UnlockConnector"] = {"status": "UnlockFailed"}
    code, _, body = await post(client, "/api/chargers/CP-1/unlock", {"connectorId": 1})
    assert (code, body["status"]) == (409, "UnlockFailed")
    backend.answers["GetLocalListVersion"] = {"listVersion": -1}  # OCPP 1.6: no local list support
    response = await client.get("/api/chargers/CP-1/local-list-version", headers=AUTH)
    body = await response.json()
    assert (response.status, body["status"], body["result"]) == (409, "NotSupported", {"listVersion": -1})
    check_response(DOC, "GET", "/api/chargers/{id}/local-list-version", 409, body)


@pytest.mark.parametrize(("error", "status", "code"), [
    (ChargerError("CALLERROR", code="charger_error", details={"ocpp_error_code": "NotSupported", "description": "no reset here"}), 502, "charger_error"),
    (NoAnswerError("sent, no answer"), 504, "no_answer"),
    (UnavailableError("charger CP-1 is not connected", retry_after=30, code="charger_offline"), 503, "charger_offline"),
])
async def test_errors_keep_the_command_fields_and_their_own_code(scripted, error, status, code):
    client, backend = scripted
    backend.answers["Reset"] = error
    got, headers, body = await post(client, "/api/chargers/CP-1/reset", {"type": "Soft"})
    assert (got, body["error"], body["charger"], body["command"]) == (status, code, "CP-1", "Reset")
    if status == 502:
        assert (body["ocpp_error_code"], body["description"]) == ("NotSupported", "no reset here")
    if status == 503:
        assert headers["Retry-After"] == "30"


async def test_a_command_not_answered_in_time_is_202_then_its_outcome_is_polled(scripted):
    client, backend = scripted
    backend.gate = asyncio.Event()
    code, headers, body = await post(client, "/api/chargers/CP-1/remote-start", {"idTag": "TAG1", "connectorId": 1})
    assert (code, body["status"], body["result"]) == (202, "Pending", None)
    location = headers["Location"]
    assert location == f"/api/chargers/CP-1/commands/{body['command_id']}"
    poll = await client.get(location, headers=AUTH)
    assert (await poll.json())["state"] == "pending"
    backend.gate.set()
    final = None
    for _ in range(200):  # the command's task finishes on the server's loop; poll as a client would
        final = await (await client.get(location, headers=AUTH)).json()
        if final["state"] == "done":
            break
        await asyncio.sleep(0.01)
    check_response(DOC, "GET", "/api/chargers/{id}/commands/{command_id}", 200, final)
    assert (final["http_status"], final["status"], final["command_id"]) == (200, "Accepted", body["command_id"])
    assert "live_token" in final  # the accepted start's token, as the direct answer would have carried it
    assert len(backend.calls) == 1
    other = await client.get(location.replace("/CP-1/", "/CP-2/"), headers=AUTH)
    assert other.status == 404  # command ids are per charger


async def test_the_same_idempotency_key_answers_the_first_outcome_without_sending_again(scripted):
    client, backend = scripted
    first = await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"}, **{"Idempotency-Key": "k-1"})
    again = await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"}, **{"Idempotency-Key": "k-1"})
    assert first[0] == again[0] == 200 and first[2] == again[2]
    assert len(backend.calls) == 1
    code, _, body = await post(client, "/api/chargers/CP-1/reset", {"type": "Soft"}, **{"Idempotency-Key": "k-1"})
    assert (code, body["error"], body["field"]) == (422, "idempotency_key_reused", "header.Idempotency-Key")
    assert len(backend.calls) == 1
    await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"})  # no key: a new command each time
    await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"})
    assert len(backend.calls) == 3


async def test_a_key_replayed_while_pending_names_the_same_pending_command(scripted):
    client, backend = scripted
    backend.gate = asyncio.Event()
    first = await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"}, **{"Idempotency-Key": "k-2"})
    again = await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"}, **{"Idempotency-Key": "k-2"})
    assert first[0] == again[0] == 202 and first[2]["command_id"] == again[2]["command_id"]
    assert len(backend.calls) == 1
    backend.gate.set()


async def test_a_key_whose_command_was_never_sent_may_try_again(scripted):
    client, backend = scripted
    backend.answers["Reset"] = UnavailableError("queue full; not sent", retry_after=5, code="queue_full")
    assert (await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"}, **{"Idempotency-Key": "k-3"}))[0] == 503
    backend.answers["Reset"] = {"status": "Accepted"}
    assert (await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"}, **{"Idempotency-Key": "k-3"}))[0] == 200
    assert len(backend.calls) == 2
    assert (await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"}, **{"Idempotency-Key": "k-3"}))[0] == 200
    assert len(backend.calls) == 2  # now bound to the command that was sent


async def test_keys_are_per_charger_and_malformed_keys_are_refused(scripted):
    client, backend = scripted
    backend.chargers_by_id["CP-2"] = {**backend.chargers_by_id["CP-1"], "id": "CP-2"}
    await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"}, **{"Idempotency-Key": "same"})
    await post(client, "/api/chargers/CP-2/reset", {"type": "Hard"}, **{"Idempotency-Key": "same"})
    assert [c[0] for c in backend.calls] == ["CP-1", "CP-2"]
    code, _, body = await post(client, "/api/chargers/CP-1/reset", {"type": "Hard"}, **{"Idempotency-Key": "x" * 256})
    assert (code, body["field"]) == (400, "header.Idempotency-Key")
    assert len(backend.calls) == 2


async def test_the_ledger_is_bounded_per_charger_in_all_and_in_time():
    now = [0.0]
    ledger = CommandLedger(ttl=100.0, per_charger=2, total=3, clock=lambda: now[0])

    async def accepted() -> dict:
        return {"status": "Accepted"}

    records = [ledger.submit("A", "Reset", {"n": n}, f"k{n}", accepted) for n in range(3)]
    await asyncio.gather(*(r.task for r in records))
    assert ledger.get("A", records[0].command_id) is None and ledger.get("A", records[2].command_id) is records[2]
    again = ledger.submit("A", "Reset", {"n": 0}, "k0", accepted)  # its key was forgotten with it: a new command
    assert again is not records[0]
    others = [ledger.submit(c, "Reset", {}, None, accepted) for c in ("B", "C")]
    await asyncio.gather(again.task, *(r.task for r in others))
    assert len(ledger) == 3
    now[0] = 1000.0
    assert ledger.get("C", others[1].command_id) is None and len(ledger) == 0


# ------------------------------------------------- the gateway backend gives up
def _gateway(tmp_path, executor, reply) -> tuple[GatewayBackend, ScriptedPort]:
    _known_charger(tmp_path)
    port = ScriptedPort(TREE, {"chargers/CP-1": "addr"}, reply)
    return GatewayBackend(GatewaySettings(data_dir=str(tmp_path), db_path=str(tmp_path / "egw.db"), command_timeout=0.1), port, executor), port


async def test_a_command_still_queued_when_the_backend_gives_up_is_withdrawn_and_reported_not_sent(tmp_path, executor):
    def reply(msg):
        if isinstance(msg, ChargerCommand):
            return None  # still waiting behind others in the charger's queue
        assert isinstance(msg, CancelCommand)
        return CommandOutcome("CP-1", msg.request_id, "", "cancelled")

    gateway, port = _gateway(tmp_path, executor, reply)
    with pytest.raises(UnavailableError) as not_sent:
        await gateway.charger_command("CP-1", "Reset", {"type": "Soft"})
    assert not_sent.value.code == "not_sent"
    assert [type(m) for _, m in port.asked] == [ChargerCommand, CancelCommand]
    assert port.asked[1][1].request_id == port.asked[0][1].request_id


async def test_a_command_already_with_the_charger_when_the_backend_gives_up_reports_the_chargers_answer(tmp_path, executor):
    def reply(msg):
        if isinstance(msg, ChargerCommand):
            return None
        return CommandOutcome("CP-1", msg.request_id, "Reset", "result", {"status": "Accepted"})  # not withdrawn: it was sent

    gateway, _ = _gateway(tmp_path, executor, reply)
    assert await gateway.charger_command("CP-1", "Reset", {"type": "Soft"}) == {"status": "Accepted"}


@pytest.fixture
def executor():
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(1) as pool:
        yield pool
