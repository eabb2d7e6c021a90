"""The `ApiBackend` of a running gateway: the actor tree, the stores, and actor messages.

Three sources, each used for what it is good at:

* the supervision tree (`GetTree` to the root supervisor): which actors run, their
  restarts and errors, and what each published (`publish(state, **info)`) -- device
  values and counters, charger message counts, transport state;
* the SQLite stores, read-only, through `actors.api.stores` in a small thread pool:
  outbox, chargers, transactions, identity;
* actor messages for commands: a charger actor is found with `Lookup("chargers/<id>")`
  (addresses change on every restart) and asked with `ChargerCommand`.

The backend is split by job, one mixin a module, over the shared core in this one (settings,
the cached tree, lookups, the thread pool):

* `actors.api.gateway_reads`    health, devices, chargers, sessions, identity, settings
* `actors.api.device_admin`     add and remove devices
* `actors.api.transport_admin`  the outbox, dead letters, transport settings
* `actors.api.charger_commands` operator commands to chargers (OCPP request and outcome)
* `actors.api.radio_admin`      Wi-Fi and the BLE provisioning window
* `actors.api.tree_view`        the tree records as the API shows them (pure functions)

Nothing here waits on a device: every ask has a timeout, and a target that is
restarting (Lookup answers None) is reported as 503 at once. The actor side is an
`ActorPort` so this class is testable without thespian.
"""

from __future__ import annotations

import asyncio
import itertools
import os
import time
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from actors.api import stores
from actors.api.backend import UnavailableError
from actors.api.charger_commands import ChargerCommands
from actors.api.device_admin import DeviceAdmin
from actors.api.gateway_reads import GatewayReads
from actors.api.provisioning import WifiService, make_wifi_backend
from actors.api.radio_admin import RadioAdmin
from actors.api.transport_admin import TransportAdmin
from actors.api.tree_view import clean_tree, process_age


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


class GatewayBackend(GatewayReads, DeviceAdmin, TransportAdmin, ChargerCommands, RadioAdmin):
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

    async def _lookup(self, path: str) -> Any:
        try:
            address = await self.port.lookup(path, self.settings.ask_timeout)
        except TimeoutError:
            address = None
        if address is None:
            raise UnavailableError(f"{path} is not running (restarting?)", retry_after=1)
        return address
