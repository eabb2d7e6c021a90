"""An actor that serves only the live feed, for `bench.live`'s run through the real actors.

It is the API actor's live-feed part alone (`ServesLiveFeed` + `attach_live_feed`, what
the gateway's API actor mounts), so the benchmark measures the real hops charger actor
-> API actor -> subscribers without the REST routes around them.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from actors.live.feed import ServesLiveFeed
from supervisor.asyncbridge import AsyncioActor


class FeedActor(ServesLiveFeed, AsyncioActor):
    """Config: {"port", "token"}."""

    def on_start(self, config: dict[str, Any]) -> None:
        self.app = web.Application()
        self.attach_live_feed(self.app, config["token"], max_subscribers=2000)
        self.runner: web.AppRunner | None = None
        self.start_loop()
        self.run_in_loop(self._serve(int(config["port"]))).result(timeout=10)
        self.publish("running")

    async def _serve(self, port: int) -> None:
        self.runner = web.AppRunner(self.app, handle_signals=False, access_log=None, shutdown_timeout=1.0)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", port, reuse_address=True, backlog=1024).start()

    async def on_loop_stop(self) -> None:
        if self.runner is not None:
            await self.runner.cleanup()
