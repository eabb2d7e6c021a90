"""The API actor's side of the live feed: the hub, its routes, and the message handlers.

`ServesLiveFeed` is a mixin for the API actor (an `AsyncioActor`): it receives the
`LiveEvent`/`LiveBatch` messages that sources send and hands them to the hub on the
actor's asyncio loop, where the websocket and SSE handlers run, so the hub is only ever
touched from one thread.

    class ApiActor(ServesLiveFeed, AsyncioActor):
        def on_start(self, config):
            ...
            self.app = build_app(...)
            self.attach_live_feed(self.app, token, settings.gateway.db_path)   # before serving
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aiohttp import web

from actors.live.hub import Hub
from actors.live.messages import LiveBatch, LiveEvent
from actors.live.routes import add_live_routes
from actors.live.tokens import LiveAuthorizer, owners_from_db
from supervisor.messages import TreeEvent

GATEWAY_TOPIC = "gateway"


def attach_live_feed(app: web.Application, api_token: str | None, db_path: str | Path | None = None, **hub_options: Any) -> Hub:
    """A hub with its routes on `app`; transaction tokens are checked against `db_path`."""
    hub = Hub(**hub_options)
    add_live_routes(app, hub, LiveAuthorizer(api_token, owners_from_db(db_path) if db_path else None))
    return hub


class ServesLiveFeed:
    """Mixin for an AsyncioActor that serves an aiohttp app: owns the hub, takes events."""

    live_hub: Hub | None = None

    def attach_live_feed(self, app: web.Application, api_token: str | None, db_path: str | Path | None = None, **hub_options: Any) -> Hub:
        self.live_hub = attach_live_feed(app, api_token, db_path, **hub_options)
        return self.live_hub

    def receiveMsg_LiveEvent(self, msg: LiveEvent, sender: Any) -> None:  # noqa: N802 (thespian API)
        if self.live_hub is not None and self.loop is not None:  # type: ignore[attr-defined]
            self.call_soon_in_loop(self.live_hub.publish, msg)  # type: ignore[attr-defined]

    def receiveMsg_LiveBatch(self, msg: LiveBatch, sender: Any) -> None:  # noqa: N802 (thespian API)
        if self.live_hub is not None and self.loop is not None:  # type: ignore[attr-defined]
            self.call_soon_in_loop(_publish_all, self.live_hub, msg.events)  # type: ignore[attr-defined]


    def receiveMsg_TreeEvent(self, msg: TreeEvent, sender: Any) -> None:  # noqa: N802 (thespian API)
        """What the supervision tree did, as the `gateway` topic (this actor's spec is an observer)."""
        event = LiveEvent(GATEWAY_TOPIC, msg.kind, dict(msg.data), msg.time, msg.time)
        self.receiveMsg_LiveEvent(event, sender)


def _publish_all(hub: Hub, events: tuple[LiveEvent, ...]) -> None:
    for event in events:
        hub.publish(event)
