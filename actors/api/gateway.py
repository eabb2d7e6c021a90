"""The `ApiBackend` of a running gateway: the actor tree, the stores, and actor messages.

Three sources, each used for what it is good at:

* the supervision tree (`GetTree` to the root supervisor): which actors run, their
  restarts and errors, and what each published (`publish(state, **info)`) -- device
  values and counters, charger message counts, transport state;
* the SQLite stores, read-only, through `actors.api.stores` in a small thread pool:
  outbox, chargers, transactions, identity;
* actor messages for commands: a charger actor is found with `Lookup("chargers/<id>")`
  (addresses change on every restart) and asked with `ChargerCommand`.

Nothing here waits on a device: every ask has a timeout, and a target that is
restarting (Lookup answers None) is reported as 503 at once. The actor side is an
`ActorPort` so this class is testable without thespian.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import re
import time
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from actors.api import stores
from storage import registry
from actors.api.backend import (
    BadInputError,
    ChargerError,
    ConflictError,
    NoAnswerError,
    NotFoundError,
    NotSupportedError,
    UnavailableError,
)
from actors.api.hardware import hardware_report, is_absent_hardware
from actors.api.provisioning import WifiService, ble_view, make_wifi_backend
from actors.api.validation import parse_datetime
from supervisor.messages import ChildStopped, LookupResult, StartChild, StopChild
from supervisor.spec import ChildSpec

OK_STATES = frozenset({"running", "online", "ok", "idle", "connected", "serving"})
"""States an actor can be in without the gateway counting as degraded."""

RESTARTING_STATES = frozenset({"starting", "restarting", "stopping", "hung"})


class ActorPort(Protocol):
    """How the backend reaches actors (implemented by the API actor over its AsyncioActor bridge)."""

    async def get_tree(self, timeout: float) -> list[dict[str, Any]]: ...

    async def lookup(self, path: str, timeout: float) -> Any: ...

    async def ask(self, address: Any, msg: Any, match: Callable[[Any], bool], timeout: float) -> Any: ...


@dataclass(frozen=True)
class GatewaySettings:
    """What the backend needs from the gateway configuration (plain data: it pickles)."""

    data_dir: str = "data"
    db_path: str = ""
    gateway_name: str = "egw"
    version: str = "0.0.0"
    devices: tuple[dict, ...] = ()
    uploads: tuple[dict, ...] = ()
    config: dict = field(default_factory=dict)
    secret_keys: tuple[str, ...] = ()
    ask_timeout: float = 2.0
    tree_max_age: float = 0.1
    command_timeout: float = 35.0
    charger_retry_after: int = 30
    wifi_backend: str = "networkmanager"  # or "fake" (demo) or "none"; see actors.api.provisioning
    wifi_dbus_address: str | None = None  # NetworkManager's bus; None: the system bus


def _record_path(prefix: str, record: Mapping[str, Any]) -> str:
    return f"{prefix}/{record.get('name')}" if prefix else str(record.get("name"))


def clean_tree(records: Any, prefix: str = "") -> list[dict[str, Any]]:
    """The tree as JSON-able records with their paths; addresses and other objects left out."""
    cleaned = []
    for record in records or ():
        if not isinstance(record, Mapping):
            continue
        path = _record_path(prefix, record)
        entry = {
            "name": str(record.get("name")),
            "path": path,
            "kind": str(record.get("kind") or "worker"),
            "actor": record.get("actor"),
            "pid": record.get("pid"),
            "state": str(record.get("state") or "unknown"),
            "restarts": int(record.get("restarts") or 0),
            "last_error": record.get("last_error"),
            "since": record.get("since"),
            "info": _jsonable(record.get("info") or {}),
        }
        children = record.get("children")
        if children or entry["kind"] == "supervisor":
            entry["children"] = clean_tree(children, path)
        cleaned.append(entry)
    return cleaned


def _jsonable(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def find(records: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    """The record at `path` ("devices/inv1") in a cleaned tree."""
    for record in records:
        if record["path"] == path:
            return record
        if path.startswith(record["path"] + "/"):
            return find(record.get("children", []), path)
    return None


def walk(records: list[dict[str, Any]]):
    for record in records:
        yield record
        yield from walk(record.get("children", []))


def device_records(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Device id -> its actor's record. An actor polling several devices behind one endpoint
    (named "a+b") publishes each device's state under info["devices"]; those are split out."""
    supervisor = find(records, "devices")
    found: dict[str, dict[str, Any]] = {}
    for record in (supervisor or {}).get("children", []):
        shared = record["info"].get("devices") if isinstance(record["info"], dict) else None
        if isinstance(shared, dict) and shared:
            for device_id, info in shared.items():
                info = info if isinstance(info, dict) else {}
                state = record["state"] if record["state"] in RESTARTING_STATES else str(info.get("state") or record["state"])
                found[str(device_id)] = {**record, "state": state, "info": info, "actor_path": record["path"]}
        else:
            found[record["name"]] = {**record, "actor_path": record["path"]}
    return found


