"""The REST endpoints against the in-memory backend: what a client sees for each one."""

from __future__ import annotations

import asyncio

import pytest

from actors.api.openapi import build_document
from tests.api.conftest import TOKEN, check_response

AUTH = {"Authorization": f"Bearer {TOKEN}"}
DOC = build_document("0.1.0-test")


async def get_ok(client, path: str, template: str | None = None, headers: dict | None = None) -> dict:
    response = await client.get(path, headers=headers)
    assert response.status == 200, await response.text()
    body = await response.json()
    check_response(DOC, "GET", template or path, 200, body)
    return body


async def test_health_reports_degraded_with_reasons(client, backend):
    body = await get_ok(client, "/api/health")
    assert body["status"] == "degraded"
    assert body["reasons"] == ["device meter1 offline"]
    backend.devices_by_id["meter1"]["online"] = True
    body = await get_ok(client, "/api/health")
    assert body == {**body, "status": "ok", "reasons": [], "boot_id": "b00t"}


async def test_actor_tree_is_nested(client):
    body = await get_ok(client, "/api/actors")
    names = [a["name"] for a in body["actors"]]
    assert names == ["harvest", "devices", "api"]
    devices = body["actors"][1]
    assert [c["name"] for c in devices["children"]] == ["inv1", "meter1"]
    assert devices["restarts"] == 1 and devices["last_error"] == "RuntimeError: boom"


async def test_devices_list_and_one(client):
    body = await get_ok(client, "/api/devices")
    assert [d["id"] for d in body["devices"]] == ["inv1", "meter1"]
    inv = await get_ok(client, "/api/devices/inv1", "/api/devices/{id}")
    assert inv["values"]["ac_power_w"] == 1234.5 and inv["serial"] == "SN-inv1"


async def test_unknown_device_is_404_json(client):
    response = await client.get("/api/devices/nope")
    assert response.status == 404
    assert await response.json() == {"error": "not_found", "message": "no device 'nope'", "field": "path.id"}


async def test_malformed_device_id_is_400_naming_the_path_parameter(client):
    response = await client.get("/api/devices/-bad%20id")
    assert response.status == 400
    body = await response.json()
    assert body["error"] == "bad_request" and body["field"] == "path.id"


async def test_restarting_device_answers_503_with_retry_after(client, backend):
    backend.restarting.add("inv1")
    response = await client.get("/api/devices/inv1")
    assert response.status == 503
    assert response.headers["Retry-After"] == "2"
    check_response(DOC, "GET", "/api/devices/{id}", 503, await response.json())


async def test_a_hanging_part_gives_503_not_a_hanging_request(client, backend):
    backend.hang = True
    response = await asyncio.wait_for(client.get("/api/devices"), 10)
    assert response.status == 503
    assert int(response.headers["Retry-After"]) >= 1
    assert (await response.json())["error"] == "unavailable"


async def test_outbox(client):
    body = await get_ok(client, "/api/outbox")
    assert body["pending_items"] == 1200
    assert body["transports"][0]["name"] == "ingest" and body["transports"][0]["acked_seq"] == {"inv1": 41}


async def test_chargers_and_transactions_with_filters(client):
    chargers = await get_ok(client, "/api/chargers")
    assert chargers["chargers"][0]["connectors"][0]["status"] == "Available"
    await get_ok(client, "/api/chargers/CP-1", "/api/chargers/{id}")
    all_rows = await get_ok(client, "/api/transactions", headers=AUTH)
    assert [t["id"] for t in all_rows["transactions"]] == [2, 1]
    by_tag = await get_ok(client, "/api/transactions?idTag=TAG1", "/api/transactions", AUTH)
    assert [t["id"] for t in by_tag["transactions"]] == [1]
    since = await get_ok(client, "/api/transactions?since=2026-11-21T00:00:00Z", "/api/transactions", AUTH)
    assert [t["id"] for t in since["transactions"]] == [2]
    since_epoch = await get_ok(client, "/api/transactions?since=1795248000&limit=1&charger=CP-1", "/api/transactions", AUTH)
    assert [t["id"] for t in since_epoch["transactions"]] == [2]
    one = await get_ok(client, "/api/transactions/1", "/api/transactions/{id}", AUTH)
    assert one["energy_wh"] == 7000


@pytest.mark.parametrize("path", ["/api/transactions", "/api/transactions?idTag=TAG1", "/api/transactions?charger=CP-1", "/api/transactions/1"])
async def test_transactions_and_their_id_tags_need_the_token(client, path):
    response = await client.get(path)
    assert response.status == 401
    assert "TAG1" not in await response.text()


@pytest.mark.parametrize("path", ["/api/health", "/api/version", "/api/crypto", "/api/hello"])
async def test_health_version_and_the_public_key_stay_open(client, path):
    response = await client.get(path)
    assert response.status == 200


