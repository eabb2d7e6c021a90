"""End to end: a phone on BLE, through the real BLE actor, into the real REST API actor.

The gateway tree is the real one: the root supervisor with the `api` and `ble` child
specs built from a gateway configuration, in a multiprocess actor system. The BLE
actor runs the real bless code against a fake BlueZ on a private D-Bus daemon, and the
API drives a fake NetworkManager on the same bus through its real D-Bus backend. The
test plays the phone through the fake BlueZ: GATT writes to the request
characteristic, notifications from the response characteristic.
"""

from __future__ import annotations

import asyncio
import json
import re
import urllib.error
import urllib.request

import pytest

from actors.api.actor import api_children
from storage.api_token import read_token, token_path
from actors.ble.actor import ble_children
from actors.ble.server import REQUEST_UUID, RESPONSE_UUID
from supervisor.messages import GetTree, Tree
from supervisor.spec import Heartbeat, SupervisorSpec
from tests.ble.conftest import BackgroundLoop, Page, parse_page
from tests.ble.dbus_daemon import PrivateDbusDaemon
from tests.ble.fake_bluez import Central, FakeBlueZ
from tests.ble.fake_nm import FakeNetworkManager, Network
from tests.conftest import ask_typed, free_port, wait_until
from supervisor.cli import main
from supervisor.embedded import start_root

PSK = "Tr0ub4dor&3-horse"
WRITE_SIZE = 182  # one ATT write at the default MTU of 185


def http(port: int, path: str, method: str = "GET", body: dict | None = None, token: str | None = None) -> tuple[int, dict, bytes]:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", data=json.dumps(body).encode() if body is not None else None, method=method)
    request.add_header("Content-Type", "application/json")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    try:
        with urllib.request.urlopen(request, timeout=5) as response:
            return response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def serving(port: int) -> bool:
    try:
        return http(port, "/api/hello")[0] == 200
    except OSError:
        return False


class Phone:
    """A connected phone: writes requests in MTU-sized pieces and pages through responses."""

    def __init__(self, loop: BackgroundLoop, central: Central) -> None:
        self.loop, self.central = loop, central

    def exchange(self, raw: bytes) -> Page:
        async def go() -> bytes:
            for i in range(0, len(raw), WRITE_SIZE):
                await self.central.write(REQUEST_UUID, raw[i : i + WRITE_SIZE])
            return await asyncio.wait_for(self.central.notifications.get(), 10)

        return parse_page(self.loop.run(go()))

    def request(self, method: str, path: str, body: bytes = b"", token: str | None = None, code: str | None = None) -> tuple[Page, bytes, int]:
        """The first page, the whole body (fetched page by page with Offset), and how many pages it took."""

        def raw(offset: int) -> bytes:
            head = f"{method} {path} EGWTTP/1.1\r\n"
            if token:
                head += f"Authorization: Bearer {token}\r\n"
            if code:
                head += f"Setup-Code: {code}\r\n"
            if body or method in ("POST", "PUT", "PATCH"):
                head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
            if offset:
                head += f"Offset: {offset}\r\n"
            return head.encode() + b"\r\n" + body

        first = self.exchange(raw(0))
        total = int(first.headers["content-length"])
        received, pages = first.body, 1
        while len(received) < total:
            page = self.exchange(raw(len(received)))
            assert page.status == first.status and int(page.headers["offset"]) == len(received), page.raw[:120]
            assert page.body, "a page past the start must carry body bytes"
            received += page.body
            pages += 1
        assert len(received) == total
        return first, received, pages


def requests_counted(port: int, method: str, route: str, status: int) -> float:
    """The API's own count of answered requests (from /metrics), by route and status."""
    text = http(port, "/metrics")[2].decode()
    for line in text.splitlines():
        if line.startswith("egw_api_requests_total{") and f'method="{method}"' in line and f'route="{route}"' in line and f'status="{status}"' in line:
            return float(line.rsplit(" ", 1)[1])
    return 0.0


def start_gateway(asys, config: dict):
    spec = SupervisorSpec(children=(*api_children(config), *ble_children(config)), heartbeat=Heartbeat(0.5, 5.0))
    root = start_root(asys, spec, 10)
    wait_until(lambda: serving(config["api_port"]), timeout=15, what="the API serving")
    return root


