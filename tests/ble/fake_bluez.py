"""A fake `org.bluez` on a private bus, and a test-side GATT central.

It implements the part of BlueZ's D-Bus API that a peripheral application uses:
`org.bluez.Adapter1` (Alias, Powered, Address), `org.bluez.GattManager1`
(Register/UnregisterApplication) and `org.bluez.LEAdvertisingManager1`
(Register/UnregisterAdvertisement, ActiveInstances). Like the real daemon, it reads
the registered application's object tree with `GetManagedObjects` and the
advertisement's properties with `GetAll`, so the gateway's real bless code runs
unchanged against it.

`Central` then plays the phone: it calls the registered characteristic objects'
`WriteValue` / `ReadValue` / `StartNotify` and records `PropertiesChanged` signals,
exactly as BlueZ would on behalf of a connected device.
"""

import asyncio
from dataclasses import dataclass, field
from typing import Any

from dbus_next import BusType, DBusError, Message, MessageType, Variant
from dbus_next.aio import MessageBus
from dbus_next.constants import PropertyAccess
from dbus_next.service import ServiceInterface, dbus_property
from dbus_next.service import method as dbus_method

ADAPTER_PATH = "/org/bluez/hci0"

# D-Bus signatures. dbus-next reads a signature from the value of an annotation, so this module
# must not use `from __future__ import annotations` (the annotations would be these names instead);
# names rather than string literals also keep ruff from reading "a{sv}" as a forward reference.
DBusBool = "b"
DBusByte = "y"
DBusStr = "s"
DBusObjectPath = "o"
DBusDict = "a{sv}"


@dataclass
class RegisteredCharacteristic:
    path: str
    uuid: str
    flags: list[str]


@dataclass
class RegisteredApplication:
    owner: str  # unique bus name of the process that registered it
    path: str
    services: dict[str, str] = field(default_factory=dict)  # object path -> UUID
    characteristics: dict[str, RegisteredCharacteristic] = field(default_factory=dict)  # UUID -> char


@dataclass
class RegisteredAdvertisement:
    owner: str
    path: str
    properties: dict[str, Any]


