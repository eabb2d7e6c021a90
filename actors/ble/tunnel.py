"""The EGWTTP request tunnel: REST requests carried over two GATT characteristics.

A phone writes a request to the request characteristic, possibly split over several
writes because one ATT write carries at most MTU-3 bytes:

    METHOD /path EGWTTP/1.1\\r\\n
    Header: value\\r\\n            (Content-Length required for POST/PUT/PATCH)
    Offset: 0\\r\\n                (optional: first byte of the response body wanted)
    \\r\\n
    <body>

and reads (or is notified of) the response characteristic:

    EGWTTP/1.1 200 OK\\r\\n
    Location: /path\\r\\n
    Method: METHOD\\r\\n
    Content-Type: application/json\\r\\n
    Content-Length: <length of the whole body>\\r\\n
    Offset: <first body byte in this page>\\r\\n
    \\r\\n
    <body bytes from Offset, as many as fit in one page>

Why paging instead of long reads: bless drops the offset of BlueZ's long reads, so a
response value must fit into one read. A body longer than a page is fetched by sending
the same request again with `Offset: n`; those pages come from a per-request cache, so
paging never re-executes a POST. A `Request-Id` header makes the cache key explicit.

What may pass is decided here, not by the REST API: the radio is reachable by anyone
nearby, so the tunnel forwards only `BLE_ENDPOINTS` (Wi-Fi set-up and a few status
reads), refuses everything else itself (the API token above all: it never travels
over BLE), and lets a write through only inside the provisioning window and with the
installer's setup code (`actors.ble.setup_code`). The phone never holds the API
token: the tunnel adds it to a write it has let through, on the loopback hop.

This module is pure protocol (no BLE, no network): `RequestAssembler` turns writes
into requests or precise errors, `Tunnel` applies the rules and the cache and hands
requests to a `Dispatcher` (see `actors.ble.dispatch`).

Why one module: the request assembler, the paged response cache and the tunnel that joins
them implement one wire protocol (PROTOCOL.md) whose limits and error pages they share;
apart, the protocol would be spread over three files.
"""

from __future__ import annotations

import hashlib
import re
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from typing import Any, Protocol

from actors.ble.setup_code import SetupCodeGuard

PROTOCOL = "EGWTTP/1.1"
METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})
WRITE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
TOKEN_PATH = "/api/token"

# The REST endpoints a phone may reach over BLE, by exact method and path (no query
# strings, no alternative spellings). Everything a first-time set-up needs: is the
# gateway alive and well, the window's state, and Wi-Fi status, scan, connect and
# forget. The REST API has no gateway name/site setting to add. Not the token, not
# devices, chargers or transports: those are changed over the LAN with the token.
BLE_ENDPOINTS: frozenset[tuple[str, str]] = frozenset(
    {
        ("GET", "/api/hello"),
        ("GET", "/api/version"),
        ("GET", "/api/health"),
        ("GET", "/api/ble"),
        ("GET", "/api/wifi"),
        ("GET", "/api/wifi/scan"),
        ("POST", "/api/wifi"),
        ("DELETE", "/api/wifi"),
    }
)
SETUP_CODE_HEADER = "setup-code"

_METHOD_PREFIX = re.compile(rb"[A-Z]{1,10}( |$)")
_REQUEST_START = re.compile(rb"[A-Z]{1,10} /")
_PATH = re.compile(r"/[\x21-\x7e]*")
_HEADER_NAME = re.compile(r"[A-Za-z0-9-]{1,64}")


@dataclass(frozen=True)
class Limits:
    """Bounds of the tunnel: every buffer and cache has one.

    page_size is the largest response value: one ATT read (MTU-1) and one
    notification (MTU-3) must carry it, so it defaults to a 185-byte MTU (iOS).
    """

    max_head: int = 2048
    max_body: int = 16 * 1024
    max_response: int = 192 * 1024  # the OpenAPI document (~64 KiB) must fit, with room to grow
    page_size: int = 182
    cache_entries: int = 8
    cache_bytes: int = 512 * 1024
    stale_after: float = 10.0

    @property
    def max_path(self) -> int:
        """Longest path whose response head still leaves room for body bytes in one page."""
        return self.page_size - 120

    def __post_init__(self) -> None:
        if not 128 <= self.page_size <= 512:
            raise ValueError("page_size must be between 128 and 512 bytes (ATT value limit)")