@pytest.mark.parametrize("query, field", [
    ("since=yesterday", "query.since"),
    ("limit=0", "query.limit"),
    ("limit=ten", "query.limit"),
    ("idTag=" + "x" * 21, "query.idTag"),
    ("chargr=CP-1", "query.chargr"),
    ("limit=1&limit=2", "query.limit"),
])
async def test_bad_transaction_filters_name_the_parameter(client, query, field):
    response = await client.get(f"/api/transactions?{query}", headers=AUTH)
    assert response.status == 400
    assert (await response.json())["field"] == field


async def test_crypto_has_own_and_sourceful_field_names(client):
    body = await get_ok(client, "/api/crypto")
    assert body["serial"] == body["serialNumber"] == "01abcdef23456789"
    assert body["publicKey"] == "04" + "ab" * 64
    assert body["deviceName"] == "egw-01abcdef23456789"
    assert body["public_key"].startswith("-----BEGIN PUBLIC KEY-----")


async def test_config_is_redacted(client):
    body = await get_ok(client, "/api/config")
    text = str(body)
    assert "hunter22" not in text and "s3cret" not in text
    assert body["wifi"] == {"ssid": "home", "psk": "***"}
    assert body["transports"][0] == {"name": "ingest", "url": "https://user:***@example.invalid/ingest", "api_key": "***"}
    assert body["api_port"] == 8080


async def test_compat_endpoints(client):
    assert await get_ok(client, "/api/uptime") == {"msek": 12345}
    assert await get_ok(client, "/api/version") == {"version": "0.1.0-test"}
    assert "message" in await get_ok(client, "/api/hello")


async def test_metrics_in_prometheus_text(client):
    await client.get("/api/devices")
    response = await client.get("/metrics")
    assert response.status == 200
    assert response.content_type == "text/plain"
    text = await response.text()
    lines = text.splitlines()
    from prometheus_client.parser import text_string_to_metric_families  # labels are written sorted, values as floats

    samples = {(s.name, *sorted(s.labels.items())): s.value for f in text_string_to_metric_families(text) for s in f.samples}
    assert samples["egw_device_polls_total", ("device", "inv1")] == 100
    assert samples["egw_device_poll_errors_total", ("device", "inv1")] == 2
    assert samples["egw_device_poll_latency_seconds", ("device", "inv1")] == 0.0125
    assert samples["egw_actor_restarts_total", ("actor", "devices")] == 1
    assert samples["egw_outbox_pending_items",] == 1200
    assert samples["egw_transport_uploaded_readings_total", ("transport", "ingest")] == 41
    assert samples["egw_ocpp_messages_total", ("action", "MeterValues"), ("charger", "CP-1")] == 40
    assert samples["egw_api_requests_total", ("method", "GET"), ("route", "/api/devices"), ("status", "200")] == 1
    for line in lines:  # every sample line is "name{labels} value"
        if not line.startswith("#"):
            name_labels, value = line.rsplit(" ", 1)
            float(value)
            assert name_labels.startswith("egw_")


async def test_add_and_remove_device(client, backend):
    settings = {"id": "inv2", "profile": "sunspec", "host": "127.0.0.1", "port": 1502, "unit_id": 1, "poll_interval": 5}
    response = await client.post("/api/devices", json=settings, headers=AUTH)
    assert response.status == 201, await response.text()
    check_response(DOC, "POST", "/api/devices", 201, await response.json())
    assert "inv2" in [d["id"] for d in (await get_ok(client, "/api/devices"))["devices"]]
    again = await client.post("/api/devices", json=settings, headers=AUTH)
    assert again.status == 409 and (await again.json())["field"] == "id"
    removed = await client.delete("/api/devices/inv2", headers=AUTH)
    assert removed.status == 200
    assert (await client.get("/api/devices/inv2")).status == 404


@pytest.mark.parametrize("body, field", [
    ({"profile": "sunspec"}, "id"),
    ({"id": "inv3", "profile": "sunspec", "port": 70000}, "port"),
    ({"id": "inv3", "profile": "sunspec", "port": "502"}, "port"),
    ({"id": "inv3", "profile": "sunspec", "prot": 502}, "prot"),
    ({"id": "inv3", "profile": "sunspec", "poll_interval": 0}, "poll_interval"),
    ({"id": "bad id", "profile": "sunspec"}, "id"),
])
async def test_bad_device_settings_name_the_field_and_change_nothing(client, backend, body, field):
    response = await client.post("/api/devices", json=body, headers=AUTH)
    assert response.status == 400
    assert (await response.json())["field"] == field
    assert backend.writes == []