def tree_record(asys, root, name: str) -> dict:
    return next(r for r in ask_typed(asys, root, GetTree(), Tree).records if r["name"] == name)


@pytest.fixture
def radio_world():
    """A private bus with a fake BlueZ and a fake NetworkManager, served from a background loop."""
    daemon = PrivateDbusDaemon()
    loop = BackgroundLoop()
    bluez = FakeBlueZ(daemon.address)
    nm = FakeNetworkManager(daemon.address, [Network("home", 72, PSK), Network("cafe", 40, None)])
    loop.run(bluez.start())
    loop.run(nm.start())
    yield daemon, loop, bluez, nm
    loop.run(nm.stop())
    loop.run(bluez.stop())
    loop.stop()
    daemon.stop()


def test_phone_on_ble_reaches_the_real_api(multiproc_system, radio_world, tmp_path, capsys):
    daemon, loop, bluez, nm = radio_world
    data_dir = tmp_path / "data"
    data_dir.mkdir()
    port = free_port()
    config = {"data_dir": str(data_dir), "api_host": "127.0.0.1", "api_port": port, "gateway_name": "egw-e2e",
              "ble_dbus_address": daemon.address, "ble_window_minutes": 10, "wifi_dbus_address": daemon.address}
    root = start_gateway(multiproc_system, config)
    token = read_token(token_path(data_dir))
    loop.run(bluez.wait_for(lambda: bluez.applications and bluez.advertisements))
    (advert,) = bluez.advertisements.values()
    assert advert.properties["LocalName"] == "egw-e2e"
    central = Central(bluez, next(iter(bluez.applications.values())))
    loop.run(central.start_notify(RESPONSE_UUID))
    phone = Phone(loop, central)

    assert main(["ble", "code", "--data-dir", str(data_dir)]) == 0  # what the installer reads off the label
    code = capsys.readouterr().out.strip()

    # a read: the API's own health answer, not the tunnel's
    page, body, pages = phone.request("GET", "/api/health")
    assert page.status == 200 and page.headers["content-type"] == "application/json"
    assert json.loads(body)["version"] == json.loads(http(port, "/api/health")[2])["version"]

    # the token never travels over BLE, and nothing beyond Wi-Fi set-up and status is reachable
    page, body, _ = phone.request("GET", "/api/token")
    assert page.status == 403 and token.encode() not in page.raw + body
    for method, path in (("GET", "/api/openapi.json"), ("GET", "/api/config"), ("POST", "/api/devices"), ("POST", "/api/chargers/CP1/reset")):
        payload = b"{}" if method == "POST" else b""
        assert phone.request(method, path, payload, token=token, code=code)[0].status == 403
    assert requests_counted(port, "POST", "/api/devices", 401) + requests_counted(port, "POST", "/api/devices", 400) == 0  # never reached the API

    # a write without the setup code (even with the API token) is refused by the tunnel
    credentials = json.dumps({"ssid": "home", "psk": PSK}).encode()
    page, body, _ = phone.request("POST", "/api/wifi", credentials, token=token)
    assert page.status == 401 and body == b"send Setup-Code (on the gateway's label)" and nm.added == []
    page, body, _ = phone.request("POST", "/api/wifi", credentials, code="2222-2222-2222")
    assert page.status == 401 and body == b"wrong setup code" and nm.added == []

    # Wi-Fi provisioned over BLE with the code from `egw ble code`: executed exactly once although its answer takes several pages
    page, body, pages = phone.request("POST", "/api/wifi", credentials, code=code)
    assert page.status == 202 and pages >= 2, (pages, body)
    status = json.loads(body)
    assert status["state"] == "connected" and status["ssid"] == "home" and PSK.encode() not in page.raw + body
    assert len(nm.added) == 1 and nm.added[0]["802-11-wireless-security"]["psk"].value == PSK
    assert requests_counted(port, "POST", "/api/wifi", 202) == 1
    page, body, _ = phone.request("GET", "/api/wifi/scan")
    assert [n["ssid"] for n in json.loads(body)["networks"]] == ["home", "cafe"]

    # the window, as the REST API shows it
    status_code, _, raw = http(port, "/api/ble")
    ble = json.loads(raw)
    assert status_code == 200 and ble["state"] == "running" and ble["advertising"] and ble["window_open"] and 0 < ble["window_remaining_s"] <= 600
    assert ble["requests_served"] >= 10

    # closed over the LAN: advertising stops, writes are refused over BLE even with the code, reads still served
    status_code, _, raw = http(port, "/api/ble/window", "DELETE", token=token)
    assert status_code == 200 and json.loads(raw)["window_open"] is False
    loop.run(bluez.wait_for(lambda: not bluez.advertisements))
    page, body, _ = phone.request("DELETE", "/api/wifi", code=code)
    assert page.status == 403 and b"window" in body
    assert nm.connections and requests_counted(port, "DELETE", "/api/wifi", 200) == 0  # never reached the API
    assert phone.request("POST", "/api/ble/window", b'{"minutes": 5}', code=code)[0].status == 403  # BLE cannot reopen it
    assert phone.request("GET", "/api/health")[0].status == 200

    # reopened over the LAN by `egw ble window open` (with the token from the data dir): advertising again, and the phone may write
    assert main(["ble", "window", "open", "--minutes", "5", "--data-dir", str(data_dir), "--api-port", str(port)]) == 0
    assert 290 < json.loads(capsys.readouterr().out)["window_remaining_s"] <= 300
    loop.run(bluez.wait_for(lambda: bluez.advertisements))
    page, body, _ = phone.request("DELETE", "/api/wifi", code=code)
    assert page.status == 200 and json.loads(body)["removed"] is True and nm.connections == {}
    assert tree_record(multiproc_system, root, "ble")["restarts"] == 0 and tree_record(multiproc_system, root, "api")["restarts"] == 0


