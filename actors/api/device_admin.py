"""Adding and removing devices over REST: validated as the device family does, persisted, then started.

A mixin of `actors.api.gateway.GatewayBackend`. The saved changes live in
`storage.registry`; the device supervisor is asked to start or stop the actors.
"""

from __future__ import annotations

import re
from typing import Any

from actors.api.backend import BadInputError, ConflictError, NotFoundError, NotSupportedError, UnavailableError
from actors.api.tree_view import device_records, device_view
from storage import registry
from supervisor.messages import ChildStopped, LookupResult, StartChild, StopChild
from supervisor.spec import ChildSpec


class DeviceAdmin:
    """Device administration; needs `settings`, `db_path`, `port`, `_tree`, `_blocking`, `_lookup`, `_removed`."""

    async def configured_devices(self) -> list[dict[str, Any]]:
        """Devices from the configuration file, with those added or removed over the API applied.

        Read from SQLite once per API process and then kept: this actor is the only writer
        of those changes, and it refreshes the copy after each write.
        """
        if self._devices_cache is None:
            self._devices_cache = await self._blocking(registry.apply_changes, list(self.settings.devices), self.db_path)
        return self._devices_cache

    async def add_device(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Validate as the device family does, persist, then have the device supervisor start it.

        A device on an endpoint that already has one (a second meter behind the same RS485
        gateway, another unit id) joins it: the endpoint's actor is replaced by one that
        polls both over the one connection (`actors.device.specs.reconcile`).
        """
        try:
            from actors.device.specs import DeviceConfigError, group_devices, reconcile, validate_device
        except ImportError:
            raise NotSupportedError("this gateway build has no device family") from None
        try:
            device = validate_device(dict(settings))
        except DeviceConfigError as exc:
            raise BadInputError(str(exc), field=_device_field(str(exc))) from None
        device_id = device["id"]
        configured = await self.configured_devices()
        running = device_records(await self._tree())
        if (device_id in running and device_id not in self._removed) or any(str(d.get("id")) == device_id for d in configured):
            raise ConflictError(f"a device with id {device_id!r} exists", field="id")
        usable = [d for d in configured if _valid_device(d)]
        try:
            group_devices([*usable, device])
        except DeviceConfigError as exc:  # its unit id is taken on that endpoint, or its serial settings differ
            raise ConflictError(str(exc).split(": ", 1)[-1], field=_device_field(str(exc))) from None
        stop, start = reconcile(usable, [*usable, device])
        supervisor = await self._lookup("devices")
        try:
            await self._blocking(registry.record_added, self.db_path, device)
        except registry.RegistryFullError as exc:
            raise ConflictError(str(exc)) from None
        finally:
            self._devices_cache = None
        self._removed.discard(device_id)
        try:
            await self._replace_device_actors(supervisor, stop, start)
        except TimeoutError:
            raise UnavailableError(f"device {device_id} is saved but the device supervisor did not confirm its start; it starts with the gateway at the latest", retry_after=1) from None
        return device_view(device_id, {"state": "starting", "info": {}, "restarts": 0}, device)

    async def _replace_device_actors(self, supervisor: Any, stop: list[str], start: list[ChildSpec]) -> None:
        """Stop the endpoint actors a change replaces, then start their successors (TimeoutError if unconfirmed)."""
        for name in stop:
            await self.port.ask(supervisor, StopChild(name), match=lambda m, n=name: isinstance(m, ChildStopped) and m.name == n, timeout=self.settings.ask_timeout)
        for spec in start:
            await self.port.ask(supervisor, StartChild(spec), match=lambda m, n=spec.name: isinstance(m, LookupResult) and m.path == n, timeout=self.settings.ask_timeout)

    async def remove_device(self, device_id: str) -> dict[str, Any]:
        """Persist the removal, then have the device supervisor stop the device's actor for good."""
        configured = next((d for d in await self.configured_devices() if str(d.get("id")) == device_id), None)
        record = device_records(await self._tree()).get(device_id)
        if configured is None and (record is None or device_id in self._removed):
            raise NotFoundError(f"no device {device_id!r}", field="path.id")  # a second DELETE finds nothing
        shared = record is not None and record["actor_path"] != f"devices/{device_id}"
        supervisor = await self._lookup("devices")
        try:
            await self._blocking(registry.record_removed, self.db_path, device_id)
        except registry.RegistryFullError as exc:
            raise ConflictError(str(exc)) from None
        finally:
            self._devices_cache = None
        try:
            if shared:  # its endpoint's actor is replaced by one polling the others
                from actors.device.specs import reconcile

                usable = [d for d in await self.configured_devices() if _valid_device(d)]
                before = [*usable, configured] if configured is not None and configured not in usable else usable
                await self._replace_device_actors(supervisor, *reconcile(before, [d for d in before if str(d.get("id")) != device_id]))
            else:
                await self.port.ask(supervisor, StopChild(device_id), match=lambda m: isinstance(m, ChildStopped) and m.name == device_id, timeout=self.settings.ask_timeout)
        except TimeoutError:
            raise UnavailableError(f"device {device_id} is removed from the saved devices but the device supervisor did not confirm the stop", retry_after=1) from None
        self._removed.add(device_id)
        return device_view(device_id, {"state": "stopped", "info": {}, "restarts": (record or {}).get("restarts", 0)}, configured)


def _valid_device(settings: Any) -> bool:
    from actors.device.specs import DeviceConfigError, validate_device

    try:
        validate_device(dict(settings))
    except (DeviceConfigError, TypeError, ValueError):
        return False
    return True


def _device_field(message: str) -> str:
    """The setting a device family error names ("devices[0] (inv2).port: ..." -> "port")."""
    match = re.search(r"\.([a-z_]+):", message)
    if match:
        return match.group(1)
    match = re.search(r"unknown setting\(s\) ([a-z_]+)", message)
    return match.group(1) if match else "body"