@dataclass(frozen=True)
class TunnelRequest:
    method: str
    path: str
    headers: Mapping[str, str]  # names lower-cased
    body: bytes
    offset: int = 0

    @property
    def cache_key(self) -> tuple[str, str, str, str]:
        digest = hashlib.sha256(self.body).hexdigest()
        return (self.method, self.path, digest, self.headers.get("request-id", ""))


@dataclass(frozen=True)
class Response:
    """A complete response; pages are cut from it by `render_page`."""

    status: int
    body: bytes = b""
    content_type: str = "application/json"
    method: str = ""
    location: str = ""


@dataclass(frozen=True)
class DispatchResult:
    status: int
    headers: Mapping[str, str] = field(default_factory=dict)
    body: bytes = b""


class Dispatcher(Protocol):
    """Executes a request against the gateway's REST handlers."""

    async def dispatch(self, method: str, path: str, headers: Mapping[str, str], body: bytes) -> DispatchResult: ...


class TunnelError(Exception):
    """A request that cannot be served; becomes an error response with this status."""

    def __init__(self, status: int, detail: str, method: str = "", path: str = "") -> None:
        super().__init__(detail)
        self.status = status
        self.detail = detail
        self.method = method
        self.path = path

    def response(self) -> Response:
        return error_response(self.status, self.detail, self.method, self.path)


def error_response(status: int, detail: str, method: str = "", path: str = "") -> Response:
    """Errors are short plain text so that status line, headers and detail fit in one page:
    a request rejected before it was understood has no cached response to page through."""
    return Response(status, detail.encode(), "text/plain", method, path)


def _reason(status: int) -> str:
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return "Unknown"


def render_page(response: Response, offset: int, page_size: int) -> bytes:
    """The response value for one read: status line, headers, and as much body as fits."""
    head = (
        f"{PROTOCOL} {response.status} {_reason(response.status)}\r\n"
        f"Location: {response.location}\r\n"
        f"Method: {response.method}\r\n"
        f"Content-Type: {response.content_type}\r\n"
        f"Content-Length: {len(response.body)}\r\n"
        f"Offset: {offset}\r\n\r\n"
    ).encode()
    room = max(page_size - len(head), 1)
    return head + response.body[offset : offset + room]


