"""A fake NetworkManager on a private bus: one Wi-Fi device, some access points, profiles.

It implements the calls `NetworkManagerWifi` makes, with NetworkManager's object paths,
interfaces and property types. A connection activates when its SSID is visible and its
PSK matches the one the fake's access point expects; like NetworkManager, GetSettings
never returns secrets.
"""

from dataclasses import dataclass

from dbus_next import BusType, DBusError, Variant
from dbus_next.aio import MessageBus
from dbus_next.constants import PropertyAccess
from dbus_next.service import ServiceInterface, dbus_property
from dbus_next.service import method as dbus_method

NM_PATH = "/org/freedesktop/NetworkManager"
DEVICE_PATH = "/org/freedesktop/NetworkManager/Devices/3"
ETH_PATH = "/org/freedesktop/NetworkManager/Devices/1"
IP4_PATH = "/org/freedesktop/NetworkManager/IP4Config/7"

# D-Bus signatures. dbus-next reads a signature from the value of an annotation, so this module
# must not use `from __future__ import annotations` (the annotations would be these names instead);
# names rather than string literals also keep ruff from reading "a{sv}" as a forward reference.
DBusByte = "y"
DBusUInt32 = "u"
DBusBytes = "ay"
DBusObjectPath = "o"
ObjectPaths = "ao"
Options = "a{sv}"
ConnectionSettings = "a{sa{sv}}"
PathPair = "oo"
AddressData = "aa{sv}"


@dataclass
class Network:
    ssid: str
    strength: int
    psk: str | None  # None: open network


class AccessPoint(ServiceInterface):
    def __init__(self, network: Network) -> None:
        super().__init__("org.freedesktop.NetworkManager.AccessPoint")
        self.network = network

    @dbus_property(access=PropertyAccess.READ)
    def Ssid(self) -> DBusBytes:  # noqa: N802 (D-Bus API)
        return self.network.ssid.encode()

    @dbus_property(access=PropertyAccess.READ)
    def Strength(self) -> DBusByte:  # noqa: N802 (D-Bus API)
        return self.network.strength

    @dbus_property(access=PropertyAccess.READ)
    def Flags(self) -> DBusUInt32:  # noqa: N802 (D-Bus API)
        return 1 if self.network.psk else 0


class Device(ServiceInterface):
    def __init__(self, device_type: int) -> None:
        super().__init__("org.freedesktop.NetworkManager.Device")
        self.device_type = device_type
        self.state = 30  # disconnected

    @dbus_property(access=PropertyAccess.READ)
    def DeviceType(self) -> DBusUInt32:  # noqa: N802 (D-Bus API)
        return self.device_type

    @dbus_property(access=PropertyAccess.READ)
    def State(self) -> DBusUInt32:  # noqa: N802 (D-Bus API)
        return self.state

    @dbus_property(access=PropertyAccess.READ)
    def Ip4Config(self) -> DBusObjectPath:  # noqa: N802 (D-Bus API)
        return IP4_PATH if self.state == 100 else "/"


class Wireless(ServiceInterface):
    def __init__(self, nm: "FakeNetworkManager") -> None:
        super().__init__("org.freedesktop.NetworkManager.Device.Wireless")
        self.nm = nm
        self.active = "/"

    @dbus_method()
    def RequestScan(self, options: Options):  # noqa: N802 (D-Bus API)
        self.nm.scans += 1

    @dbus_method()
    def GetAllAccessPoints(self) -> ObjectPaths:  # noqa: N802 (D-Bus API)
        return list(self.nm.ap_paths)

    @dbus_property(access=PropertyAccess.READ)
    def ActiveAccessPoint(self) -> DBusObjectPath:  # noqa: N802 (D-Bus API)
        return self.active


class Ip4Config(ServiceInterface):
    def __init__(self) -> None:
        super().__init__("org.freedesktop.NetworkManager.IP4Config")

    @dbus_property(access=PropertyAccess.READ)
    def AddressData(self) -> AddressData:  # noqa: N802 (D-Bus API)
        return [{"address": Variant("s", "192.168.4.23"), "prefix": Variant("u", 24)}]


class Connection(ServiceInterface):
    def __init__(self, nm: "FakeNetworkManager", path: str, settings: dict) -> None:
        super().__init__("org.freedesktop.NetworkManager.Settings.Connection")
        self.nm = nm
        self.path = path
        self.settings = settings

    @dbus_method()
    def GetSettings(self) -> ConnectionSettings:  # noqa: N802 (D-Bus API)
        return {group: {k: v for k, v in values.items() if k != "psk"} for group, values in self.settings.items()}

    @dbus_method()
    def Delete(self):  # noqa: N802 (D-Bus API)
        self.nm.delete(self.path)


