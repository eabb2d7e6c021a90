"""The BLE provisioning actor: a supervised home for the GATT server.

It runs `BleServer` in its asyncio loop (`AsyncioActor`) and owns the provisioning
window. Where there is no BlueZ, no adapter or no system bus, it does not fail:
it publishes `unavailable` with the reason and tries again after a long, growing
delay. A missing radio is a fact about the hardware, not a fault to restart from,
so it must never put the supervision tree into a crash loop.

The provisioning window is restored from the data dir at every start (see
`actors.ble.window`), so a restart never opens it. Only the very first start, when
no window state exists yet, decides by itself: it opens the window when Wi-Fi is not
provisioned (NetworkManager has no gateway profile, or there is no NetworkManager to
ask) and records it closed otherwise. The setup code that writes over BLE need is
created at start too (`actors.ble.setup_code`), so that `egw ble code` and the actor
always agree on it.

Config keys read by `ble_child_spec` (gateway settings): gateway_name, data_dir,
api_port, ble_enabled, ble_window_minutes, wifi_backend, wifi_dbus_address, and
optionally ble_adapter ("hci0"), ble_mtu (185), ble_dbus_address (a private bus
instead of the system bus).
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from thespian.actors import WakeupMessage

from actors.ble.dispatch import HttpDispatcher
from actors.ble.messages import BleStatus, CloseProvisioningWindow, GetBleStatus, OpenProvisioningWindow
from actors.ble.server import BleServer, BleUnavailableError
from actors.ble.setup_code import SetupCodeGuard, load_or_create_setup_code
from actors.ble.tunnel import Limits, Tunnel
from actors.ble.window import ProvisioningWindow, WindowStore, window_path
from storage.files import make_private_dir
from supervisor.asyncbridge import AsyncioActor
from supervisor.spec import ChildSpec

_RETRY = "ble-retry"
_WINDOW = "ble-window"


@dataclass(frozen=True)
class BleSettings:
    """Everything the BLE actor needs, as plain picklable data (the child spec's config)."""

    gateway_name: str = "egw"
    data_dir: str = "data"
    api_port: int = 8080
    window_minutes: float = 15.0
    adapter: str | None = None
    dbus_address: str | None = None
    mtu: int = 185
    retry_min_s: float = 30.0
    retry_max_s: float = 600.0
    wifi_backend: str = "networkmanager"
    wifi_dbus_address: str | None = None

    @property
    def page_size(self) -> int:
        """A notification carries MTU-3 bytes; 512 is the largest attribute value."""
        return max(128, min(self.mtu - 3, 512))


def ble_settings(config: Mapping[str, Any]) -> BleSettings:
    return BleSettings(
        gateway_name=str(config.get("gateway_name", "egw")),
        data_dir=str(config.get("data_dir", "data")),
        api_port=int(config.get("api_port", 8080)),
        window_minutes=float(config.get("ble_window_minutes", 15)),
        adapter=config.get("ble_adapter") or None,
        dbus_address=config.get("ble_dbus_address") or None,
        mtu=int(config.get("ble_mtu", 185)),
        wifi_backend=str(config.get("wifi_backend", "networkmanager")),
        wifi_dbus_address=config.get("wifi_dbus_address") or None,
    )


def ble_child_spec(config: Mapping[str, Any]) -> ChildSpec:
    """The BLE actor's place in the tree (permanent: it only exits on a real bug)."""
    return ChildSpec(name="ble", actor="actors.ble.actor.BleActor", config=ble_settings(config), restart="permanent")


def ble_children(config: Mapping[str, Any]) -> list[ChildSpec]:
    """For `supervisor.tree.PARTS`: the BLE child, unless `ble_enabled` is false."""
    return [ble_child_spec(config)] if config.get("ble_enabled", True) else []


def read_api_token(data_dir: str) -> str | None:
    from storage.api_token import read_token, token_path

    return read_token(token_path(data_dir))


async def wifi_provisioned(settings: BleSettings, timeout: float = 5.0) -> bool:
    """Whether NetworkManager holds the gateway's Wi-Fi profile (False when it cannot tell).

    Asked only at the first start: a gateway that was set up another way (an image
    with Wi-Fi configured) must not open BLE provisioning on its own.
    """
    if settings.wifi_backend != "networkmanager":
        return False
    from actors.wifi.networkmanager import NetworkManagerWifi

    wifi = NetworkManagerWifi(settings.wifi_dbus_address)
    try:
        async with asyncio.timeout(timeout):
            return (await wifi.status()).provisioned
    except Exception:  # noqa: BLE001 - no NetworkManager, no Wi-Fi device, no answer: not provisioned
        return False
    finally:
        await wifi.close()


class BleActor(AsyncioActor):
    """Hosts the GATT tunnel; states: starting, running, unavailable (with a reason)."""

    def on_start(self, config: Any) -> None:
        self.settings: BleSettings = config if isinstance(config, BleSettings) else ble_settings(config or {})
        s = self.settings
        make_private_dir(s.data_dir)
        self.window = ProvisioningWindow(s.window_minutes, store=WindowStore(window_path(s.data_dir)))
        self.guard = SetupCodeGuard(load_or_create_setup_code(s.data_dir))
        limits = Limits(page_size=s.page_size)
        self.dispatcher = HttpDispatcher(s.api_port, max_response=limits.max_response)
        tunnel = Tunnel(self.dispatcher, self.window.is_open, lambda: read_api_token(s.data_dir), self.guard, limits, log=self.log)
        self.server = BleServer(s.gateway_name, tunnel, bus_address=s.dbus_address, adapter=s.adapter, log=self.log)
        self.server.on_lost = lambda reason: self.run_in_actor(lambda: self._on_lost(reason))
        self.state = "starting"
        self.reason: str | None = None
        self.failures = 0
        self.start_loop()
        if self.window.first_start:
            self.run_in_loop(self._first_start())
            return
        self.log.info("provisioning window restored", window_open=self.window.is_open(), window_remaining_s=round(self.window.remaining(), 1))
        self.run_in_loop(self._start_server())
        self._arm_window_timer()

    async def _first_start(self) -> None:
        provisioned = await wifi_provisioned(self.settings)
        self.run_in_actor(lambda: self._on_first_start(provisioned))

    def _on_first_start(self, wifi_provisioned: bool) -> None:
        """The gateway's first start: open the window only for an unprovisioned gateway, and record it either way."""
        if not self.window.first_start:
            pass  # opened or closed by a trigger meanwhile: that is the decision
        elif wifi_provisioned:
            self.window.close()
        else:
            self.window.open()
        self.log.info("first start: provisioning window " + ("opened" if self.window.is_open() else "stays closed"), wifi_provisioned=wifi_provisioned)
        self._warn_unsaved()
        self.run_in_loop(self._start_server())
        self._arm_window_timer()

    def _warn_unsaved(self) -> None:
        if self.window.save_error is not None:
            self.log.error("could not save the provisioning window's state", error=self.window.save_error)

    # ---------------------------------------------------------- bring-up and retry
    def _retry(self) -> None:
        self.state = "starting"
        self.publish("starting", reason=self.reason, attempts=self.failures)
        self.run_in_loop(self._start_server())

    async def _start_server(self) -> None:
        try:
            await self.server.start(advertise=self.window.is_open())
        except BleUnavailableError as exc:
            reason = str(exc)
            self.run_in_actor(lambda: self._on_unavailable(reason))
            return
        self.run_in_actor(self._on_running)

    def _on_running(self) -> None:
        self.state, self.reason, self.failures = "running", None, 0
        self.log.info("BLE provisioning running", name=self.settings.gateway_name, advertising=self.server.advertising)
        self._publish_state()

    def _on_lost(self, reason: str) -> None:
        """BlueZ restarted or the bus went away at run time: unavailable, and retry soon."""
        self.failures = 0
        self._on_unavailable(reason)

    def _on_unavailable(self, reason: str) -> None:
        delay = min(self.settings.retry_max_s, self.settings.retry_min_s * 2**self.failures)
        self.failures += 1
        self.state, self.reason = "unavailable", reason
        self.log.warning("BLE provisioning unavailable", reason=reason, retry_in_s=delay)
        self.publish("unavailable", reason=reason, retry_in_s=delay, attempts=self.failures)
        self.wakeupAfter(timedelta(seconds=delay), payload=_RETRY)

    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:  # noqa: N802 (thespian API)
        if msg.payload == _RETRY and self.state == "unavailable":
            self._retry()
        elif msg.payload == _WINDOW:
            self._window_changed()

    # ---------------------------------------------------------- the provisioning window
    def _arm_window_timer(self) -> None:
        remaining = self.window.remaining()
        if remaining > 0:
            self.wakeupAfter(timedelta(seconds=remaining + 0.05), payload=_WINDOW)

    def _window_changed(self) -> None:
        """Bring advertising in line with the window (timers may be stale after a re-open)."""
        if self.state == "running":
            self.run_in_loop(self._sync_advertising(self.window.is_open()))
        if self.window.is_open():
            self._arm_window_timer()
        else:
            self.log.info("provisioning window closed")
        self._publish_state()

    def receiveMsg_OpenProvisioningWindow(self, msg: OpenProvisioningWindow, sender: Any) -> None:  # noqa: N802
        self.window.open(msg.minutes)
        self.log.info("provisioning window opened", minutes=msg.minutes if msg.minutes is not None else self.settings.window_minutes)
        self._warn_unsaved()
        self._window_changed()
        self.send(sender, self._status(msg.request_id))

    def receiveMsg_CloseProvisioningWindow(self, msg: CloseProvisioningWindow, sender: Any) -> None:  # noqa: N802
        self.window.close()
        self._warn_unsaved()
        self._window_changed()
        self.send(sender, self._status(msg.request_id))

    def receiveMsg_GetBleStatus(self, msg: GetBleStatus, sender: Any) -> None:  # noqa: N802
        self.send(sender, self._status(msg.request_id))

    # ---------------------------------------------------------- status
    def _status(self, request_id: str = "") -> BleStatus:
        return BleStatus(self.state, self.server.advertising, self.window.is_open(), round(self.window.remaining(), 1), self.reason, self.server.requests_served, request_id)

    def _publish_state(self) -> None:
        status = self._status()
        if status.state == "unavailable":
            return  # published with its retry delay by _on_unavailable
        self.publish(status.state, advertising=status.advertising, window_open=status.window_open, window_remaining_s=status.window_remaining_s, requests_served=status.requests_served)

    async def _sync_advertising(self, advertise: bool) -> None:
        try:
            await (self.server.start_advertising() if advertise else self.server.stop_advertising())
        except Exception as exc:  # noqa: BLE001 - BlueZ went away: report, the GATT app stays as it is
            self.log.warning("could not change advertising", advertise=advertise, error=f"{type(exc).__name__}: {exc}"[:200])
        finally:
            self.run_in_actor(self._publish_state)

    async def on_loop_stop(self) -> None:
        await self.server.stop()
        await self.dispatcher.close()

