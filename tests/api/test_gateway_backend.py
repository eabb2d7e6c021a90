"""The gateway backend's logic with a scripted actor side and real (empty or filled) stores."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from actors.api.backend import BadInputError, ChargerError, ConflictError, NoAnswerError, NotFoundError, UnavailableError
from actors.api.gateway import GatewayBackend, GatewaySettings
from actors.api.tree_view import device_records
from actors.ocpp.messages import ChargerCommand, CommandOutcome, RemoteStartTransaction, ReserveNow
from storage import chargers as charger_store
from storage.db import connect
from supervisor.messages import ChildStopped, LookupResult, StartChild, StopChild


class ScriptedPort:
    """The actor side: a fixed tree, addresses by path, and a reply function for asks."""

    def __init__(self, tree, addresses=None, reply=None):
        self.tree, self.addresses, self.reply, self.asked = tree, addresses or {}, reply, []

    async def get_tree(self, timeout):
        if self.tree is None:
            raise TimeoutError
        return self.tree

    async def lookup(self, path, timeout):
        return self.addresses.get(path)

    async def ask(self, address, msg, match, timeout):
        self.asked.append((address, msg))
        answer = self.reply(msg)
        if answer is None:
            raise TimeoutError
        assert match(answer)
        return answer


def record(name, state="running", kind="worker", children=None, **info):
    entry = {"name": name, "kind": kind, "pid": 100, "state": state, "restarts": 0, "last_error": None, "since": 1.0, "info": info}
    if children is not None:
        entry["children"] = children
    return entry


TREE = [
    record("harvest"),
    record("devices", kind="supervisor", children=[
        record("inv1", "online", values={"ac_power_w": 10.0}, serial="S1", model="SUN2000-10KTL-M1", last_poll=1795248000.0, errors=0, gaps=2, connection="tcp:127.0.0.1:502"),
        record("m1+m2", "degraded", devices={"m1": {"state": "online", "values": {"power_w": 5}}, "m2": {"state": "offline", "last_error": "timeout"}}),
        record("inv3", "restarting"),
    ]),
    record("ble", "unavailable", reason="no adapter"),
]


@pytest.fixture
def executor():
    with ThreadPoolExecutor(1) as pool:
        yield pool


def backend(tmp_path, executor, port, **settings):
    values = {"data_dir": str(tmp_path), "db_path": str(tmp_path / "egw.db"), "version": "1.2.3",
              "devices": ({"id": "inv1", "profile": "sunspec", "host": "127.0.0.1", "port": 502}, {"id": "cold", "profile": "sma", "host": "10.0.0.9"}),
              **settings}
    return GatewayBackend(GatewaySettings(**values), port, executor, started_at=0.0)


def test_device_records_split_actors_that_poll_several_devices():
    from actors.api.tree_view import clean_tree

    found = device_records(clean_tree(TREE))
    assert set(found) == {"inv1", "m1", "m2", "inv3"}
    assert found["m2"]["state"] == "offline" and found["m2"]["actor_path"] == "devices/m1+m2"


async def test_devices_merge_configuration_and_published_state(tmp_path, executor):
    devices = {d["id"]: d for d in await backend(tmp_path, executor, ScriptedPort(TREE)).devices()}
    assert sorted(devices) == ["cold", "inv1", "inv3", "m1", "m2"]
    assert devices["inv1"]["online"] is True and devices["inv1"]["last_poll"] == "2026-11-21T08:00:00.000Z"
    assert devices["inv1"]["connection"] == {"host": "127.0.0.1", "port": 502}
    assert devices["inv1"]["serial"] == "S1" and devices["inv1"]["model"] == "SUN2000-10KTL-M1"  # the model it reported
    assert devices["cold"]["model"] is None
    assert devices["m2"]["online"] is False and devices["m2"]["last_error"] == "timeout"
    assert devices["cold"]["state"] == "not running" and devices["cold"]["values"] == {}


async def test_a_restarting_device_is_503_and_an_unknown_one_404(tmp_path, executor):
    gateway = backend(tmp_path, executor, ScriptedPort(TREE))
    with pytest.raises(UnavailableError):
        await gateway.device("inv3")
    with pytest.raises(NotFoundError):
        await gateway.device("nope")


async def test_health_names_what_is_wrong(tmp_path, executor):
    health = await backend(tmp_path, executor, ScriptedPort(TREE)).health()
    assert health["status"] == "degraded"
    assert health["reasons"] == ["devices/m1+m2: degraded", "devices/inv3: restarting"]  # a missing BLE adapter is no fault
    assert health["hardware"]["ble"]["state"] == "unavailable" and health["hardware"]["ble"]["reason"] == "no adapter"
    silent = await backend(tmp_path, executor, ScriptedPort(None)).health()
    assert silent["reasons"] == ["root supervisor not answering"]
    with pytest.raises(UnavailableError):
        await backend(tmp_path, executor, ScriptedPort(None)).tree()


async def test_empty_stores_read_as_empty_not_as_errors(tmp_path, executor):
    gateway = backend(tmp_path, executor, ScriptedPort(TREE))
    assert await gateway.chargers() == []
    assert await gateway.transactions(charger=None, id_tag=None, since=None, limit=10) == []
    outbox = await gateway.outbox_status()
    assert outbox["available"] is False and outbox["pending_items"] is None
    crypto = await gateway.crypto()
    assert crypto["available"] is False and crypto["serial"] is None


async def test_config_blanks_declared_secrets(tmp_path, executor):
    gateway = backend(tmp_path, executor, ScriptedPort(TREE), config={"ocpp_tls_key": "PEM", "api_port": 1}, secret_keys=("ocpp_tls_key",))
    assert await gateway.config() == {"ocpp_tls_key": "***", "api_port": 1}


def _known_charger(tmp_path):
    conn = connect(tmp_path / "egw.db")
    charger_store.init(conn)
    charger_store.add_charger(conn, "CP-1", registration_status="Accepted", now=1.0)
    conn.close()


async def test_charger_commands_map_every_outcome(tmp_path, executor):
    _known_charger(tmp_path)
    outcomes = {}

    def reply(msg):
        assert isinstance(msg, ChargerCommand)
        kind, payload, code = outcomes["next"]
        return CommandOutcome("CP-1", msg.request_id, msg.request.action, kind, payload, error_code=code)

    port = ScriptedPort(TREE, {"chargers/CP-1": "addr"}, reply)
    gateway = backend(tmp_path, executor, port)
    outcomes["next"] = ("result", {"status": "Accepted"}, "")
    assert await gateway.charger_command("CP-1", "RemoteStartTransaction", {"idTag": "T1", "connectorId": 1}) == {"status": "Accepted"}
    assert port.asked[-1][1].request == RemoteStartTransaction(id_tag="T1", connector_id=1)
    await gateway.charger_command("CP-1", "ReserveNow", {"connectorId": 1, "idTag": "T1", "expiryDate": "2026-11-21T12:00:00Z"})
    assert port.asked[-1][1].request == ReserveNow(connector_id=1, id_tag="T1", expiry=1795262400.0)
    for kind, error in (("timeout", NoAnswerError), ("offline", UnavailableError), ("queue_full", UnavailableError), ("cancelled", UnavailableError),
                        ("error", ChargerError), ("not_accepted", ConflictError), ("invalid_request", BadInputError)):
        outcomes["next"] = (kind, {}, "NotSupported" if kind == "error" else "")
        with pytest.raises(error):
            await gateway.charger_command("CP-1", "Reset", {"type": "Soft"})


async def test_an_absent_charger_is_503_at_once_and_an_unknown_one_404(tmp_path, executor):
    _known_charger(tmp_path)
    gateway = backend(tmp_path, executor, ScriptedPort(TREE))
    with pytest.raises(UnavailableError) as absent:
        await gateway.charger_command("CP-1", "Reset", {"type": "Soft"})
    assert absent.value.retry_after == 30
    with pytest.raises(NotFoundError):
        await gateway.charger_command("CP-9", "Reset", {"type": "Soft"})


async def test_a_silent_charger_actor_is_an_unknown_outcome_not_a_hang(tmp_path, executor):
    """Not 503 (not sent): the actor that does not answer may hold the command and send it."""
    _known_charger(tmp_path)
    gateway = backend(tmp_path, executor, ScriptedPort(TREE, {"chargers/CP-1": "addr"}, lambda msg: None))
    with pytest.raises(NoAnswerError) as unknown:
        await gateway.charger_command("CP-1", "Reset", {"type": "Soft"})
    assert unknown.value.code == "outcome_unknown"


async def test_concurrent_requests_share_one_tree_ask(tmp_path, executor):
    import asyncio

    release = asyncio.Event()

    class GatedPort(ScriptedPort):
        calls = 0

        async def get_tree(self, timeout):
            GatedPort.calls += 1
            await release.wait()
            return self.tree

    gateway = backend(tmp_path, executor, GatedPort(TREE), tree_max_age=0.0)
    tasks = [asyncio.ensure_future(gateway.devices()) for _ in range(16)]
    await asyncio.sleep(0)
    release.set()
    results = await asyncio.gather(*tasks)
    assert GatedPort.calls == 1 and all(r == results[0] for r in results)
    await gateway.devices()  # max age 0: the next request asks again
    assert GatedPort.calls == 2


def _device_supervisor(msg):
    """The devices supervisor's answers: a stop is confirmed, a start is looked up."""
    if isinstance(msg, StopChild):
        return ChildStopped(msg.name)
    if isinstance(msg, StartChild):
        return LookupResult(msg.spec.name, "addr")
    return None


