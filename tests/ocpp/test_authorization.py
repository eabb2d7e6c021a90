"""Charger provisioning and the local authorization list, end to end in one process.

An operator drives the REST app (the real handlers, a real SQLite store); chargers are
real websocket clients of the in-process central system (`tests/ocpp/conftest.Central`),
which checks the handshake with the same `Authenticator` and answers with the same
protocol as the gateway's actors. Lockouts run on an injected clock.
"""

from __future__ import annotations

import time

import pytest
from aiohttp.test_utils import TestClient, TestServer

from actors.api.app import build_app
from actors.ocpp.auth import Authenticator, FailureLimiter
from actors.ocpp.messages import request_from_payload
from simulators.charger.connection import basic_auth_header
from storage import chargers as charger_store
from storage import local_auth_list
from storage import ocpp_transactions as tx_store
from tests.api.conftest import TOKEN, MemoryBackend
from tests.conftest import wait_until_async
from tests.ocpp.test_listener import handshake_status

AUTH = {"Authorization": f"Bearer {TOKEN}"}
REAL_KEY = "real-key-0123456789"
ATTACKER_KEY = "attacker-key-98765"


class CentralApi(MemoryBackend):
    """The API backend of a gateway whose central system is `central`: its store, its chargers."""

    def __init__(self, central) -> None:
        super().__init__()
        self.db_path = central.db_path
        self.central = central

    async def disconnect_charger(self, charger_id: str, reason: str) -> bool:
        connection = self.central.server.connections.get(charger_id)
        if connection is None:
            return False
        self.central.server.close(charger_id, connection.connection_id, 1008, reason)
        return True

    async def charger_command(self, charger_id: str, command: str, params: dict) -> dict:
        outcome = await self.central.backend.request(charger_id, request_from_payload(command, params))
        assert outcome.outcome == "result", outcome
        return dict(outcome.payload)


@pytest.fixture
async def operator(central):
    """A REST client of the gateway whose central system is `central` (the `accept` policy)."""
    async with TestClient(TestServer(build_app(CentralApi(central), token=TOKEN), host="127.0.0.1", port=0)) as client:
        yield client


@pytest.fixture
async def strict_operator(strict_central):
    async with TestClient(TestServer(build_app(CentralApi(strict_central), token=TOKEN), host="127.0.0.1", port=0)) as client:
        yield client


def basic(charge_point_id: str, key: str) -> dict[str, str]:
    return {"Authorization": basic_auth_header(charge_point_id, key)}


async def test_add_rotate_block_remove_over_rest_decide_who_connects(strict_central, strict_operator):
    c, api = strict_central, strict_operator
    reply = await api.post("/api/chargers", json={"id": "CP-7", "key": REAL_KEY}, headers=AUTH)
    assert reply.status == 201
    added = await reply.json()
    assert added["key_set"] and added["key_fingerprint"] == charger_store.key_fingerprint(REAL_KEY)
    assert REAL_KEY not in await reply.text()  # the key is write-only
    assert (await api.post("/api/chargers", json={"id": "CP-7", "key": REAL_KEY}, headers=AUTH)).status == 409
    assert (await api.post("/api/chargers", json={"id": "CP-8"})).status == 401  # no token, no change
    assert charger_store.get_charger(c.conn, "CP-8") is None

    assert await handshake_status(c.url("CP-7"), basic("CP-7", REAL_KEY)) == 101
    rotated = "rotated-key-abcdef0123"
    assert (await api.put("/api/chargers/CP-7/key", json={"key": rotated}, headers=AUTH)).status == 200
    assert await handshake_status(c.url("CP-7"), basic("CP-7", REAL_KEY)) == 401
    assert await handshake_status(c.url("CP-7"), basic("CP-7", rotated)) == 101

    cp = await c.charger("CP-7", auth_key=rotated)  # connected and Accepted when it is blocked
    blocked = await api.post("/api/chargers/CP-7/block", headers=AUTH)
    assert blocked.status == 200 and (await blocked.json())["disconnected"] is True
    ws = cp._connection.ws
    await wait_until_async(lambda: ws.closed, timeout=5)  # its open session ends at once
    assert ws.close_code == 1008
    assert await handshake_status(c.url("CP-7"), basic("CP-7", rotated)) == 403  # blocked: the key is right, the answer is no
    assert (await api.post("/api/chargers/CP-7/unblock", headers=AUTH)).status == 200
    assert await handshake_status(c.url("CP-7"), basic("CP-7", rotated)) == 101

    assert (await api.delete("/api/chargers/CP-7", headers=AUTH)).status == 200
    assert (await api.delete("/api/chargers/CP-7", headers=AUTH)).status == 404
    assert await handshake_status(c.url("CP-7"), basic("CP-7", rotated)) == 401