class Settings(ServiceInterface):
    def __init__(self, nm: "FakeNetworkManager") -> None:
        super().__init__("org.freedesktop.NetworkManager.Settings")
        self.nm = nm

    @dbus_method()
    def ListConnections(self) -> ObjectPaths:  # noqa: N802 (D-Bus API)
        return list(self.nm.connections)


class Manager(ServiceInterface):
    def __init__(self, nm: "FakeNetworkManager") -> None:
        super().__init__("org.freedesktop.NetworkManager")
        self.nm = nm

    @dbus_method()
    def GetDevices(self) -> ObjectPaths:  # noqa: N802 (D-Bus API)
        return [ETH_PATH, DEVICE_PATH]

    @dbus_method()
    def AddAndActivateConnection(self, connection: ConnectionSettings, device: DBusObjectPath, specific_object: DBusObjectPath) -> PathPair:  # noqa: N802 (D-Bus API)
        return [self.nm.add(connection, device), "/org/freedesktop/NetworkManager/ActiveConnection/1"]


class FakeNetworkManager:
    def __init__(self, address: str, networks: list[Network]) -> None:
        self.address = address
        self.networks = networks
        self.bus: MessageBus | None = None
        self.wifi = Device(2)
        self.wireless = Wireless(self)
        self.ap_paths: list[str] = []
        self.connections: dict[str, Connection] = {}
        self.added: list[dict] = []  # every AddAndActivateConnection's settings, secrets included
        self.scans = 0
        self.refuse: str | None = None  # when set, AddAndActivateConnection fails with this message
        self._next = 1

    async def start(self) -> None:
        self.bus = await MessageBus(bus_address=self.address, bus_type=BusType.SESSION).connect()
        self.bus.export(NM_PATH, Manager(self))
        self.bus.export(NM_PATH + "/Settings", Settings(self))
        self.bus.export(ETH_PATH, Device(1))
        self.bus.export(DEVICE_PATH, self.wifi)
        self.bus.export(DEVICE_PATH, self.wireless)
        self.bus.export(IP4_PATH, Ip4Config())
        for i, network in enumerate(self.networks):
            path = f"/org/freedesktop/NetworkManager/AccessPoint/{i + 10}"
            self.bus.export(path, AccessPoint(network))
            self.ap_paths.append(path)
        await self.bus.request_name("org.freedesktop.NetworkManager")

    async def stop(self) -> None:
        if self.bus is not None:
            self.bus.disconnect()

    def add_profile(self, profile_id: str, ssid: str) -> str:
        settings = {"connection": {"id": Variant("s", profile_id), "type": Variant("s", "802-11-wireless")}, "802-11-wireless": {"ssid": Variant("ay", ssid.encode())}}
        return self._export_connection(settings)

    def _export_connection(self, settings: dict) -> str:
        path = f"/org/freedesktop/NetworkManager/Settings/{self._next}"
        self._next += 1
        connection = Connection(self, path, settings)
        self.connections[path] = connection
        assert self.bus is not None
        self.bus.export(path, connection)
        return path

    def add(self, settings: dict, device: str) -> str:
        if self.refuse is not None:
            raise DBusError("org.freedesktop.NetworkManager.Settings.Connection.InvalidProperty", self.refuse)
        if device != DEVICE_PATH:
            raise DBusError("org.freedesktop.NetworkManager.UnknownDevice", "device not found")
        self.added.append(settings)
        path = self._export_connection(settings)
        ssid = bytes(settings["802-11-wireless"]["ssid"].value).decode()
        psk = settings.get("802-11-wireless-security", {}).get("psk")
        match = next((i for i, n in enumerate(self.networks) if n.ssid == ssid), None)
        if match is not None and (psk.value if psk else None) == self.networks[match].psk:
            self.wifi.state, self.wireless.active = 100, self.ap_paths[match]
        else:
            self.wifi.state, self.wireless.active = 50, "/"  # keeps trying (wrong key or out of range)
        return path

    def delete(self, path: str) -> None:
        connection = self.connections.pop(path)
        assert self.bus is not None
        self.bus.unexport(path, connection)
        self.wifi.state, self.wireless.active = 30, "/"
