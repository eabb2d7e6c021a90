"""Wi-Fi provisioning: the interface to the network stack.

A fresh gateway has no network; the installer's phone sends the Wi-Fi credentials
over the BLE tunnel to the REST API's `/api/wifi` endpoints (`actors.api.provisioning`:
route table, schema validation, token check), which drive a `WifiBackend`:
`actors.wifi.networkmanager.NetworkManagerWifi` (NetworkManager over D-Bus) on a gateway,
`FakeWifiBackend` in tests and demos.

The pre-shared key is write-only: backends never log it, never return it, never put
it in an error message, and never pass it on a command line (NetworkManager gets it
inside a D-Bus message).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class WifiStatus:
    state: str  # connected, connecting, disconnected, unavailable
    ssid: str | None = None
    signal: int | None = None  # percent
    ip4: str | None = None
    provisioned: bool = False  # the gateway's own Wi-Fi profile exists


@dataclass(frozen=True)
class WifiNetwork:
    ssid: str
    signal: int
    secured: bool


class WifiError(Exception):
    """The network stack refused or failed; the message is safe to show (no secrets)."""


class WifiUnavailableError(WifiError):
    """No network manager or no Wi-Fi device: provisioning cannot work on this box."""


class WifiBackend(Protocol):
    async def status(self) -> WifiStatus: ...

    async def scan(self) -> list[WifiNetwork]: ...

    async def connect(self, ssid: str, psk: str | None) -> WifiStatus:
        """Store the network as the gateway's Wi-Fi profile and start connecting (do not wait)."""
        ...

    async def forget(self) -> bool:
        """Remove the gateway's Wi-Fi profile; False when there was none."""
        ...


class FakeWifiBackend:
    """An in-memory network stack: visible networks, one provisioned profile."""

    def __init__(self, networks: list[WifiNetwork] | None = None) -> None:
        self.networks = list(networks or [])
        self.profile: tuple[str, str | None] | None = None  # (ssid, psk) as the network stack would store it
        self.connects = 0

    async def status(self) -> WifiStatus:
        if self.profile is None:
            return WifiStatus("disconnected")
        ssid = self.profile[0]
        visible = next((n for n in self.networks if n.ssid == ssid), None)
        if visible is None:
            return WifiStatus("connecting", ssid, provisioned=True)
        return WifiStatus("connected", ssid, visible.signal, "192.168.1.50", provisioned=True)

    async def scan(self) -> list[WifiNetwork]:
        return list(self.networks)

    async def connect(self, ssid: str, psk: str | None) -> WifiStatus:
        self.profile = (ssid, psk)
        self.connects += 1
        return await self.status()

    async def forget(self) -> bool:
        existed = self.profile is not None
        self.profile = None
        return existed
