"""Every message the live feed sends matches the LiveMessage schema in the served OpenAPI document.

Events are made by the builders the charger and harvest actors call (actors/ocpp/live_events.py,
harvest.live_events) and the supervisor's gateway kinds, published on a real `Hub`, and read
back over the real routes (websocket and SSE) on a loopback port; control messages
(subscribed, resync, lagged, error, unsubscribed) come from the hub and routes themselves.
Each one is validated against the document the API actor serves, so a field a builder
adds, renames or drops without the document following fails here.
"""

from __future__ import annotations

import json

import aiohttp
from jsonschema import Draft202012Validator

from actors.api.app import STATE_KEY, add_documented_routes, build_app
from actors.harvest.messages import DeviceEvent, Gap, Reading, ReadingBatch
from actors.harvest.live_events import batch_events
from actors.live.feed import attach_live_feed
from actors.live.messages import LiveEvent
from actors.ocpp.live_events import live_events, transaction_started, transaction_stopped
from actors.live.routes import LIVE_COMPONENTS, LIVE_EVENT_DATA, LIVE_OPENAPI_PATHS
from actors.ocpp.handlers import MeterUpdate
from actors.ocpp.messages import ConnectorStatus, LiveUpdate
from tests.api.conftest import MemoryBackend
from tests.live.conftest import AUTH, read_sse, receive_json, receive_until


def _served_document() -> dict:
    """The document as the API actor serves it: the route table plus the live feed's paths and schemas."""
    app = build_app(MemoryBackend(), token="t0ken")
    attach_live_feed(app, "t0ken")
    add_documented_routes(app, LIVE_OPENAPI_PATHS, LIVE_COMPONENTS)
    return json.loads(app[STATE_KEY].document_bytes)


def _message_validator() -> Draft202012Validator:
    document = _served_document()
    ws_response = document["paths"]["/api/live"]["get"]["responses"]["101"]
    sse_content = document["paths"]["/api/live/sse"]["get"]["responses"]["200"]["content"]["text/event-stream"]
    assert ws_response["x-live-message"] == sse_content["x-live-message"] == {"$ref": "#/components/schemas/LiveMessage"}
    return Draft202012Validator({"$ref": "#/components/schemas/LiveMessage", "components": document["components"]})


def _charger_events() -> list[LiveEvent]:
    """What a charger actor publishes over one session, from its own builders."""
    return [
        *transaction_started("CP-1", 17, 1, "TAG1", 1000.0, 1795248000.0),
        *live_events(LiveUpdate("CP-1", 17, 1, 1795248010.0, 1500.0, 7200.0, 500.0)),
        *live_events(MeterUpdate("CP-1", 17, 1, 1795248020.0, 1600.0, None, 600.0, soc_percent=64.0, current_a=16.1,
                                 current_phases_a={"L1": 16.0, "L2": 15.9, "L3": 16.1})),
        *live_events(ConnectorStatus("CP-1", 1, "SuspendedEV", "NoError", 1795248030.0), transaction_on=lambda connector: 17),
        *transaction_stopped("CP-1", 17, 1, 8000.0, 7000.0, "Local", 1795251600.0),
    ]


def _device_events() -> list[LiveEvent]:
    """What the harvest actor publishes for one committed batch."""
    batch = ReadingBatch("device:inv1", 1,
                         readings=(Reading("inv1", 1795248000.0, 1.0, "boot", {"ac_power_w": 1234.5, "energy_total_wh": 987654}, flags=("ac_power_w",)),),
                         gaps=(Gap("inv1", 1795247000.0, 1795247990.0, "offline", 99),),
                         events=(DeviceEvent("inv1", 1795248000.0, "counter_reset", {"from": 10, "to": 0}),))
    return batch_events(batch, {"inv1": 41})


def _gateway_events() -> list[LiveEvent]:
    """The gateway topic's kinds with the fields supervisor/supervisor.py and the harvest actor emit."""
    return [LiveEvent("gateway", "restarted", {"child": "root/devices/inv1", "pid": 4242, "restarts": 2}, None, 1795248000.0),
            LiveEvent("gateway", "child_exited", {"child": "root/devices/inv1", "reason": "crashed", "restart": "permanent"}, None, 1795248000.0),
            LiveEvent("gateway", "child_failed", {"child": "root/devices/inv1", "reason": "RuntimeError: boom", "retry_in_s": 2.0}, None, 1795248000.0),
            LiveEvent("gateway", "escalated", {"supervisor": "root", "reason": "too many restarts"}, None, 1795248000.0),
            LiveEvent("gateway", "outbox_state", {"state": "ok", "outbox_bytes": 4096, "budget_bytes": 2**29, "reason": None}, None, 1795248000.0)]