# --------------------------------------------------------------------- reassembly
class RequestAssembler:
    """Collects writes until a whole request is there; rejects bad input as early as possible.

    `feed` returns a `TunnelRequest` when one is complete, None while more bytes are
    needed, and raises `TunnelError` for a request that can never become valid (the
    buffer is then emptied, and the rest of an oversize body is skipped so that its
    remaining writes do not turn into a stream of "garbage" errors; a write that
    starts like a new request line ends the skipping early).
    """

    def __init__(self, limits: Limits, clock: Callable[[], float] = time.monotonic) -> None:
        self.limits = limits
        self.clock = clock
        self._buffer = bytearray()
        self._last_write = 0.0
        self._skip = 0

    @property
    def pending(self) -> int:
        return len(self._buffer)

    def reset(self) -> None:
        self._buffer.clear()
        self._skip = 0

    def feed(self, data: bytes) -> TunnelRequest | None:
        now = self.clock()
        if (self._buffer or self._skip) and now - self._last_write > self.limits.stale_after:
            self.reset()  # an abandoned partial request must not prefix the next one
        self._last_write = now
        if self._skip and _REQUEST_START.match(data):
            self._skip = 0  # the phone gave up on the rejected body and sent a new request
        if self._skip:
            dropped = min(self._skip, len(data))
            self._skip -= dropped
            data = data[dropped:]
            if not data:
                return None
        self._buffer += data
        try:
            return self._parse()
        except TunnelError:
            self._buffer.clear()
            raise

    def _parse(self) -> TunnelRequest | None:
        buffer = bytes(self._buffer)
        if not _METHOD_PREFIX.match(buffer[:11]):
            raise TunnelError(400, f"not an {PROTOCOL} request")
        end = buffer.find(b"\r\n\r\n")
        if end < 0:
            if len(buffer) > self.limits.max_head:
                raise TunnelError(431, f"head exceeds {self.limits.max_head} bytes")
            return None
        if end > self.limits.max_head:
            raise TunnelError(431, f"head exceeds {self.limits.max_head} bytes")
        method, path, headers = self._parse_head(buffer[:end])
        body_start = end + 4
        length = self._content_length(method, path, headers)
        received = len(buffer) - body_start
        if received < length:
            return None
        if received > length:
            raise TunnelError(400, f"body longer than Content-Length {length}", method, path)
        body = buffer[body_start:]
        try:
            body.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TunnelError(400, f"body is not valid UTF-8 (byte {exc.start})", method, path) from None
        self._buffer.clear()
        return TunnelRequest(method, path, headers, body, self._offset(method, path, headers))

    def _parse_head(self, raw: bytes) -> tuple[str, str, dict[str, str]]:
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise TunnelError(400, f"head is not valid UTF-8 (byte {exc.start})") from None
        lines = text.split("\r\n")
        parts = lines[0].split(" ")
        if len(parts) != 3:
            raise TunnelError(400, "malformed request line")
        method, path, version = parts
        if method not in METHODS:
            raise TunnelError(501, f"unknown method {method[:10]!r}")
        if len(path) > self.limits.max_path:
            raise TunnelError(414, f"path longer than {self.limits.max_path} bytes", method)
        if not _PATH.fullmatch(path):
            raise TunnelError(400, "path must start with '/', visible ASCII only", method)
        if version != PROTOCOL:
            raise TunnelError(505, f"{version[:16]!r} not supported, use {PROTOCOL}", method, path)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not _HEADER_NAME.fullmatch(name):
                raise TunnelError(400, "malformed header line", method, path)
            key = name.lower()
            if key in headers:
                raise TunnelError(400, f"duplicate header {name[:24]}", method, path)
            headers[key] = value.strip()
        return method, path, headers

    def _content_length(self, method: str, path: str, headers: Mapping[str, str]) -> int:
        raw = headers.get("content-length")
        if raw is None:
            if method in BODY_METHODS:
                raise TunnelError(411, "missing header Content-Length", method, path)
            return 0
        if not raw.isdigit():
            raise TunnelError(400, "Content-Length must be a non-negative integer", method, path)
        length = int(raw)
        if length > self.limits.max_body:
            body_so_far = len(self._buffer) - (bytes(self._buffer).find(b"\r\n\r\n") + 4)
            self._skip = max(length - body_so_far, 0)
            raise TunnelError(413, f"body exceeds {self.limits.max_body} bytes", method, path)
        return length

    @staticmethod
    def _offset(method: str, path: str, headers: Mapping[str, str]) -> int:
        raw = headers.get("offset", "0")
        if not raw.isdigit():
            raise TunnelError(400, "Offset must be a non-negative integer", method, path)
        return int(raw)


