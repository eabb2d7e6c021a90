"""The page's sign-in cookie over the real app (in-memory backend): where it counts as the
token, and the CSRF rules that keep another site from using it."""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from actors.api.app import build_app
from actors.live.feed import attach_live_feed
from actors.web import pages
from actors.web.api import DayBaselines, site_roles
from actors.web.session import COOKIE, CSRF_COOKIE, issue_session, verify_session
from tests.api.conftest import TOKEN, MemoryBackend

NEW_DEVICE = {"id": "roof2", "profile": "sunspec", "host": "127.0.0.1", "port": 1502}


@pytest.fixture
async def web_client():
    backend = MemoryBackend()
    app = build_app(backend, token=TOKEN, version="0.1.0-test")
    attach_live_feed(app, TOKEN)
    client = TestClient(TestServer(app))
    await client.start_server()
    client.backend = backend
    yield client
    await client.close()


async def sign_in(client: TestClient) -> str:
    response = await client.post("/api/session", headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status == 200
    body = await response.json()
    cookies = {c.key: c for c in client.session.cookie_jar}
    assert cookies[COOKIE]["httponly"] and cookies[COOKIE]["samesite"] == "Strict"
    assert cookies[COOKIE].value != TOKEN and TOKEN not in cookies[COOKIE].value  # derived from the token, never the token
    assert not cookies[CSRF_COOKIE]["httponly"] and cookies[CSRF_COOKIE].value == body["csrf_token"]
    return body["csrf_token"]


async def test_the_cookie_opens_protected_reads_and_csrf_guarded_writes(web_client):
    assert (await web_client.get("/api/transactions")).status == 401
    csrf = await sign_in(web_client)
    assert (await web_client.get("/api/transactions")).status == 200  # idTags: the same rule as the bearer token
    assert (await web_client.get("/api/session")).status == 200

    response = await web_client.post("/api/devices", json=NEW_DEVICE)  # the cookie alone: what a forged form would send
    assert response.status == 403
    body = await response.json()
    assert body["error"] == "csrf_failed" and body["field"] == "header.X-CSRF-Token"
    response = await web_client.post("/api/devices", json=NEW_DEVICE, headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert response.status == 403 and (await response.json())["field"] == "header.Origin"
    response = await web_client.post("/api/devices", json=NEW_DEVICE, headers={"X-CSRF-Token": "x" * len(csrf)})
    assert response.status == 403
    assert web_client.backend.writes == []

    origin = f"http://{web_client.host}:{web_client.port}"
    response = await web_client.post("/api/devices", json=NEW_DEVICE, headers={"X-CSRF-Token": csrf, "Origin": origin})
    assert response.status == 201, await response.text()
    response = await web_client.post("/api/devices", json={**NEW_DEVICE, "port": 70000}, headers={"X-CSRF-Token": csrf})
    assert response.status == 400 and (await response.json())["field"] == "port"  # the same validation as with the token


async def test_signing_out_clears_the_cookies_and_a_stale_or_foreign_cookie_is_no_credential(web_client):
    csrf = await sign_in(web_client)
    assert (await web_client.delete("/api/session")).status == 403  # signing out is a write too
    response = await web_client.delete("/api/session", headers={"X-CSRF-Token": csrf})
    assert response.status == 200 and (await response.json()) == {"signed_in": False}
    assert (await web_client.get("/api/transactions")).status == 401

    other = issue_session("o" * 43)  # signed by another gateway's (or a rotated) token
    expired = issue_session(TOKEN, now=time.time() - 31 * 24 * 3600)
    for cookie in (other, expired, "ws1.1.2.3", ""):
        web_client.session.cookie_jar.update_cookies({COOKIE: cookie})
        response = await web_client.get("/api/transactions")
        assert response.status == 401 and (await response.json())["field"] == "header.Authorization"
    assert not verify_session(None, issue_session(TOKEN))


async def test_the_live_feed_accepts_the_cookie_from_the_gateways_own_page(web_client):
    assert (await web_client.get("/api/live/sse", params={"topic": "gateway"})).status == 401
    await sign_in(web_client)
    response = await web_client.get("/api/live/sse", params={"topic": "gateway"}, headers={"Origin": "http://evil.example"})
    assert response.status == 403
    response = await web_client.get("/api/live/sse", params={"topic": "gateway"})
    assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
    assert (await response.content.readuntil(b"event: subscribed")).endswith(b"event: subscribed")
    response.close()


async def test_each_section_is_served_with_a_policy_that_allows_only_the_gateway(web_client):
    for _, path, title in pages.SECTIONS:
        response = await web_client.get(path)
        assert response.status == 200 and response.content_type == "text/html"
        text = await response.text()
        assert f"<h1>{title}</h1>" in text and "{{" not in text
        assert "default-src 'self'" in response.headers["Content-Security-Policy"]
        assert "http://" not in text.replace('href="/', "") and "https://" not in text  # no asset from anywhere else
    form = await (await web_client.get("/devices")).text()
    assert '<option value="huawei_sun2000">' in form  # the profiles this build ships, rendered by the server
    for asset, kind in (("egw.css", "text/css"), ("egw.js", "text/javascript")):
        response = await web_client.get(f"/assets/{asset}")
        assert response.status == 200 and response.content_type == kind


def test_the_page_loads_at_most_150_kb():
    assert pages.assets_size() <= 150 * 1024, pages.assets_size()


def test_today_counts_from_the_first_value_seen_each_day():
    now = [time.mktime((2026, 12, 1, 9, 0, 0, 0, 0, -1))]
    days = DayBaselines(clock=lambda: now[0])
    site = [{"id": "roof", "values": {"pv_power_w": 3000, "energy_total_wh": 10_000, "meter_power_w": -500, "meter_import_wh": 50, "meter_export_wh": 70}},
            {"id": "meter", "values": {"meter_power_w": -480, "meter_import_wh": 100, "meter_export_wh": 200}}]
    assert site_roles(site) == (["roof"], "meter")  # the meter of its own, not the inverter's copy of it
    first = days.today(site)
    assert (first["pv_wh"], first["grid_import_wh"], first["grid_export_wh"]) == (0, 0, 0)
    now[0] += 3600
    site[0]["values"]["energy_total_wh"] = 12_500
    site[1]["values"]["meter_export_wh"] = 1_200
    later = days.today(site)
    assert (later["pv_wh"], later["grid_import_wh"], later["grid_export_wh"]) == (2_500, 0, 1_000)
    now[0] += 24 * 3600  # the next day starts from that day's first value
    site[0]["values"]["energy_total_wh"] = 20_000
    assert days.today(site)["pv_wh"] == 0
    assert site_roles([{"id": "inv", "values": {"ac_power_w": 1, "meter_power_w": 2}}]) == (["inv"], "inv")


async def test_a_gateway_without_a_token_signs_nobody_in():
    app = build_app(MemoryBackend(), token=None)
    async with TestClient(TestServer(app)) as client:
        assert (await client.post("/api/session", headers={"Authorization": f"Bearer {TOKEN}"})).status == 401
        client.session.cookie_jar.update_cookies({COOKIE: issue_session(TOKEN)})
        assert (await client.get("/api/transactions")).status == 401