async def test_an_attackers_first_connection_does_not_lock_out_the_real_charger(central, operator):
    """Under `accept` the first key seen is only a candidate; the operator pins the real one."""
    c, api = central, operator
    assert await handshake_status(c.url("CP-9"), basic("CP-9", ATTACKER_KEY)) == 101  # first in
    assert await handshake_status(c.url("CP-9"), basic("CP-9", REAL_KEY)) == 101  # not locked out
    listed = {x["id"]: x for x in (await (await api.get("/api/charger-credentials", headers=AUTH)).json())["chargers"]}
    assert not listed["CP-9"]["confirmed"] and not listed["CP-9"]["key_set"]
    fingerprints = {k["fingerprint"] for k in listed["CP-9"]["candidates"]}
    assert fingerprints == {charger_store.key_fingerprint(ATTACKER_KEY), charger_store.key_fingerprint(REAL_KEY)}
    assert (await api.get("/api/charger-credentials")).status == 401

    unknown = await api.post("/api/chargers/CP-9/accept", json={"fingerprint": "0" * 16}, headers=AUTH)
    assert unknown.status == 404 and (await unknown.json())["field"] == "fingerprint"
    accepted = await api.post("/api/chargers/CP-9/accept", json={"fingerprint": charger_store.key_fingerprint(REAL_KEY)}, headers=AUTH)
    assert accepted.status == 200
    view = await accepted.json()
    assert view["confirmed"] and view["key_set"] and view["registration"] == "Accepted" and view["candidates"] == []
    assert await handshake_status(c.url("CP-9"), basic("CP-9", ATTACKER_KEY)) == 401
    assert await handshake_status(c.url("CP-9"), basic("CP-9", REAL_KEY)) == 101


async def test_repeated_wrong_keys_are_locked_out_and_the_right_key_works_after_the_lockout(strict_central):
    now = [1000.0]
    limiter = FailureLimiter(threshold=3, base_lockout=10.0, max_lockout=60.0, clock=lambda: now[0])
    strict_central.server.auth = Authenticator(strict_central.conn, "reject", limiter=limiter)
    charger_store.add_charger(strict_central.conn, "CPL", auth_key=REAL_KEY, registration_status="Accepted")
    url = strict_central.url("CPL")
    for attempt in range(3):
        assert await handshake_status(url, basic("CPL", f"guess-{attempt:012d}")) == 401
    assert await handshake_status(url, basic("CPL", REAL_KEY)) == 429  # locked: even the right key waits
    now[0] += 10.5
    assert await handshake_status(url, basic("CPL", REAL_KEY)) == 101
    auth = strict_central.server.auth
    for attempt in range(3):  # the success cleared the id's count: three more (from other addresses) before its next lockout
        assert auth.check("CPL", basic("CPL", f"again-{attempt:012d}")["Authorization"], remote="10.9.9.9").http_status == 401
    decision = auth.check("CPL", basic("CPL", REAL_KEY)["Authorization"], remote="10.9.9.8")
    assert not decision.allowed and decision.http_status == 429 and decision.retry_after == 10


def test_lockout_grows_per_id_and_per_address_and_memory_is_bounded(db):
    now = [0.0]
    limiter = FailureLimiter(threshold=2, base_lockout=1.0, max_lockout=8.0, max_entries=50, clock=lambda: now[0])
    auth = Authenticator(db, "reject", limiter=limiter)
    charger_store.add_charger(db, "CPA", auth_key=REAL_KEY)
    charger_store.add_charger(db, "CPB", auth_key=REAL_KEY)
    waits = []
    for _ in range(6):
        auth.check("CPA", basic("CPA", "x" * 16)["Authorization"], remote="10.0.0.9")
        waits.append(limiter.locked("id:CPA"))
        now[0] += limiter.locked("id:CPA")
    assert waits == [0.0, 1.0, 2.0, 4.0, 8.0, 8.0]  # doubling, capped
    # the guessing address is locked for every id it tries; another address is not
    auth.check("CPA", basic("CPA", "y" * 16)["Authorization"], remote="10.0.0.9")
    assert auth.check("CPB", basic("CPB", REAL_KEY)["Authorization"], remote="10.0.0.9").http_status == 429
    assert auth.check("CPB", basic("CPB", REAL_KEY)["Authorization"], remote="10.0.0.10").allowed
    for n in range(500):  # random ids from random addresses
        auth.check(f"R{n}", None, remote=f"10.1.{n // 250}.{n % 250}")
    assert len(limiter) <= 50