def _check(validator: Draft202012Validator, message: dict) -> None:
    errors = sorted(validator.iter_errors(message), key=lambda e: list(e.absolute_path))
    assert not errors, f"{message} does not match the documented LiveMessage: {[e.message for e in errors]}"


async def test_every_event_and_control_message_over_the_websocket_matches_the_document(live, http):
    validator = _message_validator()
    events = _charger_events() + _device_events() + _gateway_events()
    kinds = {event.kind for event in events}
    assert kinds >= {"meter_values", "connector_status", "status", "started", "stopped", "transaction_started", "transaction_stopped",
                     "reading", "gap", "device_event"}
    assert kinds <= set(LIVE_EVENT_DATA)  # every kind the builders make has a documented `data`
    topics = sorted({event.topic for event in events})
    seen: list[dict] = []
    async with http.ws_connect(live.ws_url(), headers=AUTH) as ws:
        for topic in topics:
            await ws.send_json({"op": "subscribe", "topic": topic})
            seen += await receive_until(ws, lambda m, t=topic: m["type"] == "subscribed" and m["topic"] == t)
        for event in events:
            live.hub.publish(event)
        seen += await receive_until(ws, lambda m: m.get("kind") == "outbox_state")
        await ws.send_json({"op": "subscribe", "topic": "transaction/17", "resume_from": 999})  # ahead of the topic: resync
        seen += await receive_until(ws, lambda m: m["type"] == "subscribed" and m["topic"] == "transaction/17")
        await ws.send_json({"op": "dance"})
        seen.append(await receive_json(ws))
        await ws.send_json({"op": "unsubscribe", "topic": "gateway"})
        seen.append(await receive_json(ws))
        for n in range(64):  # more than the subscriber's queue (32) before the writer runs: one lagged
            live.hub.publish(LiveEvent("device/inv1", "reading", {"values": {"n": n}, "flags": [], "outbox_seq": None}, None, None))
        seen += await receive_until(ws, lambda m: m["type"] == "lagged")
    assert {m["type"] for m in seen} == {"subscribed", "event", "resync", "error", "unsubscribed", "lagged"}
    assert {m["kind"] for m in seen if m["type"] == "event"} >= kinds
    for message in seen:
        _check(validator, message)


async def test_every_sse_event_matches_the_document(live, http):
    validator = _message_validator()
    events = _charger_events()
    for event in events:
        live.hub.publish(event)
    async with http.get(f"{live.url}/api/live/sse?topic=transaction/17&resume_from=1", headers=AUTH, timeout=aiohttp.ClientTimeout(total=10)) as response:
        assert response.status == 200
        received = await read_sse(response, 1 + sum(1 for e in events if e.topic == "transaction/17"))
    assert [r["event"] for r in received] == ["subscribed", "started", "meter_values", "meter_values", "status", "stopped"]
    for message in received:
        assert message["data"]["type"] == "subscribed" or message["data"]["kind"] == message["event"]
        _check(validator, message["data"])


def test_a_meter_values_event_without_a_documented_field_is_refused_by_the_schema():
    """The schema is not a bare object: a `meter_values` missing `current_a`, or with power as text, does not validate."""
    validator = _message_validator()
    frame = {"type": "event", "topic": "transaction/17", "seq": 1, "epoch": "ab", "kind": "meter_values", "time": None, "emitted": None,
             "data": {"charger": "CP-1", "connector": 1, "transaction_id": 17, "energy_wh": 1.0, "power_w": 2.0, "session_energy_wh": 0.0, "soc_percent": None}}
    assert not validator.is_valid(frame)
    assert validator.is_valid({**frame, "data": {**frame["data"], "current_a": None}})
    assert not validator.is_valid({**frame, "data": {**frame["data"], "current_a": None, "power_w": "7 kW"}})
