"""`GET /api/warnings`: supervision events and gaps from the live feed's history, and the API's own warning lines."""

from __future__ import annotations

import time

from aiohttp.test_utils import TestClient, TestServer

from actors.api.app import build_app
from actors.live.feed import attach_live_feed
from actors.live.messages import LiveEvent
from supervisor.logs import ActorLog
from tests.api.conftest import TOKEN, MemoryBackend


async def test_warnings_come_newest_first_from_the_feed_history_and_the_log():
    app = build_app(MemoryBackend(), token=TOKEN)
    hub = attach_live_feed(app, TOKEN)
    now = time.time()
    hub.publish(LiveEvent("gateway", "child_exited", {"child": "devices/roof", "reason": "killed by signal 9", "restart": "permanent"}, time=now - 3))
    hub.publish(LiveEvent("gateway", "restarted", {"child": "devices/roof", "pid": 4242, "restarts": 1}, time=now - 2))
    hub.publish(LiveEvent("gateway", "outbox_state", {"state": "running", "outbox_bytes": 1, "budget_bytes": 2, "reason": None}, time=now - 1.5))
    hub.publish(LiveEvent("device/roof", "reading", {"values": {}, "flags": [], "outbox_seq": 1}, time=now - 1.2))
    hub.publish(LiveEvent("device/roof", "gap", {"start": now - 10, "end": now - 5, "reason": "offline", "missed_polls": 5}, time=now - 1))
    marker = f"a warning line {now}"
    ActorLog("api", repeat_limit=None).warning(marker, charger="CP-9")
    async with TestClient(TestServer(app)) as client:
        response = await client.get("/api/warnings")
        assert response.status == 200
        body = await response.json()
        mine = [w for w in body["warnings"] if w["source"] != "log" or w["message"] == marker]
        assert [(w["source"], w["kind"], w["actor"]) for w in mine] == [
            ("log", "warning", "api"), ("device", "gap", "roof"), ("gateway", "restarted", "devices/roof"), ("gateway", "child_exited", "devices/roof")]
        assert mine[0]["data"] == {"charger": "CP-9"}
        assert mine[3]["message"] == "devices/roof exited: killed by signal 9 (restart: permanent)"
        assert mine[1]["message"] == "roof: gap of 5 polls (offline)"
        assert len((await (await client.get("/api/warnings", params={"limit": "1"})).json())["warnings"]) == 1
        response = await client.get("/api/warnings", params={"limit": "0"})
        assert response.status == 400 and (await response.json())["field"] == "query.limit"
