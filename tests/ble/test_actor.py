"""The BLE actor under the real supervisor, in a real multiprocess actor system.

The fake BlueZ and the small API run in a background asyncio loop of the test
process; the BLE actor runs in its own forked process and reaches them over the
private D-Bus daemon and loopback HTTP.
"""

from __future__ import annotations

import asyncio
import os
import signal

import pytest
from aiohttp import web

from actors.ble.actor import BleSettings, ble_child_spec, ble_children
from actors.ble.messages import BleStatus, CloseProvisioningWindow, GetBleStatus, OpenProvisioningWindow
from actors.ble.server import REQUEST_UUID, RESPONSE_UUID
from actors.ble.setup_code import read_setup_code, setup_code_path
from actors.ble.window import window_path
from supervisor.messages import GetTree, Lookup, LookupResult, Tree
from supervisor.spec import ChildSpec, Heartbeat, SupervisorSpec
from tests.ble.conftest import BackgroundLoop, SmallApi, parse_page
from tests.conftest import wait_until
from tests.ble.dbus_daemon import PrivateDbusDaemon
from tests.ble.fake_bluez import Central, FakeBlueZ
from tests.ble.fake_nm import FakeNetworkManager, Network
from supervisor.embedded import start_root


@pytest.fixture
def actor_system(multiproc_system):
    return multiproc_system


@pytest.fixture
def world():
    """Private bus with fake BlueZ, and the small API, served from a background loop."""
    daemon = PrivateDbusDaemon()
    loop = BackgroundLoop()
    bluez = FakeBlueZ(daemon.address)
    api = SmallApi()

    async def start():
        await bluez.start()
        runner = web.AppRunner(api.app())
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        api.port = runner.addresses[0][1]
        return runner

    runner = loop.run(start())
    yield daemon, loop, bluez, api
    loop.run(runner.cleanup())
    loop.run(bluez.stop())
    loop.stop()
    daemon.stop()


def start_tree(asys, settings: BleSettings):
    spec = SupervisorSpec(children=(ChildSpec("ble", "actors.ble.actor.BleActor", settings),), heartbeat=Heartbeat(0.5, 5.0))
    root = start_root(asys, spec, 10)
    return root


def ble_record(asys, root) -> dict:
    """The ble child's record from a fresh GetTree (skipping SubtreeReports the root pushes to us)."""
    reply = asys.ask(root, GetTree(), 5)
    while reply is not None and not isinstance(reply, Tree):
        reply = asys.listen(5)
    assert isinstance(reply, Tree), "no tree from the root supervisor"
    return next(r for r in reply.records if r["name"] == "ble")


def ble_address(asys, root):
    reply = asys.ask(root, Lookup("ble"), 5)
    assert isinstance(reply, LookupResult) and reply.address is not None
    return reply.address


def test_no_bluez_reports_unavailable_and_retries_without_crash_looping(actor_system, tmp_path):
    daemon = PrivateDbusDaemon()  # a bus with nobody owning org.bluez
    try:
        settings = BleSettings(data_dir=str(tmp_path), api_port=1, dbus_address=daemon.address, retry_min_s=0.1, retry_max_s=0.4)
        root = start_tree(actor_system, settings)
        wait_until(lambda: ble_record(actor_system, root)["state"] == "unavailable")
        first = ble_record(actor_system, root)
        assert first["info"]["reason"] == "BlueZ (org.bluez) is not running"
        records = []

        def retried_enough() -> bool:
            records.append(ble_record(actor_system, root))
            return records[-1]["state"] == "unavailable" and records[-1]["info"].get("attempts", 0) >= 4

        wait_until(retried_enough)
        record = records[-1]
        assert record["restarts"] == 0 and record["pid"] == first["pid"]
        assert record["info"]["retry_in_s"] == 0.4  # the backoff grew to its cap
        status = actor_system.ask(ble_address(actor_system, root), GetBleStatus(), 5)
        assert isinstance(status, BleStatus) and status.state == "unavailable" and not status.advertising
    finally:
        daemon.stop()


