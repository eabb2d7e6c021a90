"""The API token: created once, private, and required by every protected route."""

from __future__ import annotations

import os
import re
import stat

import pytest

from actors.api.routes import ROUTES
from actors.api.token import load_or_create_token, read_token, token_matches, token_path
from tests.api.conftest import TOKEN

PROTECTED = [r for r in ROUTES if r.protected]
WRITES = [r for r in ROUTES if r.method != "GET"]


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


def _concrete(path: str) -> str:
    path = re.sub(r"\{id\}", "1" if path.startswith("/api/transactions") else "CP-1" if "/chargers/" in path else "inv1", path).replace("{name}", "ingest")
    return re.sub(r"\{[A-Za-z_]+\}", "0123456789abcdef", path)  # any other parameter (a command id, an idTag): a well-formed value


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


@pytest.mark.parametrize("route", PROTECTED, ids=lambda r: f"{r.method} {r.path}")
async def test_protected_route_accepts_the_token(client, route):
    response = await client.request(route.method, _concrete(route.path), json={}, headers={"Authorization": f"Bearer {TOKEN}"})
    assert response.status != 401


async def test_app_without_a_token_refuses_every_write(backend):
    from aiohttp.test_utils import TestClient, TestServer

    from actors.api.app import build_app

    async with TestClient(TestServer(build_app(backend, token=None), host="127.0.0.1", port=0)) as client:
        for route in PROTECTED:
            response = await client.request(route.method, _concrete(route.path), json={}, headers={"Authorization": "Bearer "})
            assert response.status == 401
    assert backend.writes == []