def test_without_bluez_the_api_reports_ble_unavailable_with_its_reason(multiproc_system, tmp_path):
    daemon = PrivateDbusDaemon()  # a bus nobody serves org.bluez (or NetworkManager) on
    try:
        data_dir = tmp_path / "data"
        data_dir.mkdir()
        port = free_port()
        config = {"data_dir": str(data_dir), "api_host": "127.0.0.1", "api_port": port, "ble_dbus_address": daemon.address, "wifi_dbus_address": daemon.address}
        root = start_gateway(multiproc_system, config)
        reason = "BlueZ (org.bluez) is not running"
        # hardware absent by design is reported, not counted as degradation
        health = wait_until(lambda: (h := json.loads(http(port, "/api/health")[2])).get("hardware", {}).get("ble", {}).get("state") == "unavailable" and h,
                            timeout=10, what="BLE reported unavailable in /api/health")
        assert health["status"] == "ok" and health["reasons"] == [] and reason in json.dumps(health["hardware"]["ble"])
        actors = {r["name"]: r for r in json.loads(http(port, "/api/actors")[2])["actors"]}
        assert actors["ble"]["state"] == "unavailable" and actors["ble"]["info"]["reason"] == reason
        assert actors["api"]["state"] == "running"
        code, _, raw = http(port, "/api/ble")
        assert code == 200 and json.loads(raw)["state"] == "unavailable" and json.loads(raw)["reason"] == reason
        token = read_token(token_path(data_dir))
        code, headers, raw = http(port, "/api/ble/window", "POST", {"minutes": 5}, token=token)
        assert code == 503 and json.loads(raw)["error"] == "ble_unavailable" and reason in json.loads(raw)["message"]
        assert int(headers["Retry-After"]) >= 1
        code, _, raw = http(port, "/api/wifi")
        assert code == 503 and json.loads(raw)["error"] == "wifi_unavailable"
        assert tree_record(multiproc_system, root, "ble")["restarts"] == 0
    finally:
        daemon.stop()


def test_api_without_ble_says_it_is_not_enabled(multiproc_system, tmp_path):
    port = free_port()
    config = {"data_dir": str(tmp_path), "api_host": "127.0.0.1", "api_port": port, "ble_enabled": False, "wifi_backend": "none"}
    start_gateway(multiproc_system, config)
    code, _, raw = http(port, "/api/ble")
    assert code == 501 and "ble_enabled" in json.loads(raw)["message"]
    assert re.search(r'"status": "ok"', http(port, "/api/health")[2].decode())
