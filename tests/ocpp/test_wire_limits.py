"""The websocket front-end's limits, over real websockets: a 174 KB StopTransaction goes all
the way through the listener and charger actors into the store; a burst of 300 frames
sent before the charger actor is up is answered frame by frame; half-open connections are
closed after the handshake timeout; a flood of malformed frames cannot flood the log."""

from __future__ import annotations

import asyncio
import json
import logging
from datetime import datetime, timedelta, timezone

import pytest

from actors.harvest.specs import harvest_child_specs
from actors.ocpp import frames
from actors.ocpp.specs import ocpp_child_specs
from simulators.charger.connection import connect
from storage import ocpp_transactions as tx_store
from storage.db import connect as db_connect
from supervisor import logs
from supervisor.config import ConfigError, load_config
from supervisor.embedded import start_root
from supervisor.spec import Backoff, Heartbeat, SupervisorSpec
from tests.conftest import free_port, wait_until
from tests.ocpp.test_actors import running

BOOT = {"chargePointVendor": "V", "chargePointModel": "M"}


def start_gateway(asys, tmp_path, **settings) -> tuple[object, int]:
    """The harvest and OCPP families as real actors, on a free OCPP port; `settings` as in gateway.toml."""
    port = free_port()
    values = {"data_dir": str(tmp_path), "uploads": [], "ocpp_host": "127.0.0.1", "ocpp_port": port,
              "ocpp_unknown_chargers": "accept", "live_metrics_db_interval": 0.0, **settings}
    spec = SupervisorSpec(children=tuple(harvest_child_specs(values) + ocpp_child_specs(values)),
                          backoff=Backoff(min_delay=0.01, max_delay=0.2), heartbeat=Heartbeat(interval=0.5, timeout=10.0))
    root = start_root(asys, spec)
    wait_until(lambda: running(asys, root, "ocpp") and running(asys, root, "harvest"), what="listener and harvest running")
    return root, port


def stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def twelve_hours_of_transaction_data(start: datetime, meter_start: int) -> list[dict]:
    """One meterValue a minute for 12 h, energy and power each, as a charger buffers them."""
    data = []
    for minute in range(12 * 60):
        data.append({"timestamp": stamp(start + timedelta(minutes=minute)), "sampledValue": [
            {"value": str(meter_start + minute * 100), "context": "Sample.Periodic", "measurand": "Energy.Active.Import.Register", "unit": "Wh"},
            {"value": "6000.0", "context": "Sample.Periodic", "measurand": "Power.Active.Import", "unit": "W"},
        ]})
    return data


async def replies_for(conn, unique_ids: set[str]) -> dict[str, list]:
    """Read until every id in `unique_ids` has its reply (CALLRESULT or CALLERROR)."""
    got: dict[str, list] = {}
    while not unique_ids <= got.keys():
        frame = json.loads(await asyncio.wait_for(conn.recv(), 30))
        if frame[0] in (frames.CALLRESULT, frames.CALLERROR):
            got[frame[1]] = frame
    return got


# ------------------------------------------------------------ defect 7: frame size
def test_a_174_kb_stop_transaction_is_answered_and_stops_the_session(multiproc_system, tmp_path):
    root, port = start_gateway(multiproc_system, tmp_path)
    start = datetime.now(timezone.utc).replace(microsecond=0) - timedelta(hours=12)

    async def session() -> tuple[int, int]:
        conn = await connect(f"ws://127.0.0.1:{port}/ocpp/LONG1")
        await conn.send(frames.encode_call("b", "BootNotification", BOOT))
        await replies_for(conn, {"b"})
        await conn.send(frames.encode_call("s", "StartTransaction", {"connectorId": 1, "idTag": "ALICE", "meterStart": 1000, "timestamp": stamp(start)}))
        transaction_id = (await replies_for(conn, {"s"}))["s"][2]["transactionId"]
        stop = {"transactionId": transaction_id, "meterStop": 1000 + 720 * 100, "timestamp": stamp(start + timedelta(hours=12)),
                "reason": "EVDisconnected", "transactionData": twelve_hours_of_transaction_data(start, 1000)}
        text = frames.encode_call("stop", "StopTransaction", stop)
        frames.validate("StopTransaction", stop)  # schema-valid, as a charger sends it
        await conn.send(text)
        reply = (await replies_for(conn, {"stop"}))["stop"]
        assert reply[0] == frames.CALLRESULT, reply
        await conn.send(frames.encode_call("h", "Heartbeat", {}))  # the connection carries on
        assert (await replies_for(conn, {"h"}))["h"][0] == frames.CALLRESULT
        await conn.close()
        return transaction_id, len(text)

    transaction_id, size = asyncio.run(session())
    assert 170_000 < size < 180_000  # the frame of the report: 12 h of minute samples, ~174 KB
    db = db_connect(tmp_path / "egw.db")
    tx = tx_store.get_transaction(db, transaction_id)
    assert tx["status"] == "Finished" and tx["energy_wh"] == 72_000
    samples = tx_store.meter_values(db, transaction_id=transaction_id, limit=10_000)
    assert len([s for s in samples if s["measurand"].startswith("Energy")]) == 720  # every sample of the 12 h stored
    db.close()


