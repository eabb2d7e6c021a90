"""The outbox and its upload transports over REST: state, dead letters, changed settings.

A mixin of `actors.api.gateway.GatewayBackend`. Changed transport settings are saved in
`storage.registry` and take effect by restarting that transport's actor.
"""

from __future__ import annotations

from typing import Any

from actors.api import stores
from actors.api.backend import BadInputError, NotFoundError, NotSupportedError, UnavailableError
from actors.api.tree_view import RESTARTING_STATES, count, find
from storage import registry
from supervisor.messages import ChildStopped, LookupResult, StartChild, StopChild
from supervisor.spec import ChildSpec


class TransportAdmin:
    """Outbox reads and transport administration; needs `settings`, `db_path`, `port`, `_tree`, `_blocking`, `_lookup`."""

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
                    if count(info.get(key)) is not None:
                        transport[key] = info[key]
        return view

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