class Adapter(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.bluez.Adapter1")
        self._alias = "fake-adapter"
        self.alias_history: list[str] = []

    @dbus_property(access=PropertyAccess.READ)
    def Address(self) -> DBusStr:  # noqa: N802 (D-Bus API)
        return "00:11:22:33:44:55"

    @dbus_property(access=PropertyAccess.READ)
    def Powered(self) -> DBusBool:  # noqa: N802 (D-Bus API)
        return True

    @dbus_property()
    def Alias(self) -> DBusStr:  # noqa: N802 (D-Bus API)
        return self._alias

    @Alias.setter
    def Alias(self, value: DBusStr) -> None:  # noqa: N802 (D-Bus API)
        self._alias = value
        self.alias_history.append(value)


class GattManager(ServiceInterface):
    def __init__(self, bluez: "FakeBlueZ") -> None:
        super().__init__("org.bluez.GattManager1")
        self._bluez = bluez

    @dbus_method()
    async def RegisterApplication(self, application: DBusObjectPath, options: DBusDict):  # noqa: N802 (D-Bus API)
        sender = self._bluez.owners[application]
        app = await self._bluez.read_application(sender, application)
        if not app.characteristics:
            raise DBusError("org.bluez.Error.InvalidArguments", "application has no characteristics")
        self._bluez.applications[application] = app
        self._bluez.changed.set()

    @dbus_method()
    def UnregisterApplication(self, application: DBusObjectPath):  # noqa: N802 (D-Bus API)
        if self._bluez.applications.pop(application, None) is None:
            raise DBusError("org.bluez.Error.DoesNotExist", "application not registered")
        self._bluez.changed.set()


class AdvertisingManager(ServiceInterface):
    def __init__(self, bluez: "FakeBlueZ") -> None:
        super().__init__("org.bluez.LEAdvertisingManager1")
        self._bluez = bluez

    @dbus_method()
    async def RegisterAdvertisement(self, advertisement: DBusObjectPath, options: DBusDict):  # noqa: N802 (D-Bus API)
        sender = self._bluez.owners[advertisement]
        props = await self._bluez.call(sender, advertisement, "org.freedesktop.DBus.Properties", "GetAll", "s", ["org.bluez.LEAdvertisement1"])
        values = {key: variant.value for key, variant in props[0].items()}
        self._bluez.advertisements[advertisement] = RegisteredAdvertisement(sender, advertisement, values)
        self.emit_properties_changed({"ActiveInstances": len(self._bluez.advertisements)})
        self._bluez.changed.set()

    @dbus_method()
    def UnregisterAdvertisement(self, advertisement: DBusObjectPath):  # noqa: N802 (D-Bus API)
        if self._bluez.advertisements.pop(advertisement, None) is None:
            raise DBusError("org.bluez.Error.DoesNotExist", "advertisement not registered")
        self._bluez.changed.set()

    @dbus_property(access=PropertyAccess.READ)
    def ActiveInstances(self) -> DBusByte:  # noqa: N802 (D-Bus API)
        return len(self._bluez.advertisements)

    @dbus_property(access=PropertyAccess.READ)
    def SupportedInstances(self) -> DBusByte:  # noqa: N802 (D-Bus API)
        return 5


class _Root(ServiceInterface):
    """Something exported at "/" so that introspection shows the ObjectManager there, as with BlueZ."""

    def __init__(self) -> None:
        super().__init__("org.bluez.FakeRoot1")


class FakeBlueZ:
    """Owns `org.bluez` on the given bus and records what applications register."""

    def __init__(self, address: str) -> None:
        self.address = address
        self.bus: MessageBus | None = None
        self.applications: dict[str, RegisteredApplication] = {}
        self.advertisements: dict[str, RegisteredAdvertisement] = {}
        self.adapter = Adapter()
        self.changed = asyncio.Event()
        self.owners: dict[str, str] = {}  # registered object path -> unique name of its owner

    async def start(self) -> None:
        self.bus = await MessageBus(bus_address=self.address, bus_type=BusType.SESSION).connect()
        # dbus-next hides a method's caller; BlueZ needs it to call the registered objects back.
        self.bus.add_message_handler(self._note_sender)
        self.bus.export("/", _Root())
        self.bus.export(ADAPTER_PATH, self.adapter)
        self.bus.export(ADAPTER_PATH, GattManager(self))
        self.bus.export(ADAPTER_PATH, AdvertisingManager(self))
        await self.bus.request_name("org.bluez")
        rule = "type='signal',sender='org.freedesktop.DBus',interface='org.freedesktop.DBus',member='NameOwnerChanged'"
        await self.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s", [rule])

    def _note_sender(self, msg: Message) -> None:
        if msg.message_type == MessageType.METHOD_CALL and msg.member in ("RegisterApplication", "RegisterAdvertisement") and msg.body:
            self.owners[msg.body[0]] = msg.sender
        if msg.message_type == MessageType.SIGNAL and msg.member == "NameOwnerChanged" and msg.body and msg.body[0].startswith(":") and not msg.body[2]:
            self._forget_owner(msg.body[0])

    def _forget_owner(self, owner: str) -> None:
        """Like bluetoothd: a process that left the bus (or was killed) takes its registrations along."""
        for registry in (self.applications, self.advertisements):
            for path in [p for p, r in registry.items() if r.owner == owner]:
                del registry[path]
                self.changed.set()

    async def stop(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()
            await self.bus.wait_for_disconnect()

    async def call(self, destination: str, path: str, interface: str, member: str, signature: str = "", body: list | None = None) -> list:
        assert self.bus is not None
        reply = await self.bus.call(Message(destination=destination, path=path, interface=interface, member=member, signature=signature, body=body or []))
        if reply.message_type == MessageType.ERROR:
            raise DBusError(reply.error_name, str(reply.body[0]) if reply.body else "")
        return reply.body

    async def read_application(self, owner: str, path: str) -> RegisteredApplication:
        """What BlueZ does on RegisterApplication: walk the app's ObjectManager tree."""
        (objects,) = await self.call(owner, path, "org.freedesktop.DBus.ObjectManager", "GetManagedObjects")
        app = RegisteredApplication(owner, path)
        for obj_path, interfaces in objects.items():
            if "org.bluez.GattService1" in interfaces:
                app.services[obj_path] = interfaces["org.bluez.GattService1"]["UUID"].value
            if "org.bluez.GattCharacteristic1" in interfaces:
                props = interfaces["org.bluez.GattCharacteristic1"]
                uuid = props["UUID"].value
                app.characteristics[uuid] = RegisteredCharacteristic(obj_path, uuid, list(props["Flags"].value))
        return app

    async def wait_for(self, predicate, timeout: float = 10.0) -> None:
        """Wait until `predicate()` holds, re-checking whenever registrations change."""
        async with asyncio.timeout(timeout):
            while not predicate():
                self.changed.clear()
                await self.changed.wait()


class Central:
    """The phone's side of a GATT connection, driven through the application's D-Bus objects."""

    def __init__(self, bluez: FakeBlueZ, app: RegisteredApplication) -> None:
        self.bluez = bluez
        self.app = app
        self.notifications: asyncio.Queue[bytes] = asyncio.Queue()
        self._watching: str | None = None

    def char(self, uuid: str) -> RegisteredCharacteristic:
        return self.app.characteristics[uuid]

    async def write(self, uuid: str, value: bytes) -> None:
        await self.bluez.call(self.app.owner, self.char(uuid).path, "org.bluez.GattCharacteristic1", "WriteValue", "aya{sv}", [value, {"device": Variant("o", ADAPTER_PATH + "/dev_AA")}])

    async def read(self, uuid: str) -> bytes:
        (value,) = await self.bluez.call(self.app.owner, self.char(uuid).path, "org.bluez.GattCharacteristic1", "ReadValue", "a{sv}", [{}])
        return bytes(value)

    async def start_notify(self, uuid: str) -> None:
        path = self.char(uuid).path
        assert self.bluez.bus is not None
        match = f"type='signal',sender='{self.app.owner}',path='{path}',interface='org.freedesktop.DBus.Properties',member='PropertiesChanged'"
        await self.bluez.call("org.freedesktop.DBus", "/org/freedesktop/DBus", "org.freedesktop.DBus", "AddMatch", "s", [match])
        self._watching = path
        self.bluez.bus.add_message_handler(self._on_signal)
        await self.bluez.call(self.app.owner, path, "org.bluez.GattCharacteristic1", "StartNotify")

    def _on_signal(self, msg: Message) -> None:
        if msg.message_type != MessageType.SIGNAL or msg.member != "PropertiesChanged" or msg.path != self._watching:
            return
        _iface, changed, _invalidated = msg.body
        if "Value" in changed:
            self.notifications.put_nowait(bytes(changed["Value"].value))
