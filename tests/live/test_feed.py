"""The feed over real websockets and SSE on loopback, driven by a simulated charging session."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket
import time

import aiohttp

from actors.live.hub import Hub
from actors.live.messages import LiveEvent
from actors.live.tokens import TransactionOwner, issue_transaction_token
from tests.live.charger_link import Charger
from tests.live.conftest import API_TOKEN, AUTH, read_sse, receive_json, receive_until, start_server, wait_for

SAMPLES = 20


async def subscribe(ws, topic: str, **extra) -> dict:
    await ws.send_json({"op": "subscribe", "topic": topic, **extra})
    return (await receive_until(ws, lambda m: m["type"] in ("subscribed", "error")))[-1]


async def test_a_transaction_subscriber_sees_every_meter_value_of_a_session_in_order(live, http, tmp_path):
    charger = Charger(tmp_path / "egw.db", live.hub)
    cp = await charger.boot()
    await cp.status(1, "Preparing")
    transaction_id = await cp.start_transaction(1, "ALICE", meter_start=1000)
    async with http.ws_connect(live.ws_url(), headers=AUTH) as ws:
        subscribed = await subscribe(ws, f"transaction/{transaction_id}", resume_from=1)  # from the session's start
        assert subscribed["topic"] == f"transaction/{transaction_id}"
        await cp.status(1, "Charging")
        for i in range(1, SAMPLES + 1):
            await cp.meter(1, transaction_id, 1000 + 100 * i, 7000.0 + i)
        await cp.stop_transaction(transaction_id, 1000 + 100 * SAMPLES + 50)
        got = [m for m in await receive_until(ws, lambda m: m.get("kind") == "stopped") if m["type"] == "event"]
    await charger.close()
    assert [m["seq"] for m in got] == list(range(1, len(got) + 1))  # no gaps
    assert got[0]["kind"] == "started" and got[0]["data"]["id_tag"] == "ALICE"
    assert got[-1]["kind"] == "stopped" and got[-1]["data"]["meter_stop_wh"] == 1000 + 100 * SAMPLES + 50
    assert [m["data"]["status"] for m in got if m["kind"] == "status"] == ["Charging"]
    meter = [m["data"] for m in got if m["kind"] == "meter_values"]
    # every MeterValues in order, then the final figures of StopTransaction
    assert [d["energy_wh"] for d in meter[:SAMPLES]] == [1000 + 100 * i for i in range(1, SAMPLES + 1)]
    assert [d["power_w"] for d in meter[:SAMPLES]] == [7000.0 + i for i in range(1, SAMPLES + 1)]
    assert meter[-1]["energy_wh"] == 1000 + 100 * SAMPLES + 50 and meter[-1]["power_w"] == 0.0


async def test_the_charger_topic_carries_connector_states_and_session_boundaries(live, http, tmp_path):
    charger = Charger(tmp_path / "egw.db", live.hub)
    cp = await charger.boot()
    async with http.ws_connect(live.ws_url("topic=charger/CP-1"), headers=AUTH) as ws:
        await receive_until(ws, lambda m: m["type"] == "subscribed")
        await cp.status(1, "Preparing")
        transaction_id = await cp.start_transaction(1, "BOB", meter_start=0)
        await cp.meter(1, transaction_id, 500, 3000.0)  # meter values go to the transaction topic only
        await cp.stop_transaction(transaction_id, 900)
        await cp.status(1, "Available")
        got = await receive_until(ws, lambda m: m.get("data", {}).get("status") == "Available")
    await charger.close()
    assert [(m["kind"], m["seq"]) for m in got] == [("connector_status", 1), ("transaction_started", 2), ("transaction_stopped", 3), ("connector_status", 4)]


async def test_a_client_that_disconnects_and_resumes_gets_exactly_the_missed_events(live, http):
    def publish(n: int) -> None:
        live.hub.publish(LiveEvent("device/inv1", "reading", {"n": n}))

    async with http.ws_connect(live.ws_url("topic=device/inv1"), headers=AUTH) as ws:
        await receive_until(ws, lambda m: m["type"] == "subscribed")
        for n in range(5):
            publish(n)
        first = await receive_until(ws, lambda m: m.get("seq") == 5)
        epoch = first[-1]["epoch"]
    for n in range(5, 12):  # missed while away
        publish(n)
    async with http.ws_connect(live.ws_url(), headers=AUTH) as ws:
        subscribed = await subscribe(ws, "device/inv1", resume_from=6, epoch=epoch)
        assert subscribed["replayed"] == 7
        publish(12)
        again = await receive_until(ws, lambda m: m.get("seq") == 13)
    assert [(m["seq"], m["data"]["n"]) for m in again] == [(s, s - 1) for s in range(6, 14)]


async def test_sse_streams_a_topic_and_last_event_id_resumes_exactly(live, http):
    url = f"{live.url}/api/live/sse?topic=transaction/5"
    for n in range(3):
        live.hub.publish(LiveEvent("transaction/5", "meter_values", {"energy_wh": n}))
    async with http.get(url + "&resume_from=1", headers=AUTH) as response:
        assert response.status == 200 and response.headers["Content-Type"] == "text/event-stream"
        got = await read_sse(response, 4)
    assert got[0]["event"] == "subscribed" and got[0]["data"]["replayed"] == 3
    assert [e["data"]["seq"] for e in got[1:]] == [1, 2, 3]
    last_id = got[-1]["id"]
    assert last_id == f"{live.hub.epoch}:3"
    for n in range(3, 6):
        live.hub.publish(LiveEvent("transaction/5", "meter_values", {"energy_wh": n}))
    async with http.get(url + "&resume_from=1", headers={**AUTH, "Last-Event-ID": last_id}) as response:  # the header wins
        got = await read_sse(response, 4)
    assert [e["data"]["seq"] for e in got[1:]] == [4, 5, 6]
    async with http.get(url, headers={**AUTH, "Last-Event-ID": "an-old-epoch:3"}) as response:
        got = await read_sse(response, 2)
    assert got[0]["event"] == "resync" and got[0]["data"]["rest"] == "/api/transactions/5"


class StalledClient:
    """A websocket client that completes the handshake and then stops reading (tiny receive buffer)."""

    def __init__(self, url: str, path: str) -> None:
        host, port = url.removeprefix("http://").split(":")
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
        self.sock.connect((host, int(port)))
        key = base64.b64encode(os.urandom(16)).decode()
        self.sock.sendall((f"GET {path} HTTP/1.1\r\nHost: {host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                           f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\nAuthorization: Bearer {API_TOKEN}\r\n\r\n").encode())
        self.buffer = b""
        while b"\r\n\r\n" not in self.buffer:
            self.buffer += self.sock.recv(1)  # byte by byte: nothing after the headers is read now
        assert self.buffer.startswith(b"HTTP/1.1 101")
        self.buffer = b""

    def messages(self, timeout: float = 10.0):
        """Read again: every text message still on its way, until the server closes."""
        self.sock.settimeout(timeout)
        while True:
            chunk = self.sock.recv(65536)
            if not chunk:
                break
            self.buffer += chunk
        out, data = [], self.buffer
        while len(data) >= 2:
            opcode, length, at = data[0] & 0x0F, data[1] & 0x7F, 2
            if length == 126:
                length, at = int.from_bytes(data[2:4], "big"), 4
            elif length == 127:
                length, at = int.from_bytes(data[2:10], "big"), 10
            if opcode == 1:
                out.append(json.loads(data[at:at + length]))
            data = data[at + length:]
        return out

    def close(self) -> None:
        self.sock.close()


async def test_a_stalled_client_is_marked_lagged_while_others_keep_receiving_in_time(http):
    server, runner = await start_server(Hub(history=64, queue_size=16, max_lags=2), send_timeout=30.0)
    hub = server.hub
    try:
        stalled = await asyncio.to_thread(StalledClient, server.url, "/api/live?topic=device/inv1")
        await wait_for(lambda: len(hub.subscribers) == 1, what="stalled client subscribed")
        [stalled_subscriber] = hub.subscribers
        async with http.ws_connect(server.ws_url("topic=device/inv1"), headers=AUTH) as good:
            await receive_until(good, lambda m: m["type"] == "subscribed")
            payload = {"blob": "x" * 8000}
            seqs: list[int] = []
            while not stalled_subscriber.total_lags:  # publish until the stalled client has lagged, reading the good one in step
                seq = hub.publish(LiveEvent("device/inv1", "reading", payload))
                seqs.append((await receive_json(good, timeout=2.0))["seq"])  # each one arrives before the next is sent
                assert seq < 5000, "the stalled client never lagged"
            for _ in range(50):  # long after the lag, the good client is still served at once
                hub.publish(LiveEvent("device/inv1", "reading", payload))
                seqs.append((await receive_json(good, timeout=2.0))["seq"])
            assert stalled_subscriber.closing and stalled_subscriber.close_reason == "lagged"  # it never caught up
        assert seqs == list(range(1, len(seqs) + 1))
        assert hub.lagged >= 1 and stalled_subscriber.dropped > 0
        # when the stalled client reads again, its stream says explicitly that it lagged
        received = await asyncio.to_thread(stalled.messages)
        lagged = [m for m in received if m["type"] == "lagged"]
        assert lagged and lagged[0]["resume_from"]["device/inv1"] > 1
        assert lagged[-1]["disconnect"] is True
        events = [m["seq"] for m in received if m["type"] == "event"]
        assert events == list(range(1, len(events) + 1))  # what it did get has no silent holes before the lag
        stalled.close()
        await wait_for(lambda: not hub.subscribers or stalled_subscriber not in hub.subscribers, what="stalled client removed")
    finally:
        await runner.cleanup()


async def test_without_the_right_token_a_subscriber_is_refused(live, http):
    async with http.get(f"{live.url}/api/live/sse?topic=gateway") as response:
        assert response.status == 401 and (await response.json())["error"] == "unauthorized"
    async with http.get(f"{live.url}/api/live/sse?topic=gateway", headers={"Authorization": "Bearer wrong"}) as response:
        assert response.status == 401
    other = issue_transaction_token(API_TOKEN, 8)
    async with http.get(f"{live.url}/api/live/sse?topic=transaction/9&token={other}") as response:
        assert response.status == 403 and "transaction/9" in (await response.json())["message"]
    async with http.get(f"{live.url}/api/live/sse?topic=device/inv1&token={other}") as response:
        assert response.status == 403
    for query in ("topic=gateway", "token=wrong&topic=gateway"):  # refused at connect: no subscriber slot taken
        async with http.ws_connect(live.ws_url(query)) as ws:
            refused = await receive_json(ws)
            assert refused["type"] == "error" and refused["error"] == "unauthorized" and refused["status"] == 401
            closing = await ws.receive(2.0)
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4401
    async with http.ws_connect(live.ws_url(f"token={other}&topic=transaction/9")) as ws:
        refused = await receive_json(ws)
        assert refused["error"] == "forbidden"
        await ws.receive(2.0)
        assert ws.close_code == 4403
    await wait_for(lambda: live.hub.stats()["subscribers"] == 0, what="refused subscribers removed")


async def test_a_transaction_token_opens_only_its_own_session(live, http):
    token = issue_transaction_token(API_TOKEN, 8)
    async with http.get(f"{live.url}/api/live/sse?topic=transaction/8", headers={"Authorization": f"Bearer {token}"}) as response:
        assert response.status == 200
    forged = token[:-2] + ("AA" if not token.endswith("AA") else "BB")
    async with http.get(f"{live.url}/api/live/sse?topic=transaction/8&token={forged}") as response:
        assert response.status == 401
    expired = issue_transaction_token(API_TOKEN, 8, now=time.time() - 2 * 24 * 3600)
    async with http.get(f"{live.url}/api/live/sse?topic=transaction/8&token={expired}") as response:
        assert response.status == 401


async def test_a_remote_start_token_opens_the_session_that_start_produced(live, http):
    token = issue_transaction_token(API_TOKEN, charger_id="CP-1", id_tag="ALICE")
    now = time.time()
    live.owners[31] = TransactionOwner("CP-1", "ALICE", now + 1)  # started after the request
    live.owners[30] = TransactionOwner("CP-1", "ALICE", now - 3600)  # an older session of the same driver
    live.owners[32] = TransactionOwner("CP-1", "MALLORY", now + 1)  # someone else's
    statuses = {}
    for transaction_id in (30, 31, 32, 33):
        async with http.get(f"{live.url}/api/live/sse?topic=transaction/{transaction_id}&token={token}") as response:
            statuses[transaction_id] = response.status
    assert statuses == {30: 403, 31: 200, 32: 403, 33: 403}


async def test_malformed_messages_get_a_precise_error_and_the_connection_stays(live, http):
    async with http.ws_connect(live.ws_url(), headers=AUTH) as ws:
        await ws.send_str("not json")
        assert (await receive_json(ws))["error"] == "bad_request"
        await ws.send_json({"op": "subscribe", "topic": "transaction/abc"})
        error = await receive_json(ws)
        assert error["error"] == "bad_request" and "32-bit integer" in error["message"]
        await ws.send_json({"op": "subscribe", "topic": "gateway", "resume_from": -1})
        assert "resume_from" in (await receive_json(ws))["message"]
        await ws.send_bytes(b"\x00")
        assert (await receive_json(ws))["error"] == "bad_request"
        assert (await subscribe(ws, "gateway"))["type"] == "subscribed"
        live.hub.publish(LiveEvent("gateway", "restart", {"child": "api"}))
        assert (await receive_json(ws))["data"] == {"child": "api"}
    async with http.get(f"{live.url}/api/live/sse?topic=nonsense", headers=AUTH) as response:
        assert response.status == 400 and "unknown topic" in (await response.json())["message"]


async def test_shutdown_closes_every_subscriber(http):
    server, runner = await start_server(Hub())
    ws = await http.ws_connect(server.ws_url("topic=gateway"), headers=AUTH)
    await receive_json(ws)
    sse = await http.get(f"{server.url}/api/live/sse?topic=gateway", headers=AUTH)
    await read_sse(sse, 1)
    await asyncio.wait_for(runner.cleanup(), 5.0)
    closing = await ws.receive(2.0)
    assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 1001  # "going away", not a silent drop
    assert await sse.content.read() == b""
    await wait_for(lambda: not server.hub.subscribers, what="subscribers gone")


async def test_an_idle_sse_stream_carries_keepalives_so_dead_peers_are_noticed(http):
    server, runner = await start_server(Hub(), keepalive=0.05)
    try:
        async with http.get(f"{server.url}/api/live/sse?topic=gateway", headers=AUTH) as response:
            lines = [await asyncio.wait_for(response.content.readline(), 2.0) for _ in range(6)]
        assert b": keepalive\n" in lines
    finally:
        await runner.cleanup()