def phone(loop: BackgroundLoop, bluez: FakeBlueZ):
    """A phone connected to the application registered now; returns its exchange(raw) -> Page."""
    central = Central(bluez, next(iter(bluez.applications.values())))
    loop.run(central.start_notify(RESPONSE_UUID))

    def exchange(raw: bytes):
        async def go():
            for i in range(0, len(raw), 20):
                await central.write(REQUEST_UUID, raw[i : i + 20])
            return parse_page(await asyncio.wait_for(central.notifications.get(), 10))

        return loop.run(go())

    return exchange


def test_actor_serves_the_tunnel_and_follows_the_window(world, actor_system, tmp_path):
    daemon, loop, bluez, api = world
    api.token = "k" * 43
    (tmp_path / "api-token").write_text(api.token + "\n")
    settings = BleSettings(gateway_name="egw-actor", data_dir=str(tmp_path), api_port=api.port, dbus_address=daemon.address, window_minutes=10, wifi_backend="none")
    root = start_tree(actor_system, settings)
    loop.run(bluez.wait_for(lambda: bluez.applications and bluez.advertisements))  # first start, no Wi-Fi: the window is open
    wait_until(lambda: ble_record(actor_system, root)["info"].get("advertising") is True)
    assert ble_record(actor_system, root)["state"] == "running"
    (advert,) = bluez.advertisements.values()
    assert advert.properties["LocalName"] == "egw-actor"
    exchange = phone(loop, bluez)
    code = read_setup_code(setup_code_path(tmp_path))  # created by the actor; `egw ble code` prints it

    page = exchange(b"GET /api/token EGWTTP/1.1\r\n\r\n")
    assert page.status == 403 and api.token.encode() not in page.raw
    post = b"POST /api/wifi EGWTTP/1.1\r\nSetup-Code: " + code.encode() + b"\r\nContent-Length: 2\r\n\r\n{}"
    assert exchange(post.replace(code.encode(), b"2222-2222-2222")).status == 401 and api.count == 0
    assert exchange(post).status == 201 and api.count == 1

    ble = ble_address(actor_system, root)
    status = actor_system.ask(ble, CloseProvisioningWindow(), 5)
    assert isinstance(status, BleStatus) and not status.window_open
    loop.run(bluez.wait_for(lambda: not bluez.advertisements))
    assert exchange(post).status == 403 and api.count == 1
    assert exchange(b"GET /api/health EGWTTP/1.1\r\n\r\n").status == 200  # reads still work

    status = actor_system.ask(ble, OpenProvisioningWindow(minutes=0.01), 5)  # 0.6 s
    assert status.window_open
    loop.run(bluez.wait_for(lambda: bluez.advertisements))
    loop.run(bluez.wait_for(lambda: not bluez.advertisements))  # closed again by its timer
    wait_until(lambda: ble_record(actor_system, root)["info"].get("window_open") is False)
    assert ble_record(actor_system, root)["restarts"] == 0


def ble_status(asys, root) -> BleStatus:
    """The BLE actor's own answer (the tree record may still show an older state)."""
    status = asys.ask(ble_address(asys, root), GetBleStatus(), 5)
    assert isinstance(status, BleStatus)
    return status


def kill_ble_and_wait_for_its_restart(asys, root) -> BleStatus:
    """SIGKILL the BLE actor's process; return the new actor's status once its GATT server runs."""
    before = ble_record(asys, root)
    os.kill(before["pid"], signal.SIGKILL)

    def back():
        record = ble_record(asys, root)
        return record["restarts"] == before["restarts"] + 1 and record["pid"] not in (None, before["pid"])

    wait_until(back, timeout=20)
    wait_until(lambda: ble_status(asys, root).state == "running")
    return ble_status(asys, root)


