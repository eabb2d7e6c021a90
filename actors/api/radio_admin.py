"""Wi-Fi and BLE provisioning over REST: the Wi-Fi service, and the BLE actor's window.

A mixin of `actors.api.gateway.GatewayBackend`.
"""

from __future__ import annotations

import os
from typing import Any

from actors.api.backend import NotSupportedError, UnavailableError
from actors.api.provisioning import ble_view
from actors.api.tree_view import find


class RadioAdmin:
    """Wi-Fi and BLE; needs `settings`, `port`, `wifi`, `_tree`, `_request_ids`."""

    async def wifi_status(self) -> dict[str, Any]:
        return await self.wifi.status()

    async def wifi_scan(self) -> list[dict[str, Any]]:
        return await self.wifi.scan()

    async def wifi_connect(self, ssid: str, psk: str | None) -> dict[str, Any]:
        return await self.wifi.connect(ssid, psk)

    async def wifi_forget(self) -> dict[str, Any]:
        return await self.wifi.forget()

    async def ble_status(self) -> dict[str, Any]:
        from actors.ble.messages import GetBleStatus

        return ble_view(await self._ask_ble(await self._ble_address(), GetBleStatus()))

    async def ble_open_window(self, minutes: float | None) -> dict[str, Any]:
        """Refused with 503 while BLE is unavailable: a window nobody can reach over the air
        would tell the installer that provisioning is possible when it is not."""
        from actors.ble.messages import GetBleStatus, OpenProvisioningWindow

        address = await self._ble_address()
        current = await self._ask_ble(address, GetBleStatus())
        if current.state == "unavailable":
            record = find(await self._tree(), "ble") or {}
            retry = (record.get("info") or {}).get("retry_in_s")
            retry_after = int(retry) + 1 if isinstance(retry, (int, float)) and not isinstance(retry, bool) else 30
            raise UnavailableError(f"BLE provisioning is unavailable: {current.reason or 'unknown reason'}", retry_after=retry_after, code="ble_unavailable")
        return ble_view(await self._ask_ble(address, OpenProvisioningWindow(minutes)))

    async def ble_close_window(self) -> dict[str, Any]:
        from actors.ble.messages import CloseProvisioningWindow

        return ble_view(await self._ask_ble(await self._ble_address(), CloseProvisioningWindow()))

    async def _ble_address(self) -> Any:
        try:
            address = await self.port.lookup("ble", self.settings.ask_timeout)
        except TimeoutError:
            raise UnavailableError("the supervisor did not answer the BLE lookup", retry_after=1) from None
        if address is None:
            if find(await self._tree(), "ble") is None:
                raise NotSupportedError("BLE provisioning is not enabled on this gateway (ble_enabled)")
            raise UnavailableError("ble is restarting", retry_after=1)
        return address

    async def _ask_ble(self, address: Any, msg: Any) -> Any:
        """Ask the BLE actor; its answer is matched by request id (several asks may be in flight)."""
        from dataclasses import replace

        from actors.ble.messages import BleStatus

        request_id = f"api-{os.getpid()}-{next(self._request_ids)}"
        try:
            return await self.port.ask(address, replace(msg, request_id=request_id),
                                       match=lambda m: isinstance(m, BleStatus) and m.request_id == request_id, timeout=self.settings.ask_timeout)
        except TimeoutError:
            raise UnavailableError("ble did not answer (restarting?)", retry_after=1) from None