# --------------------------------------------------------------------- the tunnel
class ResponseCache:
    """The last few responses by request, bounded in entries and bytes (LRU)."""

    def __init__(self, max_entries: int, max_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self._entries: OrderedDict[tuple, Response] = OrderedDict()
        self._bytes = 0

    def get(self, key: tuple) -> Response | None:
        response = self._entries.get(key)
        if response is not None:
            self._entries.move_to_end(key)
        return response

    def put(self, key: tuple, response: Response) -> None:
        if key in self._entries:
            self._bytes -= len(self._entries.pop(key).body)
        if len(response.body) > self.max_bytes:
            return
        self._entries[key] = response
        self._bytes += len(response.body)
        while len(self._entries) > self.max_entries or self._bytes > self.max_bytes:
            _, evicted = self._entries.popitem(last=False)
            self._bytes -= len(evicted.body)

    def clear(self) -> None:
        self._entries.clear()
        self._bytes = 0


class Tunnel:
    """One GATT session's request handling: reassembly, scope and auth rules, cache, dispatch.

    A request outside `endpoints` is refused (403) without reaching the API. A write
    (POST, PUT, PATCH, DELETE) also needs `window_open()` (else 403) and a setup code
    that `guard` accepts (401 missing or wrong, 429 locked out); it is then forwarded
    with the API token from `token_reader()` as its Authorization, so the API's own
    handlers and validation apply. The phone's own Authorization header is dropped:
    over BLE, the setup code is the credential. Bodies and headers are never logged:
    they carry setup codes and Wi-Fi credentials.
    """

    def __init__(
        self,
        dispatcher: Dispatcher,
        window_open: Callable[[], bool],
        token_reader: Callable[[], str | None],
        guard: SetupCodeGuard,
        limits: Limits | None = None,
        clock: Callable[[], float] = time.monotonic,
        log: Any = None,
        endpoints: frozenset[tuple[str, str]] = BLE_ENDPOINTS,
    ) -> None:
        self.dispatcher = dispatcher
        self.window_open = window_open
        self.token_reader = token_reader
        self.guard = guard
        self.endpoints = endpoints
        self.limits = limits or Limits()
        self.assembler = RequestAssembler(self.limits, clock)
        self.cache = ResponseCache(self.limits.cache_entries, self.limits.cache_bytes)
        self.log = log
        self.executed = 0  # requests that reached the dispatcher

    def feed(self, data: bytes) -> TunnelRequest | bytes | None:
        """Take one write: a complete request to `handle`, an error page to show at once, or None."""
        try:
            return self.assembler.feed(data)
        except TunnelError as exc:
            self._log("request rejected", method=exc.method, path=exc.path, status=exc.status, detail=exc.detail)
            return render_page(exc.response(), 0, self.limits.page_size)

    async def handle(self, request: TunnelRequest) -> bytes:
        """The page answering `request` (executing it only if it is not a page of a cached response)."""
        try:
            response = await self._respond(request)
            offset = request.offset
            if offset > len(response.body):
                raise TunnelError(416, f"Offset beyond body length {len(response.body)}", request.method, request.path)
        except TunnelError as exc:
            response, offset = exc.response(), 0
        self._log("request served", method=request.method, path=request.path, status=response.status, offset=offset, length=len(response.body))
        return render_page(response, offset, self.limits.page_size)

    async def _respond(self, request: TunnelRequest) -> Response:
        self._authorise(request)
        key = request.cache_key
        explicit_id = bool(request.headers.get("request-id"))
        if request.offset > 0 or explicit_id:
            cached = self.cache.get(key)
            if cached is not None:
                return cached
            if request.offset > 0:
                raise TunnelError(409, "nothing cached to page; send without Offset", request.method, request.path)
        response = await self._execute(request)
        self.cache.put(key, response)
        return response

    def _authorise(self, request: TunnelRequest) -> None:
        """Scope first (nothing else is even considered), then window, then the setup code."""
        method, path = request.method, request.path
        if path == TOKEN_PATH:
            raise TunnelError(403, "API token never given over BLE", method, path)
        if (method, path) not in self.endpoints:
            raise TunnelError(403, "not available over BLE", method, path)
        if method not in WRITE_METHODS:
            return
        if not self.window_open():
            raise TunnelError(403, "writes need the provisioning window open", method, path)
        verdict = self.guard.check(request.headers.get(SETUP_CODE_HEADER))
        if not verdict.ok:
            if verdict.status != 401 or request.headers.get(SETUP_CODE_HEADER):
                self._log("setup code refused", method=method, path=path, status=verdict.status, failures=self.guard.failures)
            raise TunnelError(verdict.status, verdict.detail, method, path)

    async def _execute(self, request: TunnelRequest) -> Response:
        self.executed += 1
        forwarded = {k: v for k, v in request.headers.items() if k in ("content-type", "accept")}
        if request.method in WRITE_METHODS:
            token = self.token_reader()
            if not token:
                raise TunnelError(503, "gateway not ready: no API token yet", request.method, request.path)
            forwarded["authorization"] = f"Bearer {token}"
        result = await self.dispatcher.dispatch(request.method, request.path, forwarded, request.body)
        if len(result.body) > self.limits.max_response:
            raise TunnelError(502, f"response exceeds {self.limits.max_response} bytes", request.method, request.path)
        content_type = {k.lower(): v for k, v in result.headers.items()}.get("content-type", "application/octet-stream")
        return Response(result.status, result.body, content_type.split(";")[0].strip(), request.method, request.path)

    def _log(self, msg: str, **fields: Any) -> None:
        if self.log is not None:
            self.log.info(msg, **fields)