def test_a_sigkilled_actor_resumes_an_open_window_and_never_reopens_a_closed_one(world, actor_system, tmp_path):
    daemon, loop, bluez, api = world
    api.token = "k" * 43
    (tmp_path / "api-token").write_text(api.token + "\n")
    settings = BleSettings(data_dir=str(tmp_path), api_port=api.port, dbus_address=daemon.address, window_minutes=10, wifi_backend="none", retry_min_s=0.2)
    root = start_tree(actor_system, settings)
    wait_until(lambda: ble_status(actor_system, root).advertising)
    code = read_setup_code(setup_code_path(tmp_path)).encode()
    remaining = ble_status(actor_system, root).window_remaining_s

    # open: the restarted actor resumes the same window, it does not start a new one
    status = kill_ble_and_wait_for_its_restart(actor_system, root)
    assert status.window_open and status.advertising and status.window_remaining_s <= remaining
    loop.run(bluez.wait_for(lambda: bluez.advertisements))

    status = actor_system.ask(ble_address(actor_system, root), CloseProvisioningWindow(), 5)
    assert not status.window_open
    loop.run(bluez.wait_for(lambda: not bluez.advertisements))

    # closed: after the SIGKILL the window stays closed, and a phone that knows the code still cannot write
    status = kill_ble_and_wait_for_its_restart(actor_system, root)
    loop.run(bluez.wait_for(lambda: bluez.applications))
    assert not status.window_open and not status.advertising
    assert bluez.advertisements == {}
    page = phone(loop, bluez)(b"DELETE /api/wifi EGWTTP/1.1\r\nSetup-Code: " + code + b"\r\n\r\n")
    assert page.status == 403 and page.body == b"writes need the provisioning window open"
    assert window_path(tmp_path).exists()


def test_first_start_with_wifi_provisioned_keeps_the_window_closed(world, actor_system, tmp_path):
    daemon, loop, bluez, api = world
    nm = FakeNetworkManager(daemon.address, [Network("home", 70, "x" * 12)])
    loop.run(nm.start())
    try:
        nm.add_profile("egw-wifi", "home")  # set up by other means (an image with Wi-Fi configured)
        settings = BleSettings(data_dir=str(tmp_path), api_port=api.port, dbus_address=daemon.address, wifi_backend="networkmanager", wifi_dbus_address=daemon.address)
        root = start_tree(actor_system, settings)
        wait_until(lambda: ble_status(actor_system, root).state == "running")
        status = ble_status(actor_system, root)
        assert not status.window_open and not status.advertising and bluez.advertisements == {}
        assert window_path(tmp_path).exists()  # decided once: a later start restores it
    finally:
        loop.run(nm.stop())


def test_child_spec_from_gateway_settings():
    values = {"gateway_name": "egw-1234", "data_dir": "/data", "api_port": 8081, "ble_enabled": True, "ble_window_minutes": 5}
    spec = ble_child_spec(values)
    assert (spec.name, spec.actor, spec.restart) == ("ble", "actors.ble.actor.BleActor", "permanent")
    assert spec.config == BleSettings(gateway_name="egw-1234", data_dir="/data", api_port=8081, window_minutes=5.0)
    wifi = ble_child_spec({**values, "wifi_backend": "none", "wifi_dbus_address": "unix:path=/x"}).config
    assert (wifi.wifi_backend, wifi.wifi_dbus_address) == ("none", "unix:path=/x")
    assert ble_children({**values, "ble_enabled": False}) == []
    assert BleSettings(mtu=517).page_size == 512 and BleSettings(mtu=23).page_size == 128


def test_bluez_restart_makes_the_actor_unavailable_then_registers_again(world, actor_system, tmp_path):
    daemon, loop, bluez, api = world
    settings = BleSettings(data_dir=str(tmp_path), api_port=api.port, dbus_address=daemon.address, retry_min_s=0.2, retry_max_s=0.2)
    root = start_tree(actor_system, settings)
    loop.run(bluez.wait_for(lambda: bluez.applications))
    wait_until(lambda: ble_record(actor_system, root)["info"].get("advertising") is True)
    pid = ble_record(actor_system, root)["pid"]
    loop.run(bluez.stop())  # bluetoothd goes away: our registration is gone with it
    wait_until(lambda: ble_record(actor_system, root)["info"].get("reason") == "BlueZ (org.bluez) went away")
    restarted = FakeBlueZ(daemon.address)
    loop.run(restarted.start())
    try:
        loop.run(restarted.wait_for(lambda: restarted.applications and restarted.advertisements))
        wait_until(lambda: ble_record(actor_system, root)["state"] == "running")
        record = ble_record(actor_system, root)
        assert record["restarts"] == 0 and record["pid"] == pid
    finally:
        loop.run(restarted.stop())
