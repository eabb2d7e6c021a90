"""Provisioning endpoints: Wi-Fi (fake stack and real NetworkManager code) and the BLE window."""

from __future__ import annotations

import asyncio
import json
import logging
from concurrent.futures import ThreadPoolExecutor

import pytest
from aiohttp.test_utils import TestClient, TestServer

from actors.api.app import build_app
from actors.api.gateway import GatewayBackend, GatewaySettings
from actors.api.provisioning import make_wifi_backend
from actors.ble.messages import BleStatus, CloseProvisioningWindow, GetBleStatus, OpenProvisioningWindow
from actors.wifi.backend import FakeWifiBackend, WifiStatus
from actors.wifi.networkmanager import NetworkManagerWifi
from supervisor.logs import JsonFormatter
from tests.api.conftest import TOKEN, MemoryBackend
from tests.api.test_gateway_backend import ScriptedPort, record

PSK = "correct horse battery"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def log_output(caplog) -> str:
    """The log lines exactly as the gateway writes them (JSON, structured fields included)."""
    formatter = JsonFormatter()
    return "\n".join(formatter.format(r) for r in caplog.records)


async def serve(backend, **kwargs):
    return TestClient(TestServer(build_app(backend, token=TOKEN, version="t", backend_timeout=0.5, command_timeout=1.0, **kwargs), host="127.0.0.1", port=0))


# ------------------------------------------------------------------ Wi-Fi
async def test_status_scan_connect_forget(client, backend):
    r = await client.get("/api/wifi")
    assert r.status == 200 and await r.json() == {"state": "disconnected", "ssid": None, "signal": None, "ip4": None, "provisioned": False}
    r = await client.get("/api/wifi/scan")
    assert (await r.json())["networks"] == [{"ssid": "cafe", "signal": 90, "secured": False}, {"ssid": "home", "signal": 70, "secured": True}]
    r = await client.post("/api/wifi", json={"ssid": "home", "psk": PSK}, headers=AUTH)
    text = await r.text()
    assert r.status == 202 and json.loads(text)["ssid"] == "home" and PSK not in text
    assert backend.wifi_stack.profile == ("home", PSK)
    r = await client.get("/api/wifi")
    text = await r.text()
    assert json.loads(text)["state"] == "connected" and PSK not in text
    r = await client.delete("/api/wifi", headers=AUTH)
    assert r.status == 200 and (await r.json())["removed"] is True
    assert backend.wifi_stack.profile is None
    r = await client.delete("/api/wifi", headers=AUTH)
    assert (await r.json())["removed"] is False


async def test_open_network_needs_no_psk_and_a_raw_hex_key_is_valid(client, backend):
    assert (await client.post("/api/wifi", json={"ssid": "cafe", "psk": None}, headers=AUTH)).status == 202
    assert backend.wifi_stack.profile == ("cafe", None)
    assert (await client.post("/api/wifi", json={"ssid": "cafe"}, headers=AUTH)).status == 202
    assert (await client.post("/api/wifi", json={"ssid": "home", "psk": "ab" * 32}, headers=AUTH)).status == 202
    assert backend.wifi_stack.profile == ("home", "ab" * 32)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"psk": "longenough"}', "ssid"),
        (b'{"ssid": "", "psk": "longenough"}', "ssid"),
        (json.dumps({"ssid": "x" * 33, "psk": "longenough"}).encode(), "ssid"),
        (json.dumps({"ssid": "\u00e9" * 17, "psk": "longenough"}).encode(), "ssid"),  # 17 characters, 34 bytes
        (b'{"ssid": "\\udcff", "psk": "longenough"}', "ssid"),
        (b'{"ssid": 5, "psk": "longenough"}', "ssid"),
        (b'{"ssid": "home", "psk": "s3cr3t"}', "psk"),
        (json.dumps({"ssid": "home", "psk": "Zq" * 32}).encode(), "psk"),
        (b'{"ssid": "home", "psk": "Zq9x\\tKw7vYp"}', "psk"),
        (b'{"ssid": "home", "psk": 12345678}', "psk"),
        (b'{"ssid": "home", "psk": ["longenough"]}', "psk"),
        (b'{"ssid": "home", "psk": "longenough", "hidden": true}', "hidden"),
    ],
)
async def test_bad_input_is_400_naming_the_field_never_echoing_the_key_and_changes_nothing(client, backend, body, field, caplog):
    caplog.set_level(logging.INFO)
    r = await client.post("/api/wifi", data=body, headers={**AUTH, "Content-Type": "application/json"})
    answer = await r.json()
    assert r.status == 400 and answer["field"] == field and answer["error"] == "bad_request", answer
    assert backend.wifi_stack.profile is None and backend.wifi_stack.connects == 0 and backend.writes == []
    logged = log_output(caplog)
    assert "bad request" in logged  # the rejection is logged, with the field ...
    for secret in ("s3cr3t", "longenough", "Zq" * 32, "Zq9x", "12345678"):
        assert secret not in json.dumps(answer) and secret not in logged  # ... but never the key