@pytest.mark.parametrize("raw", [b"", b"{", b"[1, 2]", b"\xff\xfe", b"NaN", b'{"id": NaN}', b"null"])
async def test_malformed_bodies_are_400_body(client, backend, raw):
    response = await client.post("/api/devices", data=raw, headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 400
    assert (await response.json())["field"] == "body"
    assert backend.writes == []


async def test_body_over_the_limit_is_413_json(client, backend):
    response = await client.post("/api/devices", data=b"{" + b" " * 70_000 + b"}", headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"] == "payload_too_large"
    assert backend.writes == []


async def test_unknown_route_is_404_json_and_wrong_method_is_405_json(client):
    response = await client.get("/api/nothing-here")
    assert response.status == 404 and (await response.json())["error"] == "not_found"
    response = await client.patch("/api/devices")
    assert response.status == 405
    assert (await response.json())["error"] == "method_not_allowed"
    assert "GET" in response.headers["Allow"]


async def test_charger_commands_reach_the_charger(client, backend):
    response = await client.post("/api/chargers/CP-1/remote-start", json={"idTag": "TAG1", "connectorId": 1}, headers=AUTH)
    assert response.status == 200
    body = await response.json()
    check_response(DOC, "POST", "/api/chargers/{id}/remote-start", 200, body)
    assert body["command"] == "RemoteStartTransaction" and body["status"] == "Accepted"
    assert backend.writes == [("RemoteStartTransaction", ("CP-1", {"idTag": "TAG1", "connectorId": 1}))]
    rejected = await client.post("/api/chargers/CP-1/remote-stop", json={"transactionId": 1}, headers=AUTH)
    assert rejected.status == 409 and (await rejected.json())["error"] == "rejected"
    config = await client.get("/api/chargers/CP-1/configuration?key=HeartbeatInterval", headers=AUTH)
    assert config.status == 200
    assert backend.writes[-1] == ("GetConfiguration", ("CP-1", {"key": ["HeartbeatInterval"]}))
    reserve = await client.post("/api/chargers/CP-1/reserve", json={"connectorId": 1, "expiryDate": "tomorrow", "idTag": "T"}, headers=AUTH)
    assert reserve.status == 400 and (await reserve.json())["field"] == "expiryDate"


async def test_unknown_charger_command_target_is_404(client):
    response = await client.post("/api/chargers/CP-9/reset", json={"type": "Soft"}, headers=AUTH)
    assert response.status == 404


async def test_transport_settings(client, backend):
    response = await client.put("/api/transports/ingest", json={"timeout_s": 2.5}, headers=AUTH)
    assert response.status == 200
    assert (await get_ok(client, "/api/outbox"))["transports"][0]["timeout_s"] == 2.5
    response = await client.put("/api/transports/ingest", json={"enabled": False}, headers=AUTH)
    assert response.status == 400 and (await response.json())["field"] == "enabled"
    response = await client.put("/api/transports/ingest", json={"url": "ftp://x"}, headers=AUTH)
    assert response.status == 400 and (await response.json())["field"] == "url"


async def test_a_command_to_a_wedged_part_is_202_pending_within_the_command_timeout(client, backend):
    """Not 503: the part may still send it, so the answer is "pending", with where to look."""
    backend.hang = True
    response = await asyncio.wait_for(client.post("/api/chargers/CP-1/reset", json={"type": "Soft"}, headers=AUTH), 10)
    assert response.status == 202 and (await response.json())["status"] == "Pending"
    poll = await client.get(response.headers["Location"], headers=AUTH)
    assert poll.status == 200 and (await poll.json())["state"] == "pending"
    assert backend.writes == []


def test_rejected_requests_are_logged_but_a_flood_cannot_fill_the_log(caplog):
    import logging

    from actors.api.app import RateLimitedLog

    now = [0.0]
    limited = RateLimitedLog(per_minute=3, clock=lambda: now[0])
    with caplog.at_level(logging.INFO):
        for i in range(10):
            limited("bad request", field=f"f{i}")
        now[0] = 61.0
        limited("bad request", field="later")
    messages = [(r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]
    assert messages == [("bad request", {"field": "f0"}), ("bad request", {"field": "f1"}), ("bad request", {"field": "f2"}),
                        ("rejected requests not logged individually", {"count": 7, "seconds": 61}), ("bad request", {"field": "later"})]


async def test_a_bad_request_is_logged_with_its_field(client, caplog):
    import logging

    with caplog.at_level(logging.INFO):
        await client.get("/api/transactions?limit=0", headers=AUTH)
    [record] = [r for r in caplog.records if r.getMessage() == "bad request"]
    assert record.fields == {"path": "/api/transactions", "field": "query.limit", "reason": record.fields["reason"]}
    assert record.actor == "api"


async def test_a_chunked_body_over_the_limit_is_413_too(client, backend):
    async def chunks():
        for _ in range(20):
            yield b" " * 8192

    response = await client.post("/api/devices", data=chunks(), headers={**AUTH, "Content-Type": "application/json"})
    assert response.status == 413
    assert (await response.json())["error"] == "payload_too_large"
    assert backend.writes == []
