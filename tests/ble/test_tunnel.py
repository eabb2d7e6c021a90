"""The EGWTTP tunnel protocol, driven directly (no BLE): reassembly, errors, paging, scope, setup code."""

from __future__ import annotations

import json

import pytest

from actors.ble.dispatch import HttpDispatcher
from actors.ble.setup_code import SetupCodeGuard
from actors.ble.tunnel import BLE_ENDPOINTS, METHODS, DispatchResult, Limits, Tunnel, TunnelRequest
from tests.ble.conftest import parse_page


class RecordingDispatcher:
    """Answers every request with a fixed body and counts executions."""

    def __init__(self, body: bytes = b'{"ok": true}', status: int = 200) -> None:
        self.body = body
        self.status = status
        self.calls: list[tuple[str, str, dict, bytes]] = []

    async def dispatch(self, method, path, headers, body):
        self.calls.append((method, path, dict(headers), body))
        return DispatchResult(self.status, {"Content-Type": "application/json; charset=utf-8"}, self.body)


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


CODE = "ABCD-EFGH-JKMN"
SC = b"Setup-Code: " + CODE.encode() + b"\r\n"  # the header line a write carries
# protocol mechanics are tested on made-up paths; the gateway's own scope has tests of its own
ANY_PATH = frozenset((m, p) for m in METHODS for p in ("/api/health", "/api/settings", "/api/thing", "/api/x", "/api/y", "/api/ok", "/api/0", "/api/1", "/api/2",
                                                          "/api/echo", "/api/count", "/api/missing", "/api/wifi"))


def make_tunnel(dispatcher=None, window=True, token="secret-token", limits=None, clock=None, endpoints=ANY_PATH, guard=None):
    state = {"open": window}
    clock = clock or Clock()
    tunnel = Tunnel(dispatcher or RecordingDispatcher(), lambda: state["open"], lambda: token, guard or SetupCodeGuard(CODE, clock), limits or Limits(), clock, endpoints=endpoints)
    return tunnel, state


async def roundtrip(tunnel: Tunnel, *writes: bytes):
    result = None
    for data in writes:
        result = tunnel.feed(data)
        if isinstance(result, bytes):
            return parse_page(result)
    assert isinstance(result, TunnelRequest), f"request not complete after all writes: {result!r}"
    return parse_page(await tunnel.handle(result))


async def test_get_in_one_write_is_forwarded_and_answered():
    dispatcher = RecordingDispatcher(b'{"state": "running"}')
    tunnel, _ = make_tunnel(dispatcher)
    page = await roundtrip(tunnel, b"GET /api/health EGWTTP/1.1\r\n\r\n")
    assert page.status == 200 and page.reason == "OK"
    assert page.headers["location"] == "/api/health" and page.headers["method"] == "GET"
    assert page.headers["content-type"] == "application/json"
    assert page.headers["content-length"] == str(len(b'{"state": "running"}'))
    assert page.body == b'{"state": "running"}'
    assert dispatcher.calls == [("GET", "/api/health", {}, b"")]


async def test_request_split_across_writes_is_reassembled():
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher)
    body = json.dumps({"name": "x" * 300}).encode()
    raw = b"POST /api/settings EGWTTP/1.1\r\nContent-Type: application/json\r\nAuthorization: Bearer t\r\n" + SC + b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body
    chunks = [raw[i : i + 20] for i in range(0, len(raw), 20)]
    page = await roundtrip(tunnel, *chunks)
    assert page.status == 200
    # the phone's own Authorization is dropped; the tunnel adds the gateway's token on the loopback hop
    assert dispatcher.calls == [("POST", "/api/settings", {"content-type": "application/json", "authorization": "Bearer secret-token"}, body)]


async def test_large_response_is_paged_and_a_post_runs_once():
    body = json.dumps({"items": list(range(200))}).encode()
    dispatcher = RecordingDispatcher(body)
    tunnel, _ = make_tunnel(dispatcher)
    request = b'POST /api/thing EGWTTP/1.1\r\nSetup-Code: ABCD-EFGH-JKMN\r\nContent-Length: 2\r\nOffset: %d\r\n\r\n{}'
    collected = b""
    while True:
        page = await roundtrip(tunnel, request % len(collected))
        assert page.status == 200 and int(page.headers["offset"]) == len(collected)
        assert len(page.raw) <= tunnel.limits.page_size
        collected += page.body
        if len(collected) >= int(page.headers["content-length"]):
            break
    assert collected == body
    assert len(dispatcher.calls) == 1