async def test_a_second_delete_of_a_device_is_404(tmp_path, executor):
    # The tree is cached (and supervisors batch their reports): it still shows inv1 after the stop.
    port = ScriptedPort(TREE, {"devices": "sup"}, _device_supervisor)
    gateway = backend(tmp_path, executor, port, tree_max_age=60.0)
    removed = await gateway.remove_device("inv1")
    assert removed["id"] == "inv1" and removed["state"] == "stopped"
    with pytest.raises(NotFoundError):
        await gateway.remove_device("inv1")
    with pytest.raises(NotFoundError):
        await gateway.device("inv1")
    assert "inv1" not in {d["id"] for d in await gateway.devices()}
    assert [type(m) for _, m in port.asked] == [StopChild]  # the second DELETE asked nothing
    # added again, it is back (and not a conflict with the stale tree)
    added = await gateway.add_device({"id": "inv1", "profile": "sunspec", "host": "127.0.0.1", "port": 502})
    assert added["id"] == "inv1"
    assert "inv1" in {d["id"] for d in await gateway.devices()}


async def test_delete_of_an_unknown_device_is_404(tmp_path, executor):
    gateway = backend(tmp_path, executor, ScriptedPort(TREE, {"devices": "sup"}, _device_supervisor))
    with pytest.raises(NotFoundError):
        await gateway.remove_device("nope")