async def test_psk_never_logged_but_the_provisioning_is(client, caplog):
    caplog.set_level(logging.DEBUG)
    assert (await client.post("/api/wifi", json={"ssid": "home", "psk": PSK}, headers=AUTH)).status == 202
    logged = log_output(caplog)
    assert "wifi network provisioned" in logged and '"ssid": "home"' in logged and PSK not in logged


async def test_wifi_writes_need_the_token(client, backend):
    assert (await client.post("/api/wifi", json={"ssid": "home", "psk": PSK})).status == 401
    r = await client.post("/api/wifi", json={"ssid": "home", "psk": PSK}, headers={"Authorization": "Bearer nope"})
    assert r.status == 401 and (await r.json())["field"] == "header.Authorization"
    backend.wifi_stack.profile = ("kept", "secret-kept")
    assert (await client.delete("/api/wifi")).status == 401
    assert backend.wifi_stack.profile == ("kept", "secret-kept") and backend.wifi_stack.connects == 0


async def test_oversize_wifi_body_is_413(backend):
    async with await serve(backend, max_body=1024) as client:
        r = await client.post("/api/wifi", data=b"{" + b" " * 5000 + b"}", headers=AUTH)
        assert r.status == 413
    assert backend.wifi_stack.profile is None


class HangingWifi(FakeWifiBackend):
    async def status(self) -> WifiStatus:
        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_hanging_network_manager_is_503_not_a_hang():
    async with await serve(MemoryBackend(wifi=HangingWifi())) as client:
        r = await client.get("/api/wifi")
        assert r.status == 503 and int(r.headers["Retry-After"]) >= 1


async def test_no_network_manager_is_503_wifi_unavailable(tmp_path):
    """The real NetworkManager backend where there is none (a bus nobody serves): a clear 503."""
    from tests.ble.dbus_daemon import PrivateDbusDaemon

    daemon = PrivateDbusDaemon()
    wifi = NetworkManagerWifi(bus_address=daemon.address)
    try:
        async with await serve(MemoryBackend(wifi=wifi)) as client:
            for method, path, body in (("GET", "/api/wifi", None), ("GET", "/api/wifi/scan", None), ("POST", "/api/wifi", {"ssid": "home", "psk": PSK}), ("DELETE", "/api/wifi", None)):
                r = await client.request(method, path, json=body, headers=AUTH)
                answer = await r.json()
                assert r.status == 503 and answer["error"] == "wifi_unavailable" and "NetworkManager" in answer["message"], (method, path, answer)
                assert int(r.headers["Retry-After"]) >= 1
    finally:
        await wifi.close()
        daemon.stop()
    async with await serve(MemoryBackend(wifi=NetworkManagerWifi(bus_address=f"unix:path={tmp_path}/no-bus"))) as client:
        r = await client.get("/api/wifi")
        assert r.status == 503 and (await r.json())["error"] == "wifi_unavailable"


async def test_wifi_backend_setting():
    assert isinstance(make_wifi_backend("networkmanager"), NetworkManagerWifi)
    assert isinstance(make_wifi_backend("fake"), FakeWifiBackend)
    for kind, reason in (("none", "disabled"), ("nmcli", "wifi_backend must be one of")):
        async with await serve(MemoryBackend(wifi=make_wifi_backend(kind))) as client:
            r = await client.get("/api/wifi")
            answer = await r.json()
            assert r.status == 503 and answer["error"] == "wifi_unavailable" and reason in answer["message"]


# ------------------------------------------------------------------ BLE window (in-memory backend)
async def test_ble_window_opens_closes_and_needs_the_token(client, backend):
    r = await client.get("/api/ble")
    assert r.status == 200 and (await r.json())["window_open"] is False
    assert (await client.post("/api/ble/window", json={"minutes": 5})).status == 401
    assert (await client.delete("/api/ble/window")).status == 401
    assert backend.writes == []
    r = await client.post("/api/ble/window", json={"minutes": 5}, headers=AUTH)
    status = await r.json()
    assert r.status == 200 and status["window_open"] and 290 < status["window_remaining_s"] <= 300 and status["window_closes_at"]
    r = await client.post("/api/ble/window", json={}, headers=AUTH)  # the configured length
    assert (await r.json())["window_remaining_s"] > 800
    r = await client.delete("/api/ble/window", headers=AUTH)
    assert r.status == 200 and (await r.json())["window_open"] is False
    assert backend.writes == [("ble_open_window", 5), ("ble_open_window", None), ("ble_close_window", None)]