async def test_offset_without_a_cached_response_is_refused():
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher)
    page = await roundtrip(tunnel, b"POST /api/x EGWTTP/1.1\r\n" + SC + b"Content-Length: 0\r\nOffset: 10\r\n\r\n")
    assert page.status == 409
    assert dispatcher.calls == []


async def test_offset_beyond_the_body_is_416():
    tunnel, _ = make_tunnel(RecordingDispatcher(b"{}"))
    await roundtrip(tunnel, b"GET /api/x EGWTTP/1.1\r\n\r\n")
    page = await roundtrip(tunnel, b"GET /api/x EGWTTP/1.1\r\nOffset: 99\r\n\r\n")
    assert page.status == 416


async def test_request_id_makes_a_retransmitted_post_idempotent():
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher)
    raw = b"POST /api/x EGWTTP/1.1\r\nRequest-Id: 7\r\n" + SC + b"Content-Length: 0\r\n\r\n"
    assert (await roundtrip(tunnel, raw)).status == 200
    assert (await roundtrip(tunnel, raw)).status == 200
    assert len(dispatcher.calls) == 1
    # without Request-Id, a repeated POST is a new request and runs again
    await roundtrip(tunnel, b"POST /api/x EGWTTP/1.1\r\n" + SC + b"Content-Length: 0\r\n\r\n")
    await roundtrip(tunnel, b"POST /api/x EGWTTP/1.1\r\n" + SC + b"Content-Length: 0\r\n\r\n")
    assert len(dispatcher.calls) == 3


@pytest.mark.parametrize(
    ("writes", "status", "detail_part"),
    [
        ([b"\x00\x01garbage\xff"], 400, "not an EGWTTP/1.1 request"),
        ([b"hello world\r\n\r\n"], 400, "not an EGWTTP/1.1 request"),
        ([b"GET /api/x EGWTTP/1.1\r\nName: caf\xc3\r\n\r\n"], 400, "head is not valid UTF-8"),
        ([b"POST /api/x EGWTTP/1.1\r\nContent-Length: 2\r\n\r\n\xff\xfe"], 400, "body is not valid UTF-8"),
        ([b"BREW /api/x EGWTTP/1.1\r\n\r\n"], 501, "unknown method 'BREW'"),
        ([b"GET /api/x HTTP/1.1\r\n\r\n"], 505, "not supported"),
        ([b"GET api/x EGWTTP/1.1\r\n\r\n"], 400, "path must start with '/'"),
        ([b"GET /api/x\r\n\r\n"], 400, "malformed request line"),
        ([b"POST /api/x EGWTTP/1.1\r\n\r\n{}"], 411, "missing header Content-Length"),
        ([b"POST /api/x EGWTTP/1.1\r\nContent-Length: abc\r\n\r\n"], 400, "Content-Length must be"),
        ([b"GET /api/x EGWTTP/1.1\r\nno colon here\r\n\r\n"], 400, "malformed header line"),
        ([b"GET /api/x EGWTTP/1.1\r\nOffset: -1\r\n\r\n"], 400, "Offset must be"),
        ([b"GET /api/x EGWTTP/1.1\r\nA: 1\r\na: 2\r\n\r\n"], 400, "duplicate header"),
        ([b"POST /api/x EGWTTP/1.1\r\nContent-Length: 1\r\n\r\n{}"], 400, "body longer than Content-Length 1"),
        ([b"POST /api/x EGWTTP/1.1\r\nContent-Length: 999999\r\n\r\n"], 413, "body exceeds 16384 bytes"),
        ([b"GET /api/x EGWTTP/1.1\r\nX: " + b"a" * 3000], 431, "head exceeds 2048 bytes"),
        ([b"GET /api/" + b"a" * 100 + b" EGWTTP/1.1\r\n\r\n"], 414, "path longer than 62 bytes"),
    ],
)
async def test_malformed_requests_get_precise_errors_and_nothing_is_dispatched(writes, status, detail_part):
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher)
    page = await roundtrip(tunnel, *writes)
    assert page.status == status
    assert detail_part in page.body.decode()
    assert len(page.body) == int(page.headers["content-length"]), "an error must fit in one page"
    assert dispatcher.calls == []
    # the tunnel is ready for the next request straight away
    assert (await roundtrip(tunnel, b"GET /api/ok EGWTTP/1.1\r\n\r\n")).status == 200