def test_a_frame_over_the_configured_limit_is_closed_with_1009_and_others_carry_on(multiproc_system, tmp_path):
    root, port = start_gateway(multiproc_system, tmp_path)  # default limit: 1 MiB

    async def scenario() -> None:
        ok = await connect(f"ws://127.0.0.1:{port}/ocpp/OK1")
        await ok.send(frames.encode_call("b", "BootNotification", BOOT))
        await replies_for(ok, {"b"})
        big = await connect(f"ws://127.0.0.1:{port}/ocpp/BIG1")
        near = frames.encode_call("d", "DataTransfer", {"vendorId": "acme", "data": "x" * (1024 * 1024 - 100)})
        assert len(near) <= 1024 * 1024
        await big.send(frames.encode_call("b", "BootNotification", BOOT))
        await big.send(near)  # just under the limit: answered
        assert (await replies_for(big, {"b", "d"}))["d"][0] == frames.CALLRESULT
        await big.send(frames.encode_call("x", "DataTransfer", {"vendorId": "acme", "data": "x" * (1024 * 1024)}))
        with pytest.raises(ConnectionError):
            await asyncio.wait_for(big.recv(), 30)
        assert big.ws.close_code == 1009
        await ok.send(frames.encode_call("h", "Heartbeat", {}))
        assert (await replies_for(ok, {"h"}))["h"][0] == frames.CALLRESULT
        await big.close()
        await ok.close()

    asyncio.run(scenario())


def test_frames_bigger_than_the_actor_link_buffer_back_to_back_are_all_answered(multiproc_system, tmp_path):
    """With the limit raised to 4 MiB, two 3.5 MiB frames in a row overfill the listener's link to
    the charger actor (1 MiB): the second goes as a thespian message instead, in its turn."""
    root, port = start_gateway(multiproc_system, tmp_path, ocpp_max_frame_bytes=4 * 1024 * 1024)

    async def scenario() -> dict[str, list]:
        conn = await connect(f"ws://127.0.0.1:{port}/ocpp/HUGE1")
        await conn.send(frames.encode_call("b", "BootNotification", BOOT))
        await replies_for(conn, {"b"})
        for uid in ("d1", "d2"):
            await conn.send(frames.encode_call(uid, "DataTransfer", {"vendorId": "acme", "data": "y" * (3_500_000)}))
        await conn.send(frames.encode_call("h", "Heartbeat", {}))
        got = await replies_for(conn, {"d1", "d2", "h"})
        await conn.close()
        return got

    got = asyncio.run(scenario())
    assert [got[uid][0] for uid in ("d1", "d2", "h")] == [frames.CALLRESULT] * 3


def test_the_frame_limit_setting_names_its_key_when_out_of_range():
    assert load_config(env={}).ocpp_max_frame_bytes == 1024 * 1024
    assert load_config(env={"EGW_OCPP_MAX_FRAME_BYTES": str(4 * 1024 * 1024)}).ocpp_max_frame_bytes == 4 * 1024 * 1024
    for bad in ("65536", str(64 * 1024 * 1024)):
        with pytest.raises(ConfigError, match="ocpp_max_frame_bytes"):
            load_config(env={"EGW_OCPP_MAX_FRAME_BYTES": bad})
    with pytest.raises(ConfigError, match="ocpp_handshake_timeout"):
        load_config(env={"EGW_OCPP_HANDSHAKE_TIMEOUT": "0"})
    with pytest.raises(ConfigError, match="ocpp_startup_hold_frames"):
        load_config(env={"EGW_OCPP_STARTUP_HOLD_FRAMES": "0"})


