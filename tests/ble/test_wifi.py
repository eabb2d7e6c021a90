"""Wi-Fi provisioning endpoints over real HTTP (and through the tunnel), with the fake backend."""

from __future__ import annotations

import json
import logging

import aiohttp
import pytest
from aiohttp import web

from actors.ble.dispatch import HttpDispatcher
from actors.ble.tunnel import Tunnel
from actors.ble.wifi import FakeWifiBackend, WifiNetwork, WifiStatus, add_wifi_routes
from supervisor.logs import JsonFormatter
from tests.ble.conftest import parse_page

TOKEN = "w" * 43
PSK = "correct horse battery"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def log_output(caplog) -> str:
    """The log lines exactly as the gateway writes them (JSON, structured fields included)."""
    formatter = JsonFormatter()
    return "\n".join(formatter.format(record) for record in caplog.records)


async def serve(app: web.Application):
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    return runner, f"http://127.0.0.1:{runner.addresses[0][1]}"


@pytest.fixture
async def wifi_api():
    backend = FakeWifiBackend([WifiNetwork("home", 70, True), WifiNetwork("home", 40, True), WifiNetwork("cafe", 90, False), WifiNetwork("", 50, False)])
    app = web.Application()
    add_wifi_routes(app, backend, token=TOKEN)
    runner, url = await serve(app)
    async with aiohttp.ClientSession() as session:
        yield backend, session, url, runner.addresses[0][1]
    await runner.cleanup()


async def test_status_scan_connect_forget(wifi_api):
    backend, session, url, _ = wifi_api
    async with session.get(url + "/api/wifi") as r:
        assert r.status == 200 and await r.json() == {"state": "disconnected", "ssid": None, "signal": None, "ip4": None, "provisioned": False}
    async with session.get(url + "/api/wifi/scan") as r:
        assert (await r.json())["networks"] == [
            {"ssid": "cafe", "signal": 90, "secured": False},
            {"ssid": "home", "signal": 70, "secured": True},
        ]
    async with session.post(url + "/api/wifi", json={"ssid": "home", "psk": PSK}, headers=AUTH) as r:
        assert r.status == 202
        text = await r.text()
        assert json.loads(text)["ssid"] == "home" and PSK not in text
    assert backend.profile == ("home", PSK)
    async with session.get(url + "/api/wifi") as r:
        text = await r.text()
        assert json.loads(text)["state"] == "connected" and PSK not in text
    async with session.delete(url + "/api/wifi", headers=AUTH) as r:
        assert r.status == 200 and (await r.json())["removed"] is True
    assert backend.profile is None


async def test_open_network_needs_no_psk(wifi_api):
    backend, session, url, _ = wifi_api
    async with session.post(url + "/api/wifi", json={"ssid": "cafe", "psk": None}, headers=AUTH) as r:
        assert r.status == 202
    assert backend.profile == ("cafe", None)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        (b"not json", "body"),
        (b"[1, 2]", "body"),
        (b'{"psk": "longenough"}', "ssid"),
        (b'{"ssid": "", "psk": "longenough"}', "ssid"),
        (json.dumps({"ssid": "x" * 33, "psk": "longenough"}).encode(), "ssid"),
        (b'{"ssid": 5, "psk": "longenough"}', "ssid"),
        (b'{"ssid": "home", "psk": "s3cr3t"}', "psk"),
        (json.dumps({"ssid": "home", "psk": "Zq" * 32}).encode(), "psk"),
        (b'{"ssid": "home", "psk": "Zq9x\\tKw7vYp"}', "psk"),
        (b'{"ssid": "home", "psk": 12345678}', "psk"),
        (b'{"ssid": "home", "psk": "longenough", "hidden": true}', "hidden"),
    ],
)
async def test_bad_input_is_400_naming_the_field_and_changes_nothing(wifi_api, body, field, caplog):
    backend, session, url, _ = wifi_api
    caplog.set_level(logging.INFO)
    async with session.post(url + "/api/wifi", data=body, headers={**AUTH, "Content-Type": "application/json"}) as r:
        assert r.status == 400
        answer = await r.json()
    assert answer["field"] == field and answer["error"] == "bad_request"
    assert backend.profile is None and backend.connects == 0
    logged = log_output(caplog)
    for secret in ("s3cr3t", "longenough", "Zq" * 32, "Zq9x"):
        assert secret not in json.dumps(answer) and secret not in logged


