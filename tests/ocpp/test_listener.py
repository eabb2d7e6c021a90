"""The websocket front-end: handshake refusals, connection replacement, oversized frames,
and offline replay stored by the charger's timestamps."""

from __future__ import annotations

import time

import aiohttp
import pytest

from storage import chargers as charger_store
from storage import ocpp_transactions as tx_store

from tests.conftest import wait_until_async

from .conftest import reconnect
from simulators.charger.connection import basic_auth_header, connect


async def handshake_status(url: str, headers: dict | None = None, protocols=("ocpp1.6",)) -> int:
    async with aiohttp.ClientSession() as session:
        try:
            async with session.ws_connect(url, protocols=protocols, headers=headers or {}):
                return 101
        except aiohttp.WSServerHandshakeError as exc:
            return exc.status


async def test_auth_failures_are_refused_at_the_handshake(strict_central):
    c = strict_central
    charger_store.add_charger(c.conn, "CPK", auth_key="0123456789abcdef", registration_status="Accepted")
    url = c.url("CPK")
    assert await handshake_status(c.url("STRANGER")) == 401
    assert await handshake_status(url) == 401
    assert await handshake_status(url, {"Authorization": basic_auth_header("CPK", "wrong-key")}) == 401
    assert await handshake_status(url, {"Authorization": basic_auth_header("OTHER", "0123456789abcdef")}) == 401
    assert await handshake_status(url, {"Authorization": "Bearer 0123456789abcdef"}) == 401
    assert await handshake_status(url, {"Authorization": "Basic !!!notbase64"}) == 401
    assert await handshake_status(c.url("bad id with spaces")) in (401, 404)
    assert await handshake_status(url, {"Authorization": basic_auth_header("CPK", "0123456789abcdef")}, protocols=("ocpp2.0.1",)) == 400
    assert await handshake_status(url, {"Authorization": basic_auth_header("CPK", "0123456789abcdef")}) == 101
    assert charger_store.get_charger(c.conn, "STRANGER") is None


async def test_accept_policy_admits_unknown_charger_unconfirmed_and_pins_no_key_on_its_own(central):
    """The first key seen is only a candidate: pinning it would let whoever connects first lock the real charger out."""
    assert await handshake_status(central.url("NEW1"), {"Authorization": basic_auth_header("NEW1", "first-key-123456")}) == 101
    charger = charger_store.get_charger(central.conn, "NEW1")
    assert charger["registration_status"] == "Accepted" and not charger["confirmed"] and not charger["key_set"]
    assert await handshake_status(central.url("NEW1"), {"Authorization": basic_auth_header("NEW1", "other-key-123456")}) == 101
    candidates = {c["fingerprint"] for c in charger_store.key_candidates(central.conn, "NEW1")}
    assert candidates == {charger_store.key_fingerprint("first-key-123456"), charger_store.key_fingerprint("other-key-123456")}