async def test_rest_of_an_oversize_body_is_skipped_not_reported_as_garbage():
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher, limits=Limits(max_body=100))
    head = b"POST /api/x EGWTTP/1.1\r\nContent-Length: 300\r\n\r\n"
    first = tunnel.feed(head + b"a" * 50)
    assert parse_page(first).status == 413
    assert tunnel.feed(b"a" * 200) is None
    assert tunnel.feed(b"a" * 50) is None
    assert (await roundtrip(tunnel, b"GET /api/ok EGWTTP/1.1\r\n\r\n")).status == 200


async def test_abandoned_partial_request_does_not_prefix_the_next_one():
    clock = Clock()
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher, clock=clock)
    assert tunnel.feed(b"POST /api/x EGWTTP/1.1\r\nContent-Length: 10\r\n\r\nabc") is None
    clock.now += 60
    assert (await roundtrip(tunnel, b"GET /api/y EGWTTP/1.1\r\n\r\n")).status == 200
    assert [c[1] for c in dispatcher.calls] == ["/api/y"]


class RecordingLog:
    def __init__(self) -> None:
        self.lines: list[str] = []

    def info(self, msg, **fields):
        self.lines.append(f"{msg} {fields!r}")

    warning = error = info


async def test_the_api_token_is_never_given_over_ble():
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher, token="tok-123456", endpoints=BLE_ENDPOINTS)  # the window is open
    for raw in (b"GET /api/token EGWTTP/1.1\r\n\r\n", b"GET /api/token EGWTTP/1.1\r\n" + SC + b"\r\n", b"GET /api/token EGWTTP/1.1\r\nOffset: 1\r\n\r\n"):
        page = await roundtrip(tunnel, raw)
        assert page.status == 403 and page.body == b"API token never given over BLE" and b"tok-123456" not in page.raw
    assert dispatcher.calls == []


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/api/devices"), ("DELETE", "/api/devices/roof"), ("PUT", "/api/transports/fleet"), ("POST", "/api/transports/fleet/dead-letters/resend"),
        ("POST", "/api/chargers/CP1/reset"), ("POST", "/api/chargers/CP1/remote-start"), ("POST", "/api/ble/window"), ("DELETE", "/api/ble/window"),
        ("GET", "/api/config"), ("GET", "/api/chargers"), ("GET", "/api/openapi.json"), ("PUT", "/api/wifi"),
        ("GET", "/api/wifi?x=1"), ("GET", "/api//wifi"), ("GET", "/api/wifi/"), ("GET", "/api/wifi/../token"), ("GET", "/api/%77ifi"),
    ],
)
async def test_endpoints_outside_the_ble_scope_are_refused_before_the_api(method, path):
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher, endpoints=BLE_ENDPOINTS)
    body = b"{}" if method in ("POST", "PUT") else b""
    raw = f"{method} {path} EGWTTP/1.1\r\n".encode() + SC + (b"Content-Length: 2\r\n" if body else b"") + b"\r\n" + body
    page = await roundtrip(tunnel, raw)
    assert page.status == 403 and page.body == b"not available over BLE"  # the whole error in one page
    assert dispatcher.calls == []


async def test_wifi_set_up_and_status_are_served_over_ble():
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher, endpoints=BLE_ENDPOINTS)
    for raw in (b"GET /api/health EGWTTP/1.1\r\n\r\n", b"GET /api/ble EGWTTP/1.1\r\n\r\n", b"GET /api/wifi EGWTTP/1.1\r\n\r\n",
                b"GET /api/wifi/scan EGWTTP/1.1\r\n\r\n", b"POST /api/wifi EGWTTP/1.1\r\n" + SC + b"Content-Length: 2\r\n\r\n{}",
                b"DELETE /api/wifi EGWTTP/1.1\r\n" + SC + b"\r\n"):
        assert (await roundtrip(tunnel, raw)).status == 200
    assert [(m, p) for m, p, _, _ in dispatcher.calls] == [("GET", "/api/health"), ("GET", "/api/ble"), ("GET", "/api/wifi"), ("GET", "/api/wifi/scan"),
                                                          ("POST", "/api/wifi"), ("DELETE", "/api/wifi")]
    assert [h.get("authorization") for _, _, h, _ in dispatcher.calls] == [None] * 4 + ["Bearer secret-token"] * 2  # reads go without the token


