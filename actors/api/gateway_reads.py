"""Reads of a running gateway: health, devices, chargers, sessions, identity, settings.

A mixin of `actors.api.gateway.GatewayBackend`: the tree comes from its cached `_tree()`,
the stores through `_blocking` (SQLite in the API's small thread pool).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from actors.api import stores
from actors.api.backend import NotFoundError, UnavailableError
from actors.api.hardware import hardware_report, is_absent_hardware
from actors.api.tree_view import OK_STATES, RESTARTING_STATES, device_records, device_view, find, walk, count
from supervisor.procs import boot_id
from supervisor.redaction import redact


class GatewayReads:
    """What GET endpoints read; needs `settings`, `db_path`, `_tree`, `_blocking`, `configured_devices`."""

    async def tree(self) -> list[dict[str, Any]]:
        return await self._tree()

    async def health(self) -> dict[str, Any]:
        reasons = []
        try:
            records = await self._tree()
        except UnavailableError:
            records, reasons = [], ["root supervisor not answering"]
        for record in walk(records):
            if record["kind"] == "supervisor" and record["state"] == "running":
                continue
            if record["state"] not in OK_STATES and not is_absent_hardware(record):  # no BLE adapter is no fault
                detail = record["info"].get("reason") if isinstance(record["info"], dict) else None
                reasons.append(f"{record['path']}: {record['state']}" + (f" ({detail})" if detail else ""))
        return {
            "status": "degraded" if reasons else "ok",
            "reasons": reasons,
            "hardware": hardware_report(records, self.settings.config),
            "uptime_s": round(max(0.0, time.time() - self.started_at), 3),
            "version": self.settings.version,
            "boot_id": boot_id(),
            "started_at": stores.iso(self.started_at),
        }

    async def devices(self) -> list[dict[str, Any]]:
        records = await self._tree()
        configured = {str(d.get("id")): d for d in await self.configured_devices()}
        running = {i: r for i, r in device_records(records).items() if i in configured or i not in self._removed}
        return [device_view(i, running.get(i), configured.get(i)) for i in sorted(set(configured) | set(running))]

    async def device(self, device_id: str) -> dict[str, Any]:
        records = await self._tree()
        record = device_records(records).get(device_id)
        configured = next((d for d in await self.configured_devices() if str(d.get("id")) == device_id), None)
        if configured is None and device_id in self._removed:
            record = None  # removed and stopped; a cached tree may still show it
        if record is None and configured is None:
            raise NotFoundError(f"no device {device_id!r}", field="path.id")
        if record is not None and record["state"] in RESTARTING_STATES:
            raise UnavailableError(f"device {device_id} is {record['state']}", retry_after=1)
        return device_view(device_id, record, configured)

    async def chargers(self) -> list[dict[str, Any]]:
        chargers = await self._blocking(stores.charger_views, self.db_path)
        await self._merge_charger_info(chargers)
        return chargers

    async def charger(self, charger_id: str) -> dict[str, Any]:
        charger = await self._blocking(stores.charger_view, self.db_path, charger_id)
        await self._merge_charger_info([charger])
        return charger

    async def _merge_charger_info(self, chargers: list[dict[str, Any]]) -> None:
        try:
            records = await self._tree()
        except UnavailableError:
            return
        running = find(records, "chargers")
        by_name = {r["name"]: r for r in (running or {}).get("children", [])}
        for charger in chargers:
            record = by_name.get(charger["id"])
            messages = (record or {}).get("info", {}).get("messages")
            if isinstance(messages, dict):
                charger["messages"] = {str(k): v for k, v in messages.items() if count(v) is not None}

    async def transactions(self, *, charger: str | None, id_tag: str | None, since: float | None, limit: int) -> list[dict[str, Any]]:
        return await self._blocking(stores.transaction_views, self.db_path, charger=charger, id_tag=id_tag, since=since, limit=limit)

    async def transaction(self, transaction_id: int) -> dict[str, Any]:
        return await self._blocking(stores.transaction_view, self.db_path, transaction_id)

    async def reservations(self, *, charger: str | None, status: str | None, limit: int) -> list[dict[str, Any]]:
        return await self._blocking(stores.reservation_views, self.db_path, charger=charger, status=status, limit=limit, now=time.time())

    async def reservation(self, reservation_id: int) -> dict[str, Any]:
        return await self._blocking(stores.reservation_view, self.db_path, reservation_id, time.time())

    async def set_payment_reference(self, transaction_id: int, reference: str, *, replace: bool) -> dict[str, Any]:
        return await self._blocking(stores.set_payment_reference, self.db_path, transaction_id, reference, replace)

    async def set_connector_override(self, charger_id: str, connector_id: int, status: str, reason: str | None) -> None:
        await self._blocking(stores.set_connector_override, self.db_path, charger_id, connector_id, status, reason, time.time())

    async def clear_connector_override(self, charger_id: str, connector_id: int) -> dict[str, Any] | None:
        return await self._blocking(stores.clear_connector_override, self.db_path, charger_id, connector_id)

    async def crypto(self) -> dict[str, Any]:
        return await self._blocking(stores.identity_view, Path(self.settings.data_dir), self.settings.gateway_name)

    async def config(self) -> dict[str, Any]:
        return redact(self.settings.config, self.settings.secret_keys)
