"""The real bless GATT server against a fake BlueZ on a private bus, driven as a phone would."""

from __future__ import annotations

import asyncio
import json

import pytest

from actors.ble.dispatch import HttpDispatcher
from actors.ble.server import REQUEST_UUID, RESPONSE_UUID, SERVICE_UUID, BleServer, BleUnavailableError
from actors.ble.setup_code import SetupCodeGuard
from actors.ble.tunnel import BLE_ENDPOINTS, Limits, Tunnel
from tests.ble.conftest import parse_page
from tests.conftest import wait_until_async
from tests.ble.fake_bluez import Central

CODE = "ABCD-EFGH-JKMN"


@pytest.fixture
async def gateway(dbus_daemon, fake_bluez, aiohttp_api):
    """A running BleServer tunnelling to the small real API; yields (server, central, api, window)."""
    window = {"open": True}
    dispatcher = HttpDispatcher(aiohttp_api.port)
    endpoints = BLE_ENDPOINTS | {("GET", "/api/echo"), ("GET", "/api/big"), ("POST", "/api/count")}
    tunnel = Tunnel(dispatcher, lambda: window["open"], lambda: aiohttp_api.token, SetupCodeGuard(CODE), Limits(page_size=182), endpoints=endpoints)
    server = BleServer("egw-test gw", tunnel, bus_address=dbus_daemon.address)
    await server.start()
    await fake_bluez.wait_for(lambda: fake_bluez.applications and fake_bluez.advertisements)
    central = Central(fake_bluez, next(iter(fake_bluez.applications.values())))
    await central.start_notify(RESPONSE_UUID)
    yield server, central, aiohttp_api, window
    await server.stop()
    await dispatcher.close()


async def exchange(central: Central, raw: bytes, mtu_payload: int = 20):
    """Write `raw` in MTU-sized writes; return the notified page, checked against a read."""
    for i in range(0, len(raw), mtu_payload):
        await central.write(REQUEST_UUID, raw[i : i + mtu_payload])
    notified = await asyncio.wait_for(central.notifications.get(), 10)
    assert await central.read(RESPONSE_UUID) == notified
    assert central.notifications.empty(), "one request, one response page"
    return parse_page(notified)


async def test_registers_service_and_advertises_the_gateway_name(gateway, fake_bluez):
    (app,) = fake_bluez.applications.values()
    assert set(app.services.values()) == {SERVICE_UUID}
    assert app.characteristics[REQUEST_UUID].flags == ["write"]
    assert sorted(app.characteristics[RESPONSE_UUID].flags) == ["notify", "read"]
    (advert,) = fake_bluez.advertisements.values()
    assert advert.properties["LocalName"] == "egw-test gw"
    assert advert.properties["ServiceUUIDs"] == [SERVICE_UUID]
    assert fake_bluez.adapter.alias_history[-1] == "egw-test gw"


async def test_get_over_gatt_reaches_the_api(gateway):
    server, central, api, _ = gateway
    page = await exchange(central, b"GET /api/echo EGWTTP/1.1\r\n\r\n")
    assert page.status == 200 and json.loads(page.body) == {"echo": "hello"}


async def test_large_response_is_paged_through(gateway):
    server, central, api, _ = gateway
    collected = b""
    total = None
    while total is None or len(collected) < total:
        page = await exchange(central, b"GET /api/big EGWTTP/1.1\r\nOffset: %d\r\n\r\n" % len(collected))
        assert page.status == 200 and len(page.raw) <= 182
        total = int(page.headers["content-length"])
        collected += page.body
    assert collected == api.big and total > 3 * 182


async def test_post_with_paged_response_executes_once(gateway):
    server, central, api, _ = gateway
    request = b"POST /api/count EGWTTP/1.1\r\nSetup-Code: ABCD-EFGH-JKMN\r\nContent-Type: application/json\r\nContent-Length: 2\r\nOffset: %d\r\n\r\n{}"
    collected = b""
    pages = 0
    while True:
        page = await exchange(central, request % len(collected))
        assert page.status == 201
        collected += page.body
        pages += 1
        if len(collected) >= int(page.headers["content-length"]):
            break
    assert pages > 1
    assert json.loads(collected)["count"] == 1
    assert api.count == 1