async def test_writes_without_the_right_setup_code_are_refused():
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher, endpoints=BLE_ENDPOINTS)
    post = b"POST /api/wifi EGWTTP/1.1\r\n%sAuthorization: Bearer secret-token\r\nContent-Length: 2\r\n\r\n{}"
    page = await roundtrip(tunnel, post % b"")
    assert page.status == 401 and page.body == b"send Setup-Code (on the gateway's label)"  # even with the API token: over BLE the code is the credential
    page = await roundtrip(tunnel, post % b"Setup-Code: ABCD-EFGH-JKMP\r\n")
    assert page.status == 401 and page.body == b"wrong setup code"
    assert (await roundtrip(tunnel, b"DELETE /api/wifi EGWTTP/1.1\r\nSetup-Code: \r\n\r\n")).status == 401
    assert dispatcher.calls == []
    assert (await roundtrip(tunnel, post % b"Setup-Code: abcd efgh jkmn\r\n")).status == 200  # as typed off the label
    assert len(dispatcher.calls) == 1


async def test_wrong_setup_codes_lock_guessing_out_for_growing_times():
    clock = Clock()
    dispatcher = RecordingDispatcher()
    tunnel, _ = make_tunnel(dispatcher, clock=clock, endpoints=BLE_ENDPOINTS)
    wrong = b"DELETE /api/wifi EGWTTP/1.1\r\nSetup-Code: 2222-2222-%04d\r\n\r\n"
    right = b"DELETE /api/wifi EGWTTP/1.1\r\n" + SC + b"\r\n"

    async def body(raw: bytes) -> tuple[int, bytes]:
        page = await roundtrip(tunnel, raw)
        return page.status, page.body

    assert [await body(wrong % i) for i in range(4)] == [(401, b"wrong setup code")] * 4
    assert await body(wrong % 4) == (401, b"wrong setup code; locked for 30 s")
    assert await body(right) == (429, b"too many wrong setup codes: try again in 30 s")  # not even the right code, while locked
    clock.now += 29
    assert await body(wrong % 5) == (429, b"too many wrong setup codes: try again in 1 s")  # attempts while locked are not checked
    clock.now += 1
    assert await body(wrong % 6) == (401, b"wrong setup code; locked for 60 s")  # each further wrong code doubles it
    clock.now += 60
    assert await body(wrong % 7) == (401, b"wrong setup code; locked for 120 s")
    for i in range(8, 14):
        clock.now += 1000
        await body(wrong % i)
    assert tunnel.guard.locked_for() == 900  # capped at 15 minutes
    assert dispatcher.calls == []
    clock.now += 900
    assert (await body(right))[0] == 200 and len(dispatcher.calls) == 1
    assert await body(wrong % 99) == (401, b"wrong setup code")  # the right code reset the count


async def test_setup_code_and_token_never_logged_nor_forwarded():
    dispatcher = RecordingDispatcher()
    log = RecordingLog()
    tunnel = Tunnel(dispatcher, lambda: True, lambda: "tok-abcdef", SetupCodeGuard(CODE, Clock()), log=log)
    await roundtrip(tunnel, b"POST /api/wifi EGWTTP/1.1\r\nSetup-Code: ZZZZ-ZZZZ-ZZZZ\r\nContent-Length: 2\r\n\r\n{}")
    await roundtrip(tunnel, b"POST /api/wifi EGWTTP/1.1\r\n" + SC + b"Content-Length: 2\r\n\r\n{}")
    await roundtrip(tunnel, b"GET /api/token EGWTTP/1.1\r\n\r\n")
    text = "\n".join(log.lines)
    assert "setup code refused" in text and "request served" in text
    for secret in ("ABCD", "ZZZZ", "tok-abcdef"):
        assert secret not in text
    ((_, _, headers, _),) = dispatcher.calls
    assert "setup-code" not in headers and headers["authorization"] == "Bearer tok-abcdef"


