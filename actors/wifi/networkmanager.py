"""`WifiBackend` over NetworkManager's D-Bus API (system bus).

Why D-Bus rather than `nmcli`: the pre-shared key travels inside a D-Bus message to
NetworkManager, never through a command line that any local user can read in
/proc, and every call is asynchronous, so the API's event loop never blocks.

The gateway owns exactly one connection profile, `egw-wifi`: provisioning replaces
it, forgetting deletes it; profiles the owner created by other means are left alone.
"""

from __future__ import annotations

from typing import Any

from dbus_next import BusType, Message, MessageType, Variant
from dbus_next.aio import MessageBus

from actors.wifi.backend import WifiError, WifiNetwork, WifiStatus, WifiUnavailableError
from supervisor.redaction import REDACTED

NM = "org.freedesktop.NetworkManager"
NM_PATH = "/org/freedesktop/NetworkManager"
SETTINGS_PATH = "/org/freedesktop/NetworkManager/Settings"
DEVICE = "org.freedesktop.NetworkManager.Device"
WIRELESS = "org.freedesktop.NetworkManager.Device.Wireless"
ACCESS_POINT = "org.freedesktop.NetworkManager.AccessPoint"
PROFILE_ID = "egw-wifi"

DEVICE_TYPE_WIFI = 2
STATE_ACTIVATED = 100
STATES_CONNECTING = range(40, 100)  # prepare .. secondaries
AP_FLAGS_PRIVACY = 0x1


class NetworkManagerWifi:
    """Talks to NetworkManager on the system bus (or on `bus_address`, for tests)."""

    def __init__(self, bus_address: str | None = None) -> None:
        self.bus_address = bus_address
        self._bus: MessageBus | None = None

    # ------------------------------------------------------------ WifiBackend
    async def status(self) -> WifiStatus:
        device = await self._wifi_device()
        provisioned = bool(await self._own_profiles())
        state = await self._get(device, DEVICE, "State")
        if state == STATE_ACTIVATED:
            ssid, signal = None, None
            ap = await self._get(device, WIRELESS, "ActiveAccessPoint")
            if ap and ap != "/":
                ssid = bytes(await self._get(ap, ACCESS_POINT, "Ssid")).decode("utf-8", "replace")
                signal = int(await self._get(ap, ACCESS_POINT, "Strength"))
            return WifiStatus("connected", ssid, signal, await self._ip4(device), provisioned)
        if state in STATES_CONNECTING:
            return WifiStatus("connecting", provisioned=provisioned)
        return WifiStatus("disconnected", provisioned=provisioned)

    async def scan(self) -> list[WifiNetwork]:
        device = await self._wifi_device()
        try:
            await self._call(device, WIRELESS, "RequestScan", "a{sv}", [{}])
        except WifiError:
            pass  # "scan already running" or rate-limited: the last results are still useful
        (paths,) = await self._call(device, WIRELESS, "GetAllAccessPoints")
        networks = []
        for path in paths:
            ssid = bytes(await self._get(path, ACCESS_POINT, "Ssid")).decode("utf-8", "replace")
            strength = int(await self._get(path, ACCESS_POINT, "Strength"))
            flags = int(await self._get(path, ACCESS_POINT, "Flags"))
            networks.append(WifiNetwork(ssid, strength, bool(flags & AP_FLAGS_PRIVACY)))
        return networks

    async def connect(self, ssid: str, psk: str | None) -> WifiStatus:
        device = await self._wifi_device()
        await self.forget()
        settings: dict[str, dict[str, Variant]] = {
            "connection": {"id": Variant("s", PROFILE_ID), "type": Variant("s", "802-11-wireless"), "autoconnect": Variant("b", True)},
            "802-11-wireless": {"ssid": Variant("ay", ssid.encode()), "mode": Variant("s", "infrastructure")},
            "ipv4": {"method": Variant("s", "auto")},
            "ipv6": {"method": Variant("s", "auto")},
        }
        if psk is not None:
            settings["802-11-wireless-security"] = {"key-mgmt": Variant("s", "wpa-psk"), "psk": Variant("s", psk)}
        await self._call(NM_PATH, NM, "AddAndActivateConnection", "a{sa{sv}}oo", [settings, device, "/"], secret=psk)
        return await self.status()

    async def forget(self) -> bool:
        profiles = await self._own_profiles()
        for path in profiles:
            await self._call(path, "org.freedesktop.NetworkManager.Settings.Connection", "Delete")
        return bool(profiles)

    async def close(self) -> None:
        if self._bus is not None:
            self._bus.disconnect()
            self._bus = None

    # ------------------------------------------------------------ helpers
    async def _connection(self) -> MessageBus:
        if self._bus is None or not self._bus.connected:
            try:
                if self.bus_address is not None:
                    self._bus = await MessageBus(bus_address=self.bus_address).connect()
                else:
                    self._bus = await MessageBus(bus_type=BusType.SYSTEM).connect()
            except (OSError, ValueError) as exc:
                raise WifiUnavailableError(f"D-Bus system bus not reachable ({type(exc).__name__})") from None
        return self._bus

    async def _call(self, path: str, interface: str, member: str, signature: str = "", body: list | None = None, secret: str | None = None) -> list:
        bus = await self._connection()
        reply = await bus.call(Message(destination=NM, path=path, interface=interface, member=member, signature=signature, body=body or []))
        if reply.message_type == MessageType.ERROR:
            text = str(reply.body[0]) if reply.body else ""
            if secret:
                text = text.replace(secret, REDACTED)  # NetworkManager never echoes it, but be certain
            if reply.error_name in ("org.freedesktop.DBus.Error.ServiceUnknown", "org.freedesktop.DBus.Error.NameHasNoOwner"):
                raise WifiUnavailableError("NetworkManager is not running")
            raise WifiError(f"NetworkManager: {text or reply.error_name}"[:200])
        return reply.body

    async def _get(self, path: str, interface: str, prop: str) -> Any:
        (variant,) = await self._call(path, "org.freedesktop.DBus.Properties", "Get", "ss", [interface, prop])
        return variant.value

    async def _wifi_device(self) -> str:
        (devices,) = await self._call(NM_PATH, NM, "GetDevices")
        for path in devices:
            if await self._get(path, DEVICE, "DeviceType") == DEVICE_TYPE_WIFI:
                return path
        raise WifiUnavailableError("no Wi-Fi device")

    async def _own_profiles(self) -> list[str]:
        (paths,) = await self._call(SETTINGS_PATH, "org.freedesktop.NetworkManager.Settings", "ListConnections")
        own = []
        for path in paths:
            (settings,) = await self._call(path, "org.freedesktop.NetworkManager.Settings.Connection", "GetSettings")
            if settings.get("connection", {}).get("id", Variant("s", "")).value == PROFILE_ID:
                own.append(path)
        return own

    async def _ip4(self, device: str) -> str | None:
        config = await self._get(device, DEVICE, "Ip4Config")
        if not config or config == "/":
            return None
        addresses = await self._get(config, "org.freedesktop.NetworkManager.IP4Config", "AddressData")
        return addresses[0]["address"].value if addresses else None
