"""NetworkManagerWifi against a fake NetworkManager on a private D-Bus daemon."""

from __future__ import annotations

import json

import pytest

from actors.wifi.backend import WifiError, WifiNetwork, WifiStatus, WifiUnavailableError
from actors.wifi.networkmanager import PROFILE_ID, NetworkManagerWifi
from tests.ble.fake_nm import FakeNetworkManager, Network

PSK = "Tr0ub4dor&3-horse"


@pytest.fixture
async def nm(dbus_daemon):
    fake = FakeNetworkManager(dbus_daemon.address, [Network("home", 72, PSK), Network("cafe", 40, None)])
    await fake.start()
    backend = NetworkManagerWifi(bus_address=dbus_daemon.address)
    yield fake, backend
    await backend.close()
    await fake.stop()


async def test_scan_lists_access_points(nm):
    fake, backend = nm
    networks = await backend.scan()
    assert networks == [WifiNetwork("home", 72, True), WifiNetwork("cafe", 40, False)]
    assert fake.scans == 1


async def test_connect_creates_the_gateway_profile_and_reports_connected(nm):
    fake, backend = nm
    assert await backend.status() == WifiStatus("disconnected", provisioned=False)
    status = await backend.connect("home", PSK)
    assert status == WifiStatus("connected", "home", 72, "192.168.4.23", provisioned=True)
    (settings,) = fake.added
    assert settings["connection"]["id"].value == PROFILE_ID
    assert bytes(settings["802-11-wireless"]["ssid"].value) == b"home"
    assert settings["802-11-wireless-security"]["key-mgmt"].value == "wpa-psk"
    assert settings["802-11-wireless-security"]["psk"].value == PSK


async def test_wrong_key_keeps_connecting(nm):
    fake, backend = nm
    status = await backend.connect("home", "not-the-key")
    assert status.state == "connecting" and status.provisioned


async def test_open_network_has_no_security_section(nm):
    fake, backend = nm
    assert (await backend.connect("cafe", None)).state == "connected"
    assert "802-11-wireless-security" not in fake.added[0]


async def test_reprovisioning_replaces_only_the_gateway_profile(nm):
    fake, backend = nm
    owners = fake.add_profile("owner-hotspot", "phone")
    await backend.connect("cafe", None)
    await backend.connect("home", PSK)
    ids = sorted(c.settings["connection"]["id"].value for c in fake.connections.values())
    assert ids == [PROFILE_ID, "owner-hotspot"] and owners in fake.connections
    assert await backend.forget() is True
    assert [c.settings["connection"]["id"].value for c in fake.connections.values()] == ["owner-hotspot"]
    assert await backend.forget() is False


async def test_no_network_manager_is_unavailable(dbus_daemon):
    backend = NetworkManagerWifi(bus_address=dbus_daemon.address)
    with pytest.raises(WifiUnavailableError, match="NetworkManager is not running"):
        await backend.status()
    await backend.close()


async def test_no_bus_is_unavailable(tmp_path):
    backend = NetworkManagerWifi(bus_address=f"unix:path={tmp_path}/none")
    with pytest.raises(WifiUnavailableError, match="not reachable"):
        await backend.scan()


async def test_refusals_from_network_manager_are_wifi_errors_without_the_key(nm):
    fake, backend = nm
    fake.refuse = f"802-11-wireless-security.psk: property is invalid ({PSK})"  # even if it echoed the key
    with pytest.raises(WifiError, match="property is invalid") as info:
        await backend.connect("home", PSK)
    assert PSK not in str(info.value)
    assert not isinstance(info.value, WifiUnavailableError)


async def test_api_routes_over_network_manager(nm):
    from aiohttp.test_utils import TestClient, TestServer

    from actors.api.app import build_app
    from tests.api.conftest import MemoryBackend

    fake, backend = nm
    auth = {"Authorization": "Bearer " + "n" * 43}
    async with TestClient(TestServer(build_app(MemoryBackend(wifi=backend), token="n" * 43), host="127.0.0.1", port=0)) as client:
        r = await client.post("/api/wifi", json={"ssid": "home", "psk": PSK}, headers=auth)
        assert r.status == 202 and (await r.json())["state"] == "connected"
        r = await client.get("/api/wifi/scan")
        assert [n["ssid"] for n in (await r.json())["networks"]] == ["home", "cafe"]
        fake.refuse = "no secrets agent"
        r = await client.post("/api/wifi", json={"ssid": "home", "psk": PSK}, headers=auth)
        text = await r.text()
        assert r.status == 502 and json.loads(text)["error"] == "wifi_failed" and "no secrets agent" in text and PSK not in text