def test_unconfirmed_chargers_are_bounded_and_expire(db):
    for n in range(3):
        assert charger_store.admit_unconfirmed(db, f"U{n}", registration_status="Accepted", now=100.0 + n, limit=3, ttl=1000.0)
    charger_store.set_connected(db, "U1", True, 150.0)
    assert charger_store.admit_unconfirmed(db, "U3", registration_status="Accepted", now=200.0, limit=3, ttl=1000.0)
    assert {c["charge_point_id"] for c in charger_store.list_chargers(db)} == {"U1", "U2", "U3"}  # the least recently seen went
    charger_store.set_connected(db, "U2", True, 201.0)
    charger_store.set_connected(db, "U3", True, 201.0)
    assert not charger_store.admit_unconfirmed(db, "U4", registration_status="Accepted", now=202.0, limit=3, ttl=1000.0)  # all connected
    charger_store.add_charger(db, "OPERATOR", registration_status="Accepted")  # confirmed rows never count nor expire
    charger_store.set_connected(db, "U2", False, 300.0)
    assert charger_store.expire_unconfirmed(db, now=1301.0, ttl=1000.0) == 1
    assert {c["charge_point_id"] for c in charger_store.list_chargers(db)} == {"OPERATOR", "U1", "U3"}
    for n in range(20):
        charger_store.record_candidate(db, "U1", f"candidate-key-{n:04d}", remote="10.0.0.1", now=400.0 + n)
    assert len(charger_store.key_candidates(db, "U1")) == charger_store.CANDIDATE_LIMIT


def test_a_charger_just_admitted_is_not_evicted_before_its_connection_is_set_up(db):
    """Admitted at the handshake, marked connected only once its actor runs: a burst of new
    ids must not evict each other in between (their BootNotifications would be Rejected)."""
    for n in range(3):
        assert charger_store.admit_unconfirmed(db, f"U{n}", registration_status="Accepted", now=100.0 + n, limit=3, ttl=1000.0)
    assert not charger_store.admit_unconfirmed(db, "U3", registration_status="Accepted", now=110.0, limit=3, ttl=1000.0)
    assert {c["charge_point_id"] for c in charger_store.list_chargers(db)} == {"U0", "U1", "U2"}
    assert charger_store.admit_unconfirmed(db, "U3", registration_status="Accepted", now=100.0 + charger_store.UNCONFIRMED_GRACE + 1, limit=3, ttl=1000.0)


async def test_authorize_answers_from_the_local_list_managed_over_rest(tmp_path):
    """Accepted, Blocked, Expired, unknown (Invalid under `reject`) and ConcurrentTx."""
    from actors.ocpp.policy import OcppPolicy
    from actors.ocpp.server import ListenerSettings
    from tests.ocpp.conftest import Central

    central = await Central(tmp_path / "gw.db", OcppPolicy(unknown_id_tags="reject", call_timeout=2.0),
                            ListenerSettings(host="127.0.0.1", port=0, unknown_chargers="accept", ping_interval=5)).start()
    try:
        async with TestClient(TestServer(build_app(CentralApi(central), token=TOKEN), host="127.0.0.1", port=0)) as api:
            for tag, body in (("GOOD", {}), ("BAD", {"status": "Blocked"}), ("OLD", {"expiry_date": "2020-01-01T00:00:00Z"}),
                              ("KID", {"parent_id_tag": "FAMILY", "expiry_date": "2099-01-01T00:00:00Z"})):
                assert (await api.put(f"/api/id-tags/{tag}", json=body, headers=AUTH)).status == 200
            cp = await central.charger("CP1")
            answers = {tag: (await cp.authorize(tag)).id_tag_info for tag in ("GOOD", "BAD", "OLD", "KID", "NOBODY")}
            assert answers["GOOD"]["status"] == "Accepted"
            assert answers["BAD"]["status"] == "Blocked"
            assert answers["OLD"]["status"] == "Expired"
            assert answers["KID"]["status"] == "Accepted" and answers["KID"]["parent_id_tag"] == "FAMILY"
            assert answers["NOBODY"]["status"] == "Invalid"

            other = await central.charger("CP2")
            await other.start_transaction(1, "GOOD", meter_start=0)
            assert (await cp.authorize("GOOD")).id_tag_info["status"] == "ConcurrentTx"  # charging at CP2
            assert (await other.authorize("GOOD")).id_tag_info["status"] == "Accepted"  # CP2 may stop it

            assert (await api.put("/api/id-tags/GOOD", json={"status": "Blocked"}, headers=AUTH)).status == 200
            assert (await other.authorize("GOOD")).id_tag_info["status"] == "Blocked"  # applies at once, no actor told
            assert (await api.delete("/api/id-tags/GOOD", headers=AUTH)).status == 200
            assert (await cp.authorize("GOOD")).id_tag_info["status"] == "Invalid"
            listing = await (await api.get("/api/id-tags", headers=AUTH)).json()
            assert [t["id_tag"] for t in listing["id_tags"]] == ["BAD", "KID", "OLD"] and listing["list_version"] == 6
            assert (await api.get("/api/id-tags")).status == 401  # card numbers are not for anyone on the LAN
    finally:
        await central.close()