async def test_64_hex_digits_are_a_valid_raw_key(wifi_api):
    backend, session, url, _ = wifi_api
    async with session.post(url + "/api/wifi", json={"ssid": "home", "psk": "ab" * 32}, headers=AUTH) as r:
        assert r.status == 202


async def test_writes_need_the_token(wifi_api):
    backend, session, url, _ = wifi_api
    async with session.post(url + "/api/wifi", json={"ssid": "home", "psk": PSK}) as r:
        assert r.status == 401 and (await r.json())["field"] == "header.Authorization"
    async with session.post(url + "/api/wifi", json={"ssid": "home", "psk": PSK}, headers={"Authorization": "Bearer nope"}) as r:
        assert r.status == 401
    backend.profile = ("kept", "secret-kept")
    async with session.delete(url + "/api/wifi") as r:
        assert r.status == 401
    assert backend.profile == ("kept", "secret-kept") and backend.connects == 0


async def test_oversize_body_is_413(wifi_api):
    backend, session, url, _ = wifi_api
    async with session.post(url + "/api/wifi", data=b"{" + b" " * 5000 + b"}", headers=AUTH) as r:
        assert r.status == 413
    assert backend.profile is None


async def test_psk_never_logged(wifi_api, caplog):
    backend, session, url, _ = wifi_api
    caplog.set_level(logging.DEBUG)
    async with session.post(url + "/api/wifi", json={"ssid": "home", "psk": PSK}, headers=AUTH) as r:
        assert r.status == 202
    logged = log_output(caplog)
    assert '"ssid": "home"' in logged and PSK not in logged


class HangingBackend(FakeWifiBackend):
    async def status(self) -> WifiStatus:
        import asyncio

        await asyncio.Event().wait()
        raise AssertionError("unreachable")


async def test_a_hanging_network_manager_is_503_not_a_hang():
    app = web.Application()
    add_wifi_routes(app, HangingBackend(), token=TOKEN, timeout=0.2)
    runner, url = await serve(app)
    try:
        async with aiohttp.ClientSession() as session, session.get(url + "/api/wifi") as r:
            assert r.status == 503 and r.headers["Retry-After"]
    finally:
        await runner.cleanup()


async def test_routes_use_the_api_apps_own_token():
    from actors.api.app import build_app

    app = build_app(object(), token=TOKEN)
    backend = FakeWifiBackend()
    add_wifi_routes(app, backend)
    runner, url = await serve(app)
    try:
        async with aiohttp.ClientSession() as session:
            async with session.post(url + "/api/wifi", json={"ssid": "home", "psk": PSK}) as r:
                assert r.status == 401
            async with session.post(url + "/api/wifi", json={"ssid": "home", "psk": PSK}, headers=AUTH) as r:
                assert r.status == 202
    finally:
        await runner.cleanup()
    assert backend.profile == ("home", PSK)


async def test_provisioning_through_the_tunnel(wifi_api):
    backend, session, url, port = wifi_api
    window = {"open": True}
    tunnel = Tunnel(HttpDispatcher(port), lambda: window["open"], lambda: TOKEN)

    async def send(raw: bytes):
        result = tunnel.feed(raw)
        return parse_page(result if isinstance(result, bytes) else await tunnel.handle(result))

    token = json.loads((await send(b"GET /api/token EGWTTP/1.1\r\n\r\n")).body)["token"]
    body = json.dumps({"ssid": "home", "psk": PSK}).encode()
    page = await send(b"POST /api/wifi EGWTTP/1.1\r\nAuthorization: Bearer %s\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s" % (token.encode(), len(body), body))
    assert page.status == 202 and PSK.encode() not in page.raw
    assert backend.profile == ("home", PSK)
    page = await send(b"GET /api/wifi EGWTTP/1.1\r\n\r\n")
    assert page.status == 200 and b'"connected"' in page.raw
    window["open"] = False
    page = await send(b"DELETE /api/wifi EGWTTP/1.1\r\nAuthorization: Bearer %s\r\n\r\n" % token.encode())
    assert page.status == 403 and backend.profile == ("home", PSK)
    await tunnel.dispatcher.close()
