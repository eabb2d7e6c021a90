"""The API token: created once, private, and required by every protected route."""

from __future__ import annotations

import os
import stat

import pytest
from jsonschema import Draft202012Validator

from actors.api.routes import ROUTES
from actors.api.token import token_matches
from storage.api_token import load_or_create_token, read_token, token_path
from tests.api.conftest import TOKEN, MemoryBackend

PROTECTED = [r for r in ROUTES if r.protected]
WRITES = [r for r in ROUTES if r.method != "GET"]
ID_TAG = "0123456789abcdef"


def test_token_is_created_private_and_stable(tmp_path):
    data_dir = tmp_path / "data"
    token = load_or_create_token(data_dir)
    assert len(token) >= 32
    path = token_path(data_dir)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(data_dir) == token
    assert [p.name for p in data_dir.iterdir()] == ["api-token"]  # no temp files left behind


def test_truncated_token_file_is_replaced_and_loose_mode_tightened(tmp_path):
    path = token_path(tmp_path)
    path.write_text("short\n")
    token = load_or_create_token(tmp_path)
    assert token != "short" and read_token(path) == token
    os.chmod(path, 0o644)
    assert load_or_create_token(tmp_path) == token
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_token_matching():
    assert token_matches(TOKEN, f"Bearer {TOKEN}")
    assert token_matches(TOKEN, f"bearer {TOKEN}")
    assert not token_matches(TOKEN, None)
    assert not token_matches(TOKEN, TOKEN)
    assert not token_matches(TOKEN, f"Basic {TOKEN}")
    assert not token_matches(TOKEN, f"Bearer {TOKEN}x")
    assert not token_matches(TOKEN, "Bearer \udcff\u2603")


def test_every_write_route_is_protected():
    assert WRITES and all(r.protected for r in WRITES)


def _concrete(path: str, command_id: str = "0123456789abcdef") -> str:
    """`path` with ids of things the test backend has: device inv1, charger CP-1 (connector 1), transaction 1,
    reservation 7, transport ingest, idTag ID_TAG, and `command_id`."""
    if path.startswith("/api/transactions"):
        path = path.replace("{id}", "1")
    elif path.startswith("/api/reservations"):
        path = path.replace("{id}", "7")
    elif path.startswith("/api/chargers/"):
        path = path.replace("{id}", "CP-1")
    path = path.replace("{id}", "inv1").replace("{name}", "ingest").replace("{connectorId}", "1").replace("{command_id}", command_id)
    return path.replace("{idTag}", ID_TAG)


@pytest.mark.parametrize("route", PROTECTED, ids=lambda r: f"{r.method} {r.path}")
@pytest.mark.parametrize("authorization", [None, "Bearer wrong-token-wrong-token-wrong-token-00", f"Basic {TOKEN}", "Bearer "])
async def test_protected_route_refuses_without_the_token_and_changes_nothing(client, backend, route, authorization):
    headers = {"Authorization": authorization} if authorization is not None else {}
    response = await client.request(route.method, _concrete(route.path), json={"anything": 1}, headers=headers)
    assert response.status == 401
    body = await response.json()
    assert body["error"] == "unauthorized" and body["field"] == "header.Authorization"
    assert response.headers["WWW-Authenticate"].startswith("Bearer")
    assert backend.writes == []


@pytest.fixture
async def store_client(tmp_path):
    """The app over the memory backend plus a charger store (so the charger-admin routes answer too): charger CP-1, idTag ID_TAG."""
    from aiohttp.test_utils import TestClient, TestServer

    from actors.api.app import build_app
    from storage import chargers as charger_store, local_auth_list
    from storage.db import connect

    backend = MemoryBackend()
    backend.db_path = tmp_path / "egw.db"
    conn = connect(backend.db_path)
    try:
        charger_store.init(conn)
        charger_store.add_charger(conn, "CP-1", registration_status="Accepted")
        local_auth_list.set_authorization(conn, ID_TAG)
    finally:
        conn.close()
    app = build_app(backend, token=TOKEN, version="0.1.0-test", backend_timeout=0.5, command_timeout=1.0)
    async with TestClient(TestServer(app, host="127.0.0.1", port=0)) as client:
        yield client


def _documented(document: dict, schema: dict) -> Draft202012Validator:
    """A validator for `schema`, resolving its `#/components/...` references in `document`."""
    return Draft202012Validator({**schema, "components": document["components"]})


@pytest.mark.parametrize("route", PROTECTED, ids=lambda r: f"{r.method} {r.path}")
async def test_protected_route_accepts_the_token(store_client, route):
    """With the token, an empty JSON body gets the route's documented answer: its success, or (when the
    documented request body needs something) 400 naming what is missing; never 401, never a 5xx."""
    auth = {"Authorization": f"Bearer {TOKEN}"}
    document = await (await store_client.get("/api/openapi.json")).json()
    operation = document["paths"][route.path][route.method.lower()]
    command_id = "0123456789abcdef"
    if "{command_id}" in route.path:  # a command that exists, to poll
        sent = await store_client.post("/api/chargers/CP-1/clear-cache", json={}, headers=auth)
        command_id = (await sent.json())["command_id"]
    response = await store_client.request(route.method, _concrete(route.path, command_id), json={}, headers=auth)
    body = await response.json()

    request_schema = operation.get("requestBody", {}).get("content", {}).get("application/json", {}).get("schema")
    empty_is_valid = request_schema is None or _documented(document, request_schema).is_valid({})
    successes = sorted(int(status) for status in operation["responses"] if status.startswith("2"))
    if empty_is_valid:
        assert response.status == successes[0], body
    else:
        assert response.status == 400, body
        assert body["error"] == "bad_request", body
        named = document["components"]["schemas"][request_schema["$ref"].rsplit("/", 1)[1]]
        assert body["field"] in {*named.get("required", ()), "body"}, body  # a missing required field, or the body as a whole
    schema = operation["responses"][str(response.status)]["content"]["application/json"]["schema"]
    _documented(document, schema).validate(body)


async def test_app_without_a_token_refuses_every_write(backend):
    from aiohttp.test_utils import TestClient, TestServer

    from actors.api.app import build_app

    async with TestClient(TestServer(build_app(backend, token=None), host="127.0.0.1", port=0)) as client:
        for route in PROTECTED:
            response = await client.request(route.method, _concrete(route.path), json={}, headers={"Authorization": "Bearer "})
            assert response.status == 401
    assert backend.writes == []