@pytest.mark.parametrize(
    ("raw", "status"),
    [
        (b"\x13\x37 not a request at all", 400),
        (b"POST /api/count EGWTTP/1.1\r\nContent-Length: 99999\r\n\r\n", 413),
        (b"GET /api/echo EGWTTP/1.1\r\nX-Name: \xc3\x28\r\n\r\n", 400),
        (b"FETCH /api/echo EGWTTP/1.1\r\n\r\n", 501),
        (b"POST /api/count EGWTTP/1.1\r\n\r\n", 411),
    ],
    ids=["garbage", "oversize", "invalid-utf8", "unknown-method", "missing-content-length"],
)
async def test_malformed_writes_get_errors_and_the_server_stays_up(gateway, raw, status):
    server, central, api, _ = gateway
    page = await exchange(central, raw, mtu_payload=len(raw))
    assert page.status == status
    assert api.count == 0
    page = await exchange(central, b"GET /api/echo EGWTTP/1.1\r\n\r\n")
    assert page.status == 200


async def test_no_token_over_gatt_and_writes_only_with_the_code_inside_the_window(gateway):
    server, central, api, window = gateway
    page = await exchange(central, b"GET /api/token EGWTTP/1.1\r\n\r\n")
    assert page.status == 403 and api.token.encode() not in page.raw
    post = b"POST /api/wifi EGWTTP/1.1\r\n%sContent-Length: 2\r\n\r\n{}"
    assert (await exchange(central, post % b"")).status == 401 and api.count == 0
    assert (await exchange(central, post % b"Setup-Code: ABCD-EFGH-JKMN\r\n")).status == 201 and api.count == 1
    window["open"] = False
    page = await exchange(central, post % b"Setup-Code: ABCD-EFGH-JKMN\r\n")
    assert page.status == 403 and api.count == 1


async def test_advertising_stops_and_restarts(gateway, fake_bluez):
    server, central, api, _ = gateway
    await server.stop_advertising()
    assert fake_bluez.advertisements == {}
    await server.start_advertising()
    assert len(fake_bluez.advertisements) == 1


async def test_bluez_without_an_adapter_is_unavailable(dbus_daemon, fake_bluez):
    fake_bluez.bus.unexport("/org/bluez/hci0")
    server = BleServer("egw", Tunnel(HttpDispatcher(1), lambda: True, lambda: None, SetupCodeGuard(CODE)), bus_address=dbus_daemon.address)
    with pytest.raises(BleUnavailableError, match="no Bluetooth adapter"):
        await server.start()


async def test_stop_unregisters_the_application(dbus_daemon, fake_bluez, aiohttp_api):
    server = BleServer("egw", Tunnel(HttpDispatcher(aiohttp_api.port), lambda: True, lambda: None, SetupCodeGuard(CODE)), bus_address=dbus_daemon.address)
    await server.start()
    await fake_bluez.wait_for(lambda: fake_bluez.applications and fake_bluez.advertisements)
    assert server.running and server.advertising
    await server.stop()
    await fake_bluez.wait_for(lambda: not fake_bluez.applications and not fake_bluez.advertisements)
    assert fake_bluez.applications == {} and fake_bluez.advertisements == {}  # a phone no longer sees the gateway
    assert not server.running and not server.advertising
    await server.start()  # and it can register again on the same bus
    await fake_bluez.wait_for(lambda: fake_bluez.applications and fake_bluez.advertisements)
    (app,) = fake_bluez.applications.values()
    assert set(app.services.values()) == {SERVICE_UUID}
    await server.stop()


async def test_no_bluez_on_the_bus_is_unavailable(dbus_daemon):
    server = BleServer("egw", Tunnel(HttpDispatcher(1), lambda: True, lambda: None, SetupCodeGuard(CODE)), bus_address=dbus_daemon.address)
    with pytest.raises(BleUnavailableError) as info:
        await server.start()
    assert str(info.value) == "BlueZ (org.bluez) is not running"
    assert not server.running