async def test_new_connection_replaces_the_old_one(central):
    old = await connect(central.url("CP1"))
    new = await connect(central.url("CP1"))
    closing = await old.ws.receive()
    assert closing.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING)
    assert old.ws.close_code == 1000
    await new.send('[2,"h1","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
    reply = await new.recv()
    assert reply.startswith('[3,"h1"')
    assert central.backend.protocol("CP1").connection_id == central.server.connections["CP1"].connection_id
    await old.close()
    await new.close()


async def test_oversized_and_binary_frames_close_only_that_connection(strict_central, caplog):
    c = strict_central
    charger_store.add_charger(c.conn, "BIG", auth_key="k" * 16, registration_status="Accepted")
    charger_store.add_charger(c.conn, "OK", auth_key="k" * 16, registration_status="Accepted")
    big = await connect(c.url("BIG"), auth_key="k" * 16)
    ok = await c.charger("OK", auth_key="k" * 16)
    await big.send('[2,"x","Heartbeat",{"pad":"' + "x" * 10_000 + '"}]')
    with pytest.raises(ConnectionError):
        await big.recv()
    assert big.ws.close_code == 1009
    [line] = await wait_until_async(lambda: [r for r in caplog.records if r.getMessage().startswith("frame larger than max_frame_bytes")])
    assert line.fields == {"charger": "BIG", "max_frame_bytes": 4096, "setting": "ocpp_max_frame_bytes"}  # says which limit to raise
    binary = await connect(c.url("BIG"), auth_key="k" * 16)
    await binary.ws.send_bytes(b'[2,"x","Heartbeat",{}]')
    with pytest.raises(ConnectionError):
        await binary.recv()
    assert binary.ws.close_code == 1003
    assert (await ok.heartbeat()).current_time
    await big.close()
    await binary.close()


async def test_offline_replay_with_three_hour_old_timestamps_is_stored_in_timestamp_order(central):
    cp = await central.charger("CP1")
    await cp.status(1, "Available")
    t0 = time.time() - 3 * 3600
    cp.offline = True
    await cp._connection.close()
    local_id = await cp.start_transaction(1, "ALICE", meter_start=10_000, timestamp=t0)
    await cp.status(1, "Charging", timestamp=t0 + 1)
    # queued out of order: a real queue can hold samples from two sources (periodic + clock-aligned)
    await cp.meter(1, local_id, 12_000, 7000.0, timestamp=t0 + 1200)
    await cp.meter(1, local_id, 11_000, 7000.0, timestamp=t0 + 600)
    await cp.stop_transaction(local_id, 13_000, reason="Local", timestamp=t0 + 1800)
    await cp.status(1, "Available", timestamp=t0 + 1801)
    cp.offline = False
    await reconnect(central, cp)
    live_status_time = time.time()
    await cp.status(1, "Preparing", timestamp=live_status_time)  # a live message overtakes the queue
    assert await cp.replay() == 6

    [tx] = tx_store.list_transactions(central.conn, charger="CP1")
    assert abs(tx["start_time"] - t0) < 0.01 and abs(tx["stop_time"] - (t0 + 1800)) < 0.01
    assert tx["status"] == "Finished" and tx["energy_wh"] == 3000
    samples = tx_store.meter_values(central.conn, transaction_id=tx["transaction_id"])
    energy = [(round(s["timestamp"] - t0), s["value"]) for s in samples if s["measurand"].startswith("Energy")]
    assert energy == [(600, "11000"), (1200, "12000")]
    # the live status stays current; the replayed ones land in the history at their own times
    [connector1] = [c for c in charger_store.list_connectors(central.conn, "CP1") if c["connector_id"] == 1]
    assert connector1["timestamp"] >= live_status_time - 0.01  # not overwritten by a replayed, older status
    history = charger_store.status_history(central.conn, "CP1")
    assert any(h["status"] == "Preparing" and abs(h["timestamp"] - live_status_time) < 0.01 for h in history)
    replayed = [(round(h["timestamp"] - t0), h["status"]) for h in history if h["timestamp"] < t0 + 3600]
    assert replayed == [(1801, "Available"), (1, "Charging")]
    # reconnected without a BootNotification: refreshed with TriggerMessage
    assert (await cp.wait_for("TriggerMessage"))["requested_message"] == "StatusNotification"


async def test_other_chargers_keep_working_while_one_is_replaced(central):
    a = await central.charger("A")
    b = await central.charger("B")
    await reconnect(central, a)
    assert (await b.heartbeat()).current_time
    assert (await a.heartbeat()).current_time
    await wait_until_async(lambda: set(central.server.connections) == {"A", "B"})


def _self_signed(tmp_path):
    import datetime as dt

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now - dt.timedelta(minutes=1))
            .not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(__import__("ipaddress").ip_address("127.0.0.1"))]), critical=False)
            .sign(key, hashes.SHA256()))
    cert_path, key_path = tmp_path / "ocpp.crt", tmp_path / "ocpp.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    return str(cert_path), str(key_path)


async def test_tls_security_profile_2(tmp_path):
    import ssl

    from actors.ocpp.policy import OcppPolicy
    from actors.ocpp.server import ListenerSettings

    from .conftest import Central

    cert, key = _self_signed(tmp_path)
    settings = ListenerSettings(host="127.0.0.1", port=0, unknown_chargers="reject", tls_cert=cert, tls_key=key)
    c = await Central(tmp_path / "gw.db", OcppPolicy(), settings).start()
    try:
        charger_store.add_charger(c.conn, "TLS1", auth_key="tls-key-12345678", registration_status="Accepted")
        trust = ssl.create_default_context(cafile=cert)
        conn = await connect(f"wss://127.0.0.1:{c.port}/ocpp/TLS1", auth_key="tls-key-12345678", ssl=trust)
        await conn.send('[2,"b","BootNotification",{"chargePointVendor":"V","chargePointModel":"M"}]')
        assert (await conn.recv()).startswith('[3,"b"')
        await conn.close()
        with pytest.raises(aiohttp.ClientError):  # plain ws:// to a TLS port fails
            await connect(f"ws://127.0.0.1:{c.port}/ocpp/TLS1", auth_key="tls-key-12345678", timeout=3)
    finally:
        await c.close()


async def test_peer_that_stops_answering_pings_is_dropped(tmp_path):
    from actors.ocpp.policy import OcppPolicy
    from actors.ocpp.server import ListenerSettings

    from .conftest import Central

    settings = ListenerSettings(host="127.0.0.1", port=0, unknown_chargers="accept", ping_interval=0.2)
    c = await Central(tmp_path / "gw.db", OcppPolicy(), settings).start()
    try:
        async with aiohttp.ClientSession() as session:
            ws = await session.ws_connect(c.url("QUIET"), protocols=("ocpp1.6",), autoping=False)
            await wait_until_async(lambda: "QUIET" in c.server.connections)
            msg = await ws.receive(timeout=5)
            assert msg.type == aiohttp.WSMsgType.PING  # the gateway checks the peer is alive
            await wait_until_async(lambda: "QUIET" not in c.server.connections, timeout=5)  # no pong: dropped
            await ws.close()
    finally:
        await c.close()