# -------------------------------------------- defect 8: frames before the actor is up
def burst(n: int) -> list[tuple[str, str]]:
    """(unique id, frame): a BootNotification, then what a charger's offline queue holds."""
    calls = [("boot", frames.encode_call("boot", "BootNotification", BOOT))]
    for i in range(1, n):
        if i % 2:
            calls.append((f"st{i}", frames.encode_call(f"st{i}", "StatusNotification", {"connectorId": 1, "errorCode": "NoError", "status": "Available"})))
        else:
            calls.append((f"hb{i}", frames.encode_call(f"hb{i}", "Heartbeat", {})))
    return calls


async def send_burst_and_read_replies(url: str, n: int) -> dict[str, list]:
    conn = await connect(url)
    calls = burst(n)
    for _, text in calls:  # all at once, right after the handshake: no waiting for answers
        await conn.send(text)
    got = await replies_for(conn, {uid for uid, _ in calls})
    await conn.send(frames.encode_call("after", "Heartbeat", {}))  # still open, still served
    got.update(await replies_for(conn, {"after"}))
    assert not conn.closed
    await conn.close()
    return got


@pytest.mark.parametrize("hold_frames", [1000, 20])
def test_300_frames_right_after_the_handshake_each_get_a_reply_and_the_boot_is_accepted(multiproc_system, tmp_path, hold_frames):
    root, port = start_gateway(multiproc_system, tmp_path, ocpp_startup_hold_frames=hold_frames)
    got = asyncio.run(send_burst_and_read_replies(f"ws://127.0.0.1:{port}/ocpp/BURST1", 300))
    assert got["boot"][0] == frames.CALLRESULT and got["boot"][2]["status"] == "Accepted"
    assert got["after"][0] == frames.CALLRESULT
    assert len(got) == 301
    refused = [f for f in got.values() if f[0] == frames.CALLERROR]
    assert all(f[2] == "GenericError" and "try again" in f[3] for f in refused), refused[:3]
    if hold_frames >= 300:
        assert refused == []  # the default hold takes the whole burst: every frame served


class FakeServer:
    """What the listener's hold logic sends and closes, without sockets."""

    def __init__(self) -> None:
        self.sent: list[str] = []
        self.closed: list[int] = []

    def send(self, charge_point_id: str, connection_id: int, text: str) -> bool:
        self.sent.append(text)
        return True

    def close(self, charge_point_id: str, connection_id: int, code: int, reason: str) -> None:
        self.closed.append(code)


def test_past_the_hold_bound_calls_are_answered_try_again_but_a_boot_is_held_and_numbers_stay_contiguous():
    """The listener's hold, driven directly: which frames are kept and how they are numbered."""
    from actors.ocpp.listener import Link, ListenerActor
    from actors.ocpp.messages import ChargerConnected, FrameIn
    from actors.ocpp.server import ListenerSettings

    listener = ListenerActor.__new__(ListenerActor)
    listener.settings = ListenerSettings(hold_frames=5)
    listener.links, listener.held_bytes, listener.server = {"CP": Link(7)}, 0, FakeServer()
    listener.log = logs.ActorLog("ocpp")
    listener.replies = type("Replies", (), {"path": None})()
    told: list = []
    listener.tell = lambda address, msg: told.append(msg)
    texts = [text for _, text in burst(40)]
    texts.insert(30, frames.encode_call("late-boot", "BootNotification", BOOT))  # a boot past the bound
    texts.insert(31, "not json")
    for seq, text in enumerate(texts):
        listener.frame("CP", 7, seq, text)
    answered = [json.loads(t) for t in listener.server.sent]
    assert listener.server.closed == []
    assert [a[1] for a in answered if a[2] == "GenericError"] == [uid for uid, _ in burst(40)[5:]]
    assert ["-1"] == [a[1] for a in answered if a[2] == "FormationViolation"]
    listener._bind("CP", listener.links["CP"], "actor-address")
    connected, *frames_in = told
    assert isinstance(connected, ChargerConnected) and connected.next_seq == 0
    assert [(f.seq, json.loads(f.text)[1]) for f in frames_in] == list(enumerate(["boot", "st1", "hb2", "st3", "hb4", "late-boot"]))
    assert all(isinstance(f, FrameIn) for f in frames_in) and listener.held_bytes == 0
    listener.frame("CP", 7, 99, frames.encode_call("next", "Heartbeat", {}))
    assert told[-1].seq == 6  # the next frame follows on, whatever the server numbered it