async def test_no_bus_at_all_is_unavailable(tmp_path):
    server = BleServer("egw", Tunnel(HttpDispatcher(1), lambda: True, lambda: None, SetupCodeGuard(CODE)), bus_address=f"unix:path={tmp_path}/nothing")
    with pytest.raises(BleUnavailableError, match="D-Bus system bus not reachable"):
        await server.start()


async def test_bluez_going_away_is_noticed_and_reported(dbus_daemon, fake_bluez, aiohttp_api):
    server = BleServer("egw", Tunnel(HttpDispatcher(aiohttp_api.port), lambda: True, lambda: None, SetupCodeGuard(CODE)), bus_address=dbus_daemon.address)
    lost: list[str] = []
    server.on_lost = lost.append
    await server.start()
    await fake_bluez.wait_for(lambda: fake_bluez.applications)
    await fake_bluez.stop()
    await wait_until_async(lambda: lost, timeout=10)
    assert lost == ["BlueZ (org.bluez) went away"] and not server.running and not server.advertising
    # it can come back once BlueZ is there again
    from tests.ble.fake_bluez import FakeBlueZ

    again = FakeBlueZ(dbus_daemon.address)
    await again.start()
    await server.start()
    await again.wait_for(lambda: again.applications and again.advertisements)
    await server.stop()
    await again.stop()


async def test_stop_is_not_reported_as_a_loss(dbus_daemon, fake_bluez, aiohttp_api):
    server = BleServer("egw", Tunnel(HttpDispatcher(aiohttp_api.port), lambda: True, lambda: None, SetupCodeGuard(CODE)), bus_address=dbus_daemon.address)
    lost: list[str] = []
    server.on_lost = lost.append
    await server.start()
    watcher = server._watcher
    await server.stop()
    await asyncio.wait_for(watcher, 5)  # the bus watcher has seen the disconnect and finished
    assert lost == []


class GatedDispatcher:
    """Holds every request until `release` is set: a slow API."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started = 0

    async def dispatch(self, method, path, headers, body):
        from actors.ble.tunnel import DispatchResult

        self.started += 1
        await self.release.wait()
        return DispatchResult(200, {"Content-Type": "application/json"}, b'{"path": "%s"}' % path.encode())


async def test_a_slow_api_never_blocks_the_gatt_server_and_the_queue_is_bounded(dbus_daemon, fake_bluez):
    dispatcher = GatedDispatcher()
    server = BleServer("egw", Tunnel(dispatcher, lambda: True, lambda: None, SetupCodeGuard(CODE), endpoints=frozenset(("GET", f"/api/{i}") for i in range(4))), bus_address=dbus_daemon.address, queue_size=2)
    await server.start()
    await fake_bluez.wait_for(lambda: fake_bluez.applications)
    central = Central(fake_bluez, next(iter(fake_bluez.applications.values())))
    await central.start_notify(RESPONSE_UUID)
    # one request in progress, two queued: each write returns at once although the API hangs
    for i in range(3):
        await asyncio.wait_for(central.write(REQUEST_UUID, b"GET /api/%d EGWTTP/1.1\r\n\r\n" % i), 2)
    await wait_until_async(lambda: dispatcher.started == 1, timeout=10)
    await central.write(REQUEST_UUID, b"GET /api/3 EGWTTP/1.1\r\n\r\n")
    busy = parse_page(await asyncio.wait_for(central.notifications.get(), 5))
    assert busy.status == 503 and busy.headers["location"] == "/api/3"
    assert parse_page(await central.read(RESPONSE_UUID)).status == 503  # reads are answered meanwhile too
    dispatcher.release.set()
    served = [parse_page(await asyncio.wait_for(central.notifications.get(), 5)) for _ in range(3)]
    assert [json.loads(p.body)["path"] for p in served] == ["/api/0", "/api/1", "/api/2"]
    await server.stop()
