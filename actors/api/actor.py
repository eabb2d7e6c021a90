"""The API actor: serves the REST app from an asyncio loop inside a supervised actor.

Why an actor at all: a bug or a wedged handler in the HTTP front-end must not take the
gateway down, and a crashed front-end must come back by itself. As a child of the root
supervisor it is restarted alone (SO_REUSEADDR lets the new process bind the port the
killed one held), and it holds no state worth keeping: everything it shows is read
again from the tree and the stores on each request.

Settings read from the gateway configuration: api_host, api_port, api_max_body_kb,
data_dir, gateway_name, devices, uploads (and outbox_db when set), wifi_backend,
wifi_dbus_address.
"""

from __future__ import annotations

from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

from actors.api.app import add_documented_routes, build_app, gateway_version
from actors.api.gateway import GatewayBackend, GatewaySettings
from actors.api.stores import database_path
from storage.api_token import load_or_create_token
from actors.live.feed import ServesLiveFeed
from actors.live.routes import LIVE_COMPONENTS, LIVE_OPENAPI_PATHS
from supervisor.asyncbridge import AsyncioActor
from supervisor.messages import GetTree, Tree
from supervisor.spec import ChildSpec

STORE_THREADS = 2  # SQLite reads run here; two keep a slow read from blocking the next request


@dataclass(frozen=True)
class ApiSettings:
    """Everything the API actor needs, as plain picklable data (the child spec's config)."""

    host: str = "0.0.0.0"
    port: int = 8080
    max_body: int = 64 * 1024
    backend_timeout: float = 5.0
    gateway: GatewaySettings = field(default_factory=GatewaySettings)


def api_settings(config: Mapping[str, Any]) -> ApiSettings:
    """ApiSettings from the gateway's configuration values (`GatewayConfig.values`)."""
    try:
        from supervisor.config import SETTINGS

        secret_keys = tuple(s.key for s in SETTINGS if s.secret)
    except ImportError:  # pragma: no cover - the supervisor package always ships with the API
        secret_keys = ()
    data_dir = str(config.get("data_dir", "data"))
    shown = {k: v for k, v in config.items() if isinstance(k, str)}
    return ApiSettings(
        host=str(config.get("api_host", "0.0.0.0")),
        port=int(config.get("api_port", 8080)),
        max_body=int(config.get("api_max_body_kb", 64)) * 1024,
        gateway=GatewaySettings(
            data_dir=data_dir,
            db_path=str(database_path(config)),
            gateway_name=str(config.get("gateway_name", "egw")),
            version=gateway_version(),
            devices=tuple(dict(d) for d in config.get("devices", ()) or ()),
            uploads=tuple(dict(u) for u in config.get("uploads", ()) or ()),
            config=shown,
            secret_keys=secret_keys,
            wifi_backend=str(config.get("wifi_backend", "networkmanager")),
            wifi_dbus_address=str(config.get("wifi_dbus_address") or "") or None,
        ),
    )


def api_child_spec(config: Mapping[str, Any]) -> ChildSpec:
    """The API actor's place under the root supervisor (permanent: always restarted)."""
    # observer: the root sends it every TreeEvent, which the live feed shows as its `gateway` topic
    return ChildSpec(name="api", actor="actors.api.actor.ApiActor", config=api_settings(config), restart="permanent", observer=True)


def api_children(config: Mapping[str, Any]) -> list[ChildSpec]:
    """For `supervisor.tree.PARTS`: ("actors.api.actor", "api_children")."""
    return [api_child_spec(config)]


class ApiActor(ServesLiveFeed, AsyncioActor):
    """Serves `actors.api.app` over a `GatewayBackend` whose actor side is this actor."""

    def on_start(self, config: ApiSettings) -> None:
        settings = config if isinstance(config, ApiSettings) else api_settings(config or {})
        self.settings = settings
        token = load_or_create_token(settings.gateway.data_dir)
        self.executor = ThreadPoolExecutor(max_workers=STORE_THREADS, thread_name_prefix="api-store")
        self.backend = GatewayBackend(settings.gateway, _ActorPort(self), self.executor)
        self.app = build_app(self.backend, token=token, version=settings.gateway.version,
                             max_body=settings.max_body, backend_timeout=settings.backend_timeout)
        self.attach_live_feed(self.app, token, settings.gateway.db_path)  # GET /api/live, /api/live/sse
        add_documented_routes(self.app, LIVE_OPENAPI_PATHS, LIVE_COMPONENTS)
        self.runner = None
        self.start_loop()
        # Bind before reporting Started: a port in use is a failure the supervisor must see
        # (and retry with backoff), not a silently dead API.
        self.bound_port = self.run_in_loop(self._serve()).result(timeout=10)
        self.log.info("REST API serving", host=settings.host, port=self.bound_port)
        self.publish("running", host=settings.host, port=self.bound_port)

    async def _serve(self) -> int:
        from aiohttp import web

        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        site = web.TCPSite(self.runner, self.settings.host, self.settings.port, reuse_address=True, backlog=128)
        await site.start()
        return self.runner.addresses[0][1]  # the real port when api_port is 0

    async def on_loop_stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()

    def on_stop(self) -> None:
        executor = getattr(self, "executor", None)
        if executor is not None:
            executor.shutdown(wait=False, cancel_futures=True)


class _ActorPort:
    """The backend's view of the actor system, through the AsyncioActor bridge."""

    def __init__(self, actor: ApiActor) -> None:
        self.actor = actor

    async def get_tree(self, timeout: float) -> list[dict[str, Any]]:
        reply = await self.actor.ask(self.actor.parent, GetTree(), match=lambda m: isinstance(m, Tree), timeout=timeout)
        return list(reply.records)

    async def lookup(self, path: str, timeout: float) -> Any:
        return await self.actor.lookup(path, timeout=timeout)

    async def ask(self, address: Any, msg: Any, match: Any, timeout: float) -> Any:
        return await self.actor.ask(address, msg, match=match, timeout=timeout)