@pytest.mark.parametrize(("body", "field"), [({"minutes": 0}, "minutes"), ({"minutes": -1}, "minutes"), ({"minutes": 1441}, "minutes"),
                                             ({"minutes": "5"}, "minutes"), ({"minutes": 5, "seconds": 1}, "seconds")])
async def test_ble_window_bad_input_is_400(client, backend, body, field):
    r = await client.post("/api/ble/window", json=body, headers=AUTH)
    assert r.status == 400 and (await r.json())["field"] == field
    assert backend.writes == []


async def test_ble_restarting_or_unavailable_is_503(client, backend):
    backend.restarting.add("ble")
    for method, path in (("GET", "/api/ble"), ("POST", "/api/ble/window"), ("DELETE", "/api/ble/window")):
        r = await client.request(method, path, json={}, headers=AUTH)
        assert r.status == 503 and r.headers["Retry-After"]
    backend.restarting.clear()
    backend.ble.update(state="unavailable", reason="BlueZ (org.bluez) is not running")
    r = await client.get("/api/ble")
    assert r.status == 200 and (await r.json())["reason"] == "BlueZ (org.bluez) is not running"
    r = await client.post("/api/ble/window", json={"minutes": 1}, headers=AUTH)
    answer = await r.json()
    assert r.status == 503 and answer["error"] == "ble_unavailable" and "BlueZ" in answer["message"] and r.headers["Retry-After"]


# ------------------------------------------------------------------ BLE window (gateway backend, scripted actor side)
def ble_reply(state="running", reason=None):
    """The BLE actor's answers, each carrying the request id it answers (as the actor does)."""
    window = {"open": False}

    def reply(msg):
        if isinstance(msg, OpenProvisioningWindow):
            window["open"] = True
        elif isinstance(msg, CloseProvisioningWindow):
            window["open"] = False
        elif not isinstance(msg, GetBleStatus):
            return None
        return BleStatus(state, window["open"] and state == "running", window["open"], 600.0 if window["open"] else 0.0, reason, 3, msg.request_id)

    return reply


@pytest.fixture
def pool():
    with ThreadPoolExecutor(1) as executor:
        yield executor


def gateway_backend(tmp_path, pool, port):
    return GatewayBackend(GatewaySettings(data_dir=str(tmp_path), db_path=str(tmp_path / "egw.db"), wifi_backend="none"), port, pool, started_at=0.0)


async def test_gateway_backend_sends_window_messages_to_the_ble_actor(tmp_path, pool):
    port = ScriptedPort([record("ble", advertising=False)], {"ble": "ble-address"}, ble_reply())
    backend = gateway_backend(tmp_path, pool, port)
    opened = await backend.ble_open_window(10)
    assert opened["window_open"] and opened["advertising"] and opened["window_closes_at"] and opened["requests_served"] == 3
    address, sent = port.asked[-1]
    assert address == "ble-address" and isinstance(sent, OpenProvisioningWindow) and sent.minutes == 10 and sent.request_id
    closed = await backend.ble_close_window()
    assert not closed["window_open"] and closed["window_closes_at"] is None
    assert isinstance(port.asked[-1][1], CloseProvisioningWindow) and port.asked[-1][1].request_id != sent.request_id


async def test_gateway_backend_ble_errors(tmp_path, pool):
    from actors.api.backend import NotSupportedError, UnavailableError

    unavailable = ScriptedPort([record("ble", "unavailable", reason="no adapter", retry_in_s=120.0)], {"ble": "ble-address"}, ble_reply("unavailable", "no adapter"))
    backend = gateway_backend(tmp_path, pool, unavailable)
    assert (await backend.ble_status())["reason"] == "no adapter"
    with pytest.raises(UnavailableError) as info:
        await backend.ble_open_window(5)
    assert info.value.code == "ble_unavailable" and info.value.retry_after == 121
    assert not any(isinstance(m, OpenProvisioningWindow) for _, m in unavailable.asked)  # the window stays as it was

    restarting = gateway_backend(tmp_path, pool, ScriptedPort([record("ble", "restarting")], {}, ble_reply()))
    with pytest.raises(UnavailableError):
        await restarting.ble_close_window()
    stale = gateway_backend(tmp_path, pool, ScriptedPort([record("ble")], {"ble": "ble-address"}, lambda msg: BleStatus("running", True, True, 1.0, request_id="someone-else")))
    with pytest.raises(AssertionError):  # ScriptedPort asserts that the match accepts the answer: another ask's answer is not ours
        await stale.ble_status()
    silent = gateway_backend(tmp_path, pool, ScriptedPort([record("ble")], {"ble": "ble-address"}, lambda msg: None))
    with pytest.raises(UnavailableError):
        await silent.ble_status()
    absent = gateway_backend(tmp_path, pool, ScriptedPort([record("api")], {}, ble_reply()))
    with pytest.raises(NotSupportedError):
        await absent.ble_status()