async def test_writes_refused_outside_the_window_reads_still_served():
    dispatcher = RecordingDispatcher()
    tunnel, window = make_tunnel(dispatcher)
    window["open"] = False
    page = await roundtrip(tunnel, b"POST /api/wifi EGWTTP/1.1\r\n" + SC + b"Content-Length: 2\r\n\r\n{}")
    assert page.status == 403 and b"window" in page.body
    page = await roundtrip(tunnel, b"DELETE /api/wifi EGWTTP/1.1\r\n" + SC + b"\r\n")
    assert page.status == 403
    assert dispatcher.calls == []
    assert (await roundtrip(tunnel, b"GET /api/health EGWTTP/1.1\r\n\r\n")).status == 200


async def test_a_write_before_the_api_token_exists_is_503():
    tunnel, _ = make_tunnel(token=None)
    assert (await roundtrip(tunnel, b"DELETE /api/wifi EGWTTP/1.1\r\n" + SC + b"\r\n")).status == 503


async def test_cache_is_bounded():
    dispatcher = RecordingDispatcher(b"x" * 1000)
    tunnel, _ = make_tunnel(dispatcher, limits=Limits(cache_entries=2))
    for i in range(3):
        await roundtrip(tunnel, b"GET /api/%d EGWTTP/1.1\r\n\r\n" % i)
    assert (await roundtrip(tunnel, b"GET /api/0 EGWTTP/1.1\r\nOffset: 100\r\n\r\n")).status == 409
    assert (await roundtrip(tunnel, b"GET /api/2 EGWTTP/1.1\r\nOffset: 100\r\n\r\n")).status == 200


# ------------------------------------------------------------ the HTTP dispatcher
async def test_http_dispatcher_forwards_to_a_real_api_with_status_and_auth(aiohttp_api):
    token = {"value": "not-the-api-token"}
    tunnel = Tunnel(HttpDispatcher(aiohttp_api.port), lambda: True, lambda: token["value"], SetupCodeGuard(CODE), endpoints=ANY_PATH)
    page = await roundtrip(tunnel, b"GET /api/echo EGWTTP/1.1\r\n\r\n")
    assert page.status == 200 and json.loads(page.body) == {"echo": "hello"}
    page = await roundtrip(tunnel, b"POST /api/count EGWTTP/1.1\r\n" + SC + b"Content-Length: 2\r\n\r\n{}")
    assert page.status == 401 and aiohttp_api.count == 0  # the API's own token check applies to tunnelled requests
    token["value"] = aiohttp_api.token
    page = await roundtrip(tunnel, b"POST /api/count EGWTTP/1.1\r\n" + SC + b"Content-Length: 2\r\n\r\n{}")
    assert page.status == 201 and aiohttp_api.count == 1
    page = await roundtrip(tunnel, b"GET /api/missing EGWTTP/1.1\r\n\r\n")
    assert page.status == 404
    await tunnel.dispatcher.close()


async def test_http_dispatcher_reports_an_unreachable_api_as_502(unused_tcp_port):
    tunnel = Tunnel(HttpDispatcher(unused_tcp_port), lambda: True, lambda: "t", SetupCodeGuard(CODE))
    page = await roundtrip(tunnel, b"GET /api/health EGWTTP/1.1\r\n\r\n")
    assert page.status == 502 and page.body == b"local API unreachable"
    await tunnel.dispatcher.close()


async def test_http_dispatcher_reads_a_body_that_arrives_in_pieces_and_bounds_it():
    """A streamed body arrives in several TCP segments; all of it is read, up to the bound."""
    import asyncio

    from aiohttp import web

    release = asyncio.Event()

    async def streamed(request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        await response.prepare(request)
        await response.write(b'{"part": "' + b"a" * 3000)
        await release.wait()  # the rest only after the client has seen the first piece
        await response.write(b"b" * 3000 + b'"}')
        await response.write_eof()
        return response

    app = web.Application()
    app.router.add_get("/api/streamed", streamed)
    runner = web.AppRunner(app)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    port = runner.addresses[0][1]
    whole = HttpDispatcher(port)
    bounded = HttpDispatcher(port, max_response=4000)
    try:
        loop = asyncio.get_running_loop()
        loop.call_later(0.05, release.set)
        result = await whole.dispatch("GET", "/api/streamed", {}, b"")
        assert result.status == 200 and json.loads(result.body) == {"part": "a" * 3000 + "b" * 3000}
        release.clear()
        loop.call_later(0.05, release.set)
        assert len((await bounded.dispatch("GET", "/api/streamed", {}, b"")).body) == 4001  # enough to say "too large"
    finally:
        await whole.close()
        await bounded.close()
        await runner.cleanup()
