"""The GATT server: bless (BlueZ over D-Bus) hosting the tunnel's two characteristics.

A plain asyncio class, so that it can be tested against a fake BlueZ without any
actor machinery; `actors.ble.actor.BleActor` runs it in its asyncio loop.

bless calls the read and write callbacks synchronously from its D-Bus message
handler, inside the loop. They therefore only do cheap, bounded work: a write is
fed to the tunnel's reassembler (pure, bounded buffer) and a complete request is
queued for a worker task; the response page is published to the response
characteristic (value + notification) when the worker is done. A full queue gets
an immediate 503 page instead of unbounded waiting.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from actors.ble.tunnel import Tunnel, TunnelRequest, error_response, render_page

SERVICE_UUID = "0fda92b2-44a2-4af2-84f5-fa682baa2b8d"
REQUEST_UUID = "51ff12bb-3ed8-46e5-b4f9-d64e2fec021b"
RESPONSE_UUID = "51ff12bb-3ed8-46e5-b4f9-d64e2fec021c"


class BleUnavailableError(Exception):
    """No BlueZ, no adapter, or BlueZ refused us: BLE provisioning cannot run right now."""


def _make_bless_server(name: str, loop: asyncio.AbstractEventLoop, bus_address: str | None, adapter: str | None) -> Any:
    """A bless BlueZ server, on the system bus or on `bus_address` (a test's private bus)."""
    from bless.backends.bluezdbus.dbus.application import BlueZGattApplication
    from bless.backends.bluezdbus.dbus.utils import get_adapter
    from bless.backends.bluezdbus.server import BlessServerBlueZDBus
    from dbus_next.aio import MessageBus

    class BlessServerOnBus(BlessServerBlueZDBus):
        """bless's own setup(), except for the bus it connects to."""

        async def setup(self) -> None:
            self.bus = await MessageBus(bus_address=bus_address).connect()
            self.app = BlueZGattApplication(self.name, "org.bluez", self.bus)
            self.app.Read = self.read
            self.app.Write = self.write
            self.app.StartNotify = lambda _: None
            self.app.StopNotify = lambda _: None
            self.adapter = await get_adapter(self.bus, self._adapter)

    if bus_address is None:
        return BlessServerBlueZDBus(name, loop=loop, adapter=adapter)
    return BlessServerOnBus(name, loop=loop, adapter=adapter)


class BleServer:
    """Advertises `name` and serves the EGWTTP tunnel over GATT."""

    def __init__(
        self,
        name: str,
        tunnel: Tunnel,
        bus_address: str | None = None,
        adapter: str | None = None,
        queue_size: int = 4,
        start_timeout: float = 15.0,
        stop_timeout: float = 2.0,
        log: Any = None,
    ) -> None:
        self.name = name
        self.tunnel = tunnel
        self.bus_address = bus_address
        self.adapter = adapter
        self.start_timeout = start_timeout
        self.stop_timeout = stop_timeout
        self.log = log
        self.advertising = False
        self.running = False
        self.requests_served = 0
        self._bless: Any = None
        self._queue: asyncio.Queue[TunnelRequest] = asyncio.Queue(maxsize=queue_size)
        self._worker: asyncio.Task | None = None
        self._response = b""
        self._watcher: asyncio.Task | None = None
        self.on_lost: Callable[[str], None] | None = None  # called in the loop when BlueZ goes away

    # ------------------------------------------------------------ lifecycle
    async def start(self, advertise: bool = True) -> None:
        """Register the GATT application (and advertise); BleUnavailableError when BlueZ is not there."""
        from bless import GATTAttributePermissions, GATTCharacteristicProperties

        try:
            async with asyncio.timeout(self.start_timeout):
                self._bless = _make_bless_server(self.name, asyncio.get_running_loop(), self.bus_address, self.adapter)
                self._bless.read_request_func = self._on_read
                self._bless.write_request_func = self._on_write
                await self._bless.add_new_service(SERVICE_UUID)
                await self._bless.add_new_characteristic(SERVICE_UUID, REQUEST_UUID, GATTCharacteristicProperties.write, None, GATTAttributePermissions.writeable)
                await self._bless.add_new_characteristic(
                    SERVICE_UUID, RESPONSE_UUID, GATTCharacteristicProperties.read | GATTCharacteristicProperties.notify, None, GATTAttributePermissions.readable
                )
                await self._register(advertise)
                await self._watch_bluez()
        except Exception as exc:  # noqa: BLE001 - whatever BlueZ/D-Bus raise, provisioning is unavailable
            await self._disconnect()
            raise BleUnavailableError(_describe(exc)) from exc
        self.running = True
        self._worker = asyncio.get_running_loop().create_task(self._serve())

    async def _watch_bluez(self) -> None:
        """Notice BlueZ restarting (our registration dies with it) or the bus going away."""
        from dbus_next import Message, MessageType

        bus = self._bless.bus
        rule = "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged',arg0='org.bluez'"
        await bus.call(Message(destination="org.freedesktop.DBus", path="/org/freedesktop/DBus", interface="org.freedesktop.DBus", member="AddMatch", signature="s", body=[rule]))

        def on_message(msg: Any) -> None:
            if msg.message_type == MessageType.SIGNAL and msg.member == "NameOwnerChanged" and msg.body and msg.body[0] == "org.bluez" and not msg.body[2]:
                asyncio.get_running_loop().create_task(self._lost("BlueZ (org.bluez) went away"))

        bus.add_message_handler(on_message)
        self._watcher = asyncio.get_running_loop().create_task(self._watch_disconnect(bus))

    async def _watch_disconnect(self, bus: Any) -> None:
        try:
            await bus.wait_for_disconnect()
        except Exception:  # noqa: BLE001 - an EOF from a vanished daemon is a disconnect too
            pass
        if self.running and self._bless is not None and self._bless.bus is bus:
            await self._lost("D-Bus connection lost")

    async def _lost(self, reason: str) -> None:
        """BlueZ or the bus is gone: drop everything; the owner decides when to start again."""
        if not self.running:
            return
        self.running = False
        self.advertising = False
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        self.tunnel.assembler.reset()
        self._log("BLE server lost BlueZ", reason=reason)
        await self._disconnect()
        if self.on_lost is not None:
            self.on_lost(reason)

    async def _register(self, advertise: bool) -> None:
        bless = self._bless
        bless.bus.export(bless.app.path, bless.app)
        await bless.app.register(bless.adapter)
        if advertise:
            await self.start_advertising()

    async def start_advertising(self) -> None:
        if not self.advertising:
            await self._bless.app.start_advertising(self._bless.adapter)
            self.advertising = True

    async def stop_advertising(self) -> None:
        if self.advertising:
            self.advertising = False
            await self._bless.app.stop_advertising(self._bless.adapter)

    async def stop(self) -> None:
        """Unregister from BlueZ and leave the bus; safe to call in any state."""
        if self._worker is not None:
            self._worker.cancel()
            self._worker = None
        if self.running:
            self.running = False  # first: the disconnect below is not a loss
            try:
                async with asyncio.timeout(self.stop_timeout):
                    await self.stop_advertising()
                    await self._bless.app.unregister(self._bless.adapter)
            except Exception as exc:  # noqa: BLE001 - BlueZ may be gone already; we are leaving anyway
                self._log("unregister failed", error=_describe(exc))
        await self._disconnect()

    async def _disconnect(self) -> None:
        bus = getattr(self._bless, "bus", None)
        setup = getattr(self._bless, "setup_task", None)
        if setup is not None and not setup.done():
            setup.cancel()
        if bus is not None:
            bus.disconnect()
            try:
                await asyncio.wait_for(bus.wait_for_disconnect(), 2.0)
            except Exception:  # noqa: BLE001 - EOF on a daemon that went away is expected here
                pass
        self._bless = None

    # ------------------------------------------------------------ GATT callbacks (sync, in the loop)
    def _on_read(self, characteristic: Any, **_: Any) -> bytearray:
        return bytearray(self._response)

    def _on_write(self, characteristic: Any, value: Any, **_: Any) -> None:
        if str(characteristic.uuid).lower() != REQUEST_UUID:
            return
        try:
            result = self.tunnel.feed(bytes(value))
        except Exception as exc:  # noqa: BLE001 - a bug must not take the GATT server down
            self._log("tunnel feed failed", error=_describe(exc))
            result = render_page(error_response(500, "internal error"), 0, self.tunnel.limits.page_size)
        if isinstance(result, bytes):
            self.publish(result)
        elif result is not None:
            try:
                self._queue.put_nowait(result)
            except asyncio.QueueFull:
                self.publish(render_page(error_response(503, "busy: too many requests queued", result.method, result.path), 0, self.tunnel.limits.page_size))

    async def _serve(self) -> None:
        while True:
            request = await self._queue.get()
            try:
                page = await self.tunnel.handle(request)
            except Exception as exc:  # noqa: BLE001 - one failing request must not stop the worker
                self._log("request failed", method=request.method, path=request.path, error=_describe(exc))
                page = render_page(error_response(500, "internal error", request.method, request.path), 0, self.tunnel.limits.page_size)
            self.requests_served += 1
            self.publish(page)

    def publish(self, page: bytes) -> None:
        """Make `page` the response value and notify subscribed centrals."""
        self._response = page
        if self._bless is None:
            return
        characteristic = self._bless.get_characteristic(RESPONSE_UUID)
        characteristic.value = bytearray(page)
        self._bless.update_value(SERVICE_UUID, RESPONSE_UUID)

    def _log(self, msg: str, **fields: Any) -> None:
        if self.log is not None:
            self.log.warning(msg, **fields)


def _describe(exc: BaseException) -> str:
    """A reason an installer can act on (shown in the actor tree and /api/health)."""
    text = str(exc) or type(exc).__name__
    if isinstance(exc, TimeoutError):
        return "BlueZ did not answer in time"
    if isinstance(exc, (FileNotFoundError, ConnectionError)):
        return f"D-Bus system bus not reachable ({text})"[:200]
    if "org.bluez" in text and ("not provided" in text or "ServiceUnknown" in text):
        return "BlueZ (org.bluez) is not running"
    if "adapter" in text.lower():
        return f"no Bluetooth adapter: {text}"[:200]
    return f"{type(exc).__name__}: {text}"[:200]