async def test_local_list_sync_sends_full_then_differential_and_records_what_the_charger_accepted(central, operator):
    api = operator
    cp = await central.charger("CP-S")
    for tag, body in (("A", {}), ("B", {"status": "Blocked"}), ("C", {"parent_id_tag": "A"})):
        assert (await api.put(f"/api/id-tags/{tag}", json=body, headers=AUTH)).status == 200
    before = await (await api.get("/api/chargers/CP-S/local-list/state", headers=AUTH)).json()
    assert before["charger_version"] is None and not before["in_sync"]

    first = await api.post("/api/chargers/CP-S/local-list/sync", headers=AUTH)
    assert first.status == 200
    body = await first.json()
    assert (body["status"], body["update_type"], body["entries"], body["list_version"], body["charger_version"]) == ("Accepted", "Full", 3, 3, 3)
    assert cp.local_list_version == 3 and set(cp.local_list) == {"A", "B", "C"}
    assert cp.local_list["B"]["status"] == "Blocked"

    assert (await api.delete("/api/id-tags/A", headers=AUTH)).status == 200
    assert (await api.put("/api/id-tags/D", json={}, headers=AUTH)).status == 200
    second = await (await api.post("/api/chargers/CP-S/local-list/sync", headers=AUTH)).json()
    assert (second["status"], second["update_type"], second["entries"], second["charger_version"], second["in_sync"]) == ("Accepted", "Differential", 2, 5, True)
    assert set(cp.local_list) == {"B", "C", "D"} and cp.local_list_version == 5
    sent = cp.received["SendLocalList"][-1]["local_authorization_list"]
    assert {e["id_tag"]: "id_tag_info" in e for e in sent} == {"A": False, "D": True}  # A removed, D added

    cp.local_list_version = 99  # the charger's list is not what we sent (restored, replaced): a Differential would mismatch
    assert (await api.put("/api/id-tags/E", json={}, headers=AUTH)).status == 200
    third = await (await api.post("/api/chargers/CP-S/local-list/sync", headers=AUTH)).json()
    assert [r["update_type"] for r in cp.received["SendLocalList"][-2:]] == ["Differential", "Full"]
    assert (third["status"], third["update_type"], third["charger_version"]) == ("Accepted", "Full", 6)
    assert set(cp.local_list) == {"B", "C", "D", "E"}

    cp.local_list_supported = False
    assert (await api.put("/api/id-tags/F", json={}, headers=AUTH)).status == 200
    refused = await api.post("/api/chargers/CP-S/local-list/sync", headers=AUTH)
    assert refused.status == 409 and (await refused.json())["status"] == "NotSupported"
    assert local_auth_list.charger_local_list(central.conn, "CP-S")["version"] == 6  # what it last accepted


def test_list_version_moves_only_on_changes_and_survives_an_old_database(tmp_path):
    """A database from before the versioned list upgrades in place: its entries count as version 1."""
    from storage.db import connect, migrate

    path = tmp_path / "old.db"
    conn = connect(path)
    migrate(conn, charger_store.COMPONENT, charger_store.MIGRATIONS[:2])
    conn.execute("INSERT INTO auth_list (id_tag, status) VALUES ('LEGACY', 'Accepted')")
    conn.execute("INSERT INTO chargers (charge_point_id, auth_key_hash, registration_status, created) VALUES (?, ?, 'Accepted', 1)",
                 ("OLDCP", charger_store.hash_auth_key(REAL_KEY)))
    charger_store.init(conn)
    tx_store.init(conn)
    assert local_auth_list.local_list_version(conn) == 1
    assert local_auth_list.get_authorization(conn, "LEGACY")["status"] == "Accepted"
    old = charger_store.get_charger(conn, "OLDCP")
    assert old["confirmed"] and old["key_set"] and not old["blocked"]  # nothing is locked out by the upgrade
    assert Authenticator(conn, "reject").check("OLDCP", basic("OLDCP", REAL_KEY)["Authorization"]).allowed
    assert local_auth_list.set_authorization(conn, "LEGACY", "Accepted", now=time.time()) == 1  # unchanged: no new version
    assert local_auth_list.set_authorization(conn, "LEGACY", "Blocked") == 2
    assert not local_auth_list.remove_authorization(conn, "NEVER")
    assert local_auth_list.local_list_version(conn) == 2
    conn.close()