def _epoch_or_iso(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return stores.iso(value)
    if isinstance(value, str):
        try:
            parse_datetime(value)
            return value
        except ValueError:
            return None
    return None


def _count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def device_view(device_id: str, record: Mapping[str, Any] | None, configured: Mapping[str, Any] | None) -> dict[str, Any]:
    """One device as the API shows it: configuration plus what its actor last published."""
    configured = configured or {}
    info = (record or {}).get("info") or {}
    state = str(info.get("state") or (record or {}).get("state") or "not running")
    online = info.get("online")
    if not isinstance(online, bool):
        online = state in ("online", "degraded")  # degraded: answering, some registers refused
    connection = info.get("connection") if isinstance(info.get("connection"), Mapping) else {
        k: configured[k] for k in ("host", "port", "unit_id", "serial_port", "baudrate") if k in configured
    }
    values = info.get("values") if isinstance(info.get("values"), Mapping) else {}
    latency = info.get("poll_latency_ms")
    return {
        "id": device_id,
        "profile": info.get("profile") or configured.get("profile") or ("sunspec" if configured.get("sunspec") else None),
        "connection": connection,
        "state": state,
        "online": online,
        "serial": info.get("serial"),
        "model": None if info.get("model") is None else str(info.get("model")),
        "last_poll": _epoch_or_iso(info.get("last_poll")),
        "values": {str(k): v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for k, v in values.items()},
        "polls": _count(info.get("polls")),
        "errors": _count(info.get("errors", info.get("poll_errors"))),
        "gaps": _count(info.get("gaps")),
        "poll_latency_ms": float(latency) if isinstance(latency, (int, float)) and not isinstance(latency, bool) else None,
        "unacknowledged_batches": _count(info.get("unacknowledged")),
        "batches_given_up": _count(info.get("batches_given_up")),
        "last_error": (record or {}).get("last_error") or info.get("last_error"),
        "restarts": (record or {}).get("restarts"),
    }


def boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    except OSError:
        return None


def process_age(pid: int) -> float | None:
    """Seconds since process `pid` started (from /proc), or None where that is unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))


class GatewayBackend:
    """`ApiBackend` over a running gateway (see module docstring)."""

    def __init__(self, settings: GatewaySettings, port: ActorPort, executor: Executor, *, started_at: float | None = None) -> None:
        self.settings = settings
        self.port = port
        self.executor = executor
        self.db_path = Path(settings.db_path) if settings.db_path else stores.database_path(settings.config or {"data_dir": settings.data_dir})
        age = process_age(os.getppid())  # the root supervisor's process: the gateway's age
        self.started_at = started_at if started_at is not None else time.time() - (age if age is not None else 0.0)
        self._request_ids = itertools.count(1)
        self._tree_cache: tuple[float, list[dict[str, Any]]] | None = None
        self._tree_inflight: asyncio.Future | None = None
        self._devices_cache: list[dict[str, Any]] | None = None
        # Devices removed here whose stop the supervisor confirmed: the tree may show them a
        # little longer (it is cached, and supervisors batch their reports), they are gone.
        self._removed: set[str] = set()
        self._uploads_cache: list[dict[str, Any]] | None = None
        self.wifi = WifiService(make_wifi_backend(settings.wifi_backend, settings.wifi_dbus_address))

    async def _blocking(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self.executor, lambda: fn(*args, **kwargs))

    async def _tree(self) -> list[dict[str, Any]]:
        """The actor tree, at most `tree_max_age` old; concurrent requests share one ask.

        The supervisors themselves batch their reports (every 0.2 s), so a tree a tenth of
        a second old shows nothing a fresh one would not, and sixteen dashboards polling at
        once cost the root supervisor one GetTree instead of sixteen.
        """
        now = time.monotonic()
        if self._tree_cache is not None and now - self._tree_cache[0] <= self.settings.tree_max_age:
            return self._tree_cache[1]
        if self._tree_inflight is None:
            self._tree_inflight = asyncio.ensure_future(self._fetch_tree())
            self._tree_inflight.add_done_callback(self._tree_fetched)
        return await asyncio.shield(self._tree_inflight)

    async def _fetch_tree(self) -> list[dict[str, Any]]:
        started = time.monotonic()
        try:
            raw = await self.port.get_tree(self.settings.ask_timeout)
        except TimeoutError:
            raise UnavailableError("the root supervisor did not answer", retry_after=1) from None
        tree = clean_tree(raw)
        self._tree_cache = (started, tree)
        return tree

    def _tree_fetched(self, future: asyncio.Future) -> None:
        self._tree_inflight = None
        if not future.cancelled():
            future.exception()  # retrieved here, so an unanswered ask is never reported as "never retrieved"

    # ------------------------------------------------------------------ reads
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

    async def configured_devices(self) -> list[dict[str, Any]]:
        """Devices from the configuration file, with those added or removed over the API applied.

        Read from SQLite once per API process and then kept: this actor is the only writer
        of those changes, and it refreshes the copy after each write.
        """
        if self._devices_cache is None:
            self._devices_cache = await self._blocking(registry.apply_changes, list(self.settings.devices), self.db_path)
        return self._devices_cache

    async def outbox_status(self) -> dict[str, Any]:
        view = await self._blocking(stores.outbox_view, self.db_path, await self.configured_uploads())
        try:
            records = await self._tree()
        except UnavailableError:
            return view
        running = find(records, "transports")
        by_name = {r["name"]: r for r in (running or {}).get("children", [])}
        for transport in view["transports"]:
            record = by_name.get(transport["name"])
            if record is not None:
                info = record["info"]
                if record["state"] in RESTARTING_STATES:
                    transport["state"] = record["state"]
                for key in ("uploaded_batches", "uploaded_readings", "upload_errors"):
                    if _count(info.get(key)) is not None:
                        transport[key] = info[key]
        return view

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
                charger["messages"] = {str(k): v for k, v in messages.items() if _count(v) is not None}

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
        shown = dict(self.settings.config)
        for key in self.settings.secret_keys:
            if shown.get(key):
                shown[key] = "***"
        return shown

    # ----------------------------------------------------------------- writes
    async def disconnect_charger(self, charger_id: str, reason: str) -> bool:
        """Have the charger's actor close its websocket; False when it has no actor (not connected) or does not answer."""
        from actors.ocpp.messages import Disconnect, Disconnected

        try:
            address = await self.port.lookup(f"chargers/{charger_id}", self.settings.ask_timeout)
            if address is None:
                return False
            reply = await self.port.ask(address, Disconnect(reason), match=lambda m: isinstance(m, Disconnected) and m.charge_point_id == charger_id,
                                        timeout=self.settings.ask_timeout)
        except TimeoutError:
            return False
        return bool(reply.closed)

    async def charger_command(self, charger_id: str, command: str, params: dict[str, Any]) -> dict[str, Any]:
        """Ask the charger's actor to send `command`; the charger's answer, or the ApiError for how it ended.

        The actor queues requests (one outstanding per charger, OCPP-J), so a request may wait
        behind others longer than `command_timeout`. Giving up then must not leave it queued
        to be sent later, after the client was told it failed: the backend withdraws it
        (`CancelCommand`), and the actor either confirms it was never sent (503 `not_sent`)
        or, when it is already with the charger, reports its real outcome when that comes.
        """
        from actors.ocpp.messages import CancelCommand, ChargerCommand, CommandOutcome

        request = central_request(command, params)
        try:
            address = await self.port.lookup(f"chargers/{charger_id}", self.settings.ask_timeout)
        except TimeoutError:
            raise UnavailableError("the supervisor did not answer the charger lookup", retry_after=1) from None
        if address is None:
            await self._blocking(stores.charger_view, self.db_path, charger_id)  # NotFound for a charger never seen
            raise UnavailableError(f"charger {charger_id} is not connected", retry_after=self.settings.charger_retry_after, code="charger_offline")
        request_id = f"api-{os.getpid()}-{next(self._request_ids)}"

        def answer(m: Any) -> bool:
            return isinstance(m, CommandOutcome) and m.request_id == request_id

        try:
            outcome = await self.port.ask(address, ChargerCommand(request, request_id), match=answer, timeout=self.settings.command_timeout)
        except TimeoutError:
            try:
                outcome = await self.port.ask(address, CancelCommand(request_id), match=answer, timeout=self.settings.command_timeout)
            except TimeoutError:
                raise NoAnswerError(f"charger {charger_id}: its actor reported no outcome of {command}; whether it was sent is unknown",
                                    code="outcome_unknown") from None
        return outcome_result(charger_id, command, outcome)

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

    async def _lookup(self, path: str) -> Any:
        try:
            address = await self.port.lookup(path, self.settings.ask_timeout)
        except TimeoutError:
            address = None
        if address is None:
            raise UnavailableError(f"{path} is not running (restarting?)", retry_after=1)
        return address

    async def configured_uploads(self) -> list[dict[str, Any]]:
        """Upload endpoints with the API's setting changes applied (cached like `configured_devices`)."""
        if self._uploads_cache is None:
            self._uploads_cache = await self._blocking(registry.apply_transport_changes, list(self.settings.uploads), self.db_path)
        return self._uploads_cache

    async def dead_letters(self) -> list[dict[str, Any]]:
        return await self._blocking(stores.dead_letters_view, self.db_path)

    async def resend_dead_letters(self, transport: str, ids: list[int] | None) -> dict[str, Any]:
        """Ask the transport actor (the outbox's writer for its cursor) to queue parked batches again."""
        if not any(str(u.get("name")) == transport for u in await self.configured_uploads()):
            raise NotFoundError(f"no transport {transport!r}", field="path.name")
        from actors.harvest.messages import DeadLettersQueued, ResendDeadLetters

        address = await self._lookup(f"transports/{transport}")
        try:
            answer = await self.port.ask(address, ResendDeadLetters(tuple(ids) if ids else None),
                                         match=lambda m: isinstance(m, DeadLettersQueued), timeout=self.settings.ask_timeout)
        except TimeoutError:
            raise UnavailableError(f"transport {transport} did not answer", retry_after=1) from None
        return {"transport": transport, "queued": answer.queued}

    async def update_transport(self, name: str, settings: dict[str, Any]) -> dict[str, Any]:
        """Check the merged settings as the harvest family does, persist them, restart the transport."""
        current = next((u for u in await self.configured_uploads() if str(u.get("name")) == name), None)
        if current is None:
            raise NotFoundError(f"no transport {name!r}", field="path.name")
        try:
            from actors.harvest.specs import TRANSPORT_ACTOR
            from actors.harvest.uplink import TransportConfig
        except ImportError:
            raise NotSupportedError("this gateway build has no upload transports") from None
        config = self.settings.config
        merged = {"max_count": int(config.get("upload_batch_max", 1000)), "max_bytes": int(config.get("upload_batch_max_kb", 512)) * 1024, **current, **settings}
        try:
            checked = TransportConfig.from_dict(merged)
        except (TypeError, ValueError) as exc:
            raise BadInputError(str(exc), field=next(iter(settings), "body")) from None
        if checked.backoff_max_s < checked.backoff_min_s:
            raise BadInputError("backoff_max_s must not be below backoff_min_s", field="backoff_max_s")
        supervisor = await self._lookup("transports")
        try:
            await self._blocking(registry.record_transport, self.db_path, name, settings)
        finally:
            self._uploads_cache = None
        spec = ChildSpec(name=name, actor=TRANSPORT_ACTOR, config={"db_path": str(self.db_path), "data_dir": self.settings.data_dir,
                                                                    "gateway_id": config.get("gateway_id"), "transport": merged})
        try:
            await self.port.ask(supervisor, StopChild(name), match=lambda m: isinstance(m, ChildStopped) and m.name == name, timeout=self.settings.ask_timeout)
            await self.port.ask(supervisor, StartChild(spec), match=lambda m: isinstance(m, LookupResult) and m.path == name, timeout=self.settings.ask_timeout)
        except TimeoutError:
            raise UnavailableError(f"transport {name}: settings saved, but the transport supervisor did not confirm the restart", retry_after=1) from None
        return {k: v for k, v in merged.items()}

    # ------------------------------------------------------------ provisioning
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


def central_request(command: str, params: Mapping[str, Any]) -> Any:
    """The OCPP family's request object for a validated API body (OCPP field names)."""
    from actors.ocpp.messages import REQUESTS, request_from_payload

    if command not in REQUESTS:
        raise NotSupportedError(f"command {command} is not supported")
    try:
        return request_from_payload(command, dict(params))
    except ValueError as exc:
        text = str(exc)
        raise BadInputError(text, field=text.split(":", 1)[0] if ":" in text else "body") from None


NOT_SENT = {
    "offline": ("charger_offline", 30, "is not connected; nothing was sent"),
    "queue_full": ("queue_full", 5, "has too many commands waiting; this one was not sent"),
    "cancelled": ("not_sent", 5, "did not get to it in time; it was withdrawn before it was sent"),
}
"""Outcomes where the charger never got the command: 503 with `error` and Retry-After."""


def outcome_result(charger_id: str, command: str, outcome: Any) -> dict[str, Any]:
    """A charger actor's `CommandOutcome` as the charger's answer payload, or the matching ApiError."""
    kind = outcome.outcome
    if kind == "result":
        return dict(outcome.payload)
    if kind in NOT_SENT:
        code, retry_after, what = NOT_SENT[kind]
        raise UnavailableError(f"charger {charger_id} {what} ({command})", retry_after=retry_after, code=code)
    if kind == "not_accepted":
        raise ConflictError(f"charger {charger_id}: its registration is Rejected; {command} was not sent", code="charger_not_accepted")
    if kind == "invalid_request":
        raise BadInputError(outcome.description or f"{command} request is not valid OCPP 1.6", field="body")
    if kind in ("error", "invalid_response"):
        what = "answered with a CALLERROR" if kind == "error" else "answered outside the OCPP 1.6 schema"
        raise ChargerError(f"charger {charger_id} {what} to {command}: {outcome.error_code}", code="charger_error" if kind == "error" else "invalid_response",
                           details={"ocpp_error_code": outcome.error_code, "description": outcome.description})
    if kind == "timeout":
        raise NoAnswerError(f"charger {charger_id} got {command} but did not answer ({outcome.description}); whether it acted on it is unknown, "
                            "and it is not sent again")
    raise NoAnswerError(f"charger {charger_id}: the outcome of {command} is unknown ({outcome.description or kind})", code="outcome_unknown")