# -------------------------------------------- defect 9: half-open connections, log floods
async def test_connections_that_never_finish_the_handshake_are_closed(tmp_path):
    from actors.ocpp.policy import OcppPolicy
    from actors.ocpp.server import ListenerSettings

    from .conftest import Central

    settings = ListenerSettings(host="127.0.0.1", port=0, unknown_chargers="accept", handshake_timeout=0.3)
    c = await Central(tmp_path / "gw.db", OcppPolicy(), settings).start()
    try:
        charger = await c.charger("UPGRADED")  # upgraded before the others: the deadline no longer applies to it
        silent = await asyncio.open_connection("127.0.0.1", c.port)
        partial = await asyncio.open_connection("127.0.0.1", c.port)
        partial[1].write(b"GET /ocpp/HALF HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\n")  # no blank line: never complete
        await partial[1].drain()
        for reader, writer in (silent, partial):
            assert await asyncio.wait_for(reader.read(), 30) == b""  # closed by the gateway, not by us
            writer.close()
        assert (await charger.heartbeat()).current_time
        assert list(c.server.connections) == ["UPGRADED"] and not c.server._upgrading
    finally:
        await c.close()


async def test_a_thousand_malformed_frames_log_a_bounded_number_of_lines_and_a_count(central, caplog, monkeypatch):
    now = [1000.0]
    monkeypatch.setattr(logs, "CLOCK", lambda: now[0])  # the log's minute is stepped, not waited for
    caplog.set_level(logging.INFO)
    good = await central.charger("GOOD")
    bad = await connect(central.url("BAD"))
    await bad.send(frames.encode_call("b", "BootNotification", BOOT))
    await replies_for(bad, {"b"})
    caplog.clear()
    for i in range(1000):
        await bad.send(["{not json", f'[2,"m{i}","Heartbeat",{{"extra":1}}]', f'[2,"m{i}","NoSuchAction",{{}}]'][i % 3])
    answered = 0
    while answered < 1000:
        assert json.loads(await asyncio.wait_for(bad.recv(), 30))[0] == frames.CALLERROR
        answered += 1
    refused = [r for r in caplog.records if r.getMessage() == "frame refused"]
    assert len(refused) == logs.REPEAT_LIMIT
    assert len(caplog.records) <= logs.REPEAT_LIMIT + 2
    assert (await good.heartbeat()).current_time  # other chargers carry on
    await bad.send(frames.encode_call("h", "Heartbeat", {}))  # and so does this one
    assert json.loads(await bad.recv())[0] == frames.CALLRESULT

    now[0] += 61  # the minute is over: the next line is preceded by how many were left out
    await bad.send("{still not json")
    await bad.recv()
    [summary] = [r for r in caplog.records if r.getMessage() == "repeated log lines not written individually"]
    assert summary.fields == {"repeated": "frame refused", "count": 1000 - logs.REPEAT_LIMIT, "seconds": 61}
    assert summary.actor == "ocpp/BAD"
    assert caplog.records[-1].getMessage() == "frame refused"
    await bad.close()


def test_warnings_naming_a_charger_are_limited_per_charger(caplog, monkeypatch):
    """Warnings naming a charger are limited per charger: one flooding id leaves another's lines alone."""
    now = [0.0]
    monkeypatch.setattr(logs, "CLOCK", lambda: now[0])
    log = logs.ActorLog("ocpp")
    with caplog.at_level(logging.WARNING):
        for _ in range(500):
            log.warning("binary frame; OCPP-J is text only", charger="NOISY")
        log.warning("binary frame; OCPP-J is text only", charger="QUIET")
        now[0] = 60.0
        log.info("OCPP listener up")
    lines = [(r.getMessage(), r.fields.get("charger"), r.fields.get("count")) for r in caplog.records]
    assert lines.count(("binary frame; OCPP-J is text only", "NOISY", None)) == logs.REPEAT_LIMIT
    assert ("binary frame; OCPP-J is text only", "QUIET", None) in lines
    assert lines[-1] == ("repeated log lines not written individually", "NOISY", 500 - logs.REPEAT_LIMIT)
    assert len(lines) == logs.REPEAT_LIMIT + 2

