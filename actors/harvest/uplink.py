"""One upload endpoint's logic, free of actors: read oldest-first, sign, POST, release on ack.

`Uploader.step()` does at most one HTTP request (bounded by a timeout well under the
supervisor's heartbeat timeout) and returns how long to wait before the next step,
so the transport actor stays responsive and tests can drive it with an injected
clock and no actor system.

Outcomes of one attempt, and what happens to the rows:

    2xx + a valid ack covering the batch   rows released (cursor advanced), backoff reset
    429                                    wait Retry-After (or the backoff), rows kept
    408, 5xx, no/garbled/truncated reply   exponential backoff with jitter (capped, 60 s by
                                           default), rows kept
    401, 403 (the gateway's credentials)   backoff, rows kept: no batch is at fault
    404, 405, 410 (a wrong URL)            backoff, rows kept: no batch is at fault either
    413 (too large, e.g. a proxy's limit)  the batch is halved and sent again; only a single
                                           item refused as too large becomes a dead letter
    other 4xx (permanent)                  batch parked as a dead letter with the error,
                                           cursor moves past it; status shows it (at the
                                           dead-letter bound: backoff, rows kept)

Pacing: a full batch is followed at once by the next (a backlog drains at full speed
as soon as the receiver answers); a partial batch is followed after `linger_s`, so a
steady trickle of readings travels in a few larger batches rather than many tiny ones
(each acknowledgement is a write to the database). Dead letters queued for sending
again (`Outbox.requeue_dead_letters`) go first: their items are signed again as a new
batch at the head of the chain, and the receiver de-duplicates them like any replay.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import random
import time
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Protocol

import aiohttp
import yarl

from actors.harvest.signing import SignedBatch, b64url_decode, build_signed_batch
from storage.identity import Signer
from storage.outbox import MAX_DEAD_LETTERS_PER_TRANSPORT, Outbox, OutboxItem
from supervisor.backoff import backoff_delay
from supervisor.redaction import redact_url, redact_urls_in

MAX_RETRY_AFTER_S = 3600.0
MIN_STEP_S = 0.001


class Clock(Protocol):
    def wall(self) -> float: ...

    def mono(self) -> float: ...


class SystemClock:
    def wall(self) -> float:
        return time.time()

    def mono(self) -> float:
        return time.monotonic()


@dataclass(frozen=True)
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes


Post = Callable[[str, bytes, float], HttpReply]


MAX_REPLY_BYTES = 1024 * 1024  # an acknowledgement is a few hundred bytes; a larger reply is not read into memory
CONNECT_TIMEOUT_S = 10.0  # name lookup, TCP and TLS set-up, within the total


class ReplyTooLargeError(OSError):
    """The receiver answered with more than MAX_REPLY_BYTES."""


def http_post(url: str, body: bytes, timeout: float) -> HttpReply:
    """POST `body` to `url` (query string kept, user info sent as Basic auth), within `timeout` s in all.

    aiohttp's total timeout covers everything from the name lookup to the reply's last
    byte, so a receiver that trickles its headers or body, or a resolver that hangs,
    cannot hold the transport; the reply is refused past MAX_REPLY_BYTES. No redirects,
    no retries: the uploader's backoff is the retry policy. Runs on the caller's thread
    (the transport's worker) with a loop of its own. Raises OSError on any failure.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"upload URL must be http(s)://host[:port]/path, got {url!r}")
    return asyncio.run(_post(parts, body, timeout))


async def _post(parts: urllib.parse.SplitResult, body: bytes, timeout: float) -> HttpReply:
    netloc, headers = parts.netloc, {"Content-Type": "application/jose"}
    if "@" in netloc:
        userinfo, netloc = netloc.rsplit("@", 1)
        user, _, password = userinfo.partition(":")
        headers["Authorization"] = aiohttp.encode_basic_auth(urllib.parse.unquote(user), urllib.parse.unquote(password))
    target = yarl.URL(urllib.parse.urlunsplit((parts.scheme, netloc, parts.path or "/", parts.query, "")), encoded=True)
    limits = aiohttp.ClientTimeout(total=timeout, connect=min(timeout, CONNECT_TIMEOUT_S))
    try:
        async with aiohttp.ClientSession(timeout=limits, auto_decompress=False) as session:
            async with session.post(target, data=body, allow_redirects=False, headers=headers) as response:
                data = bytearray()
                async for chunk in response.content.iter_any():
                    data += chunk
                    if len(data) > MAX_REPLY_BYTES:
                        raise ReplyTooLargeError(f"reply larger than {MAX_REPLY_BYTES} bytes")
                return HttpReply(response.status, {k.lower(): v for k, v in response.headers.items()}, bytes(data))
    except asyncio.TimeoutError:
        raise OSError(f"no complete reply within {timeout:g} s") from None
    except aiohttp.ClientError as exc:
        raise OSError(f"{type(exc).__name__}: {exc}") from None


def url_problem(url: Any, shown: str | None = None) -> str | None:
    """What is wrong with an upload URL, in words; None when it is usable.

    Parsed, not pattern-matched: `http://[x` (an IPv6 bracket never closed), a port out
    of range or a missing host are refused before they are stored or tried. `shown` is
    how the URL may be quoted in the message (the configuration check quotes it; a
    transport's own error must not, since a URL may carry a password).
    """
    got = f", got {shown}" if shown else ""
    if not isinstance(url, str) or not url:
        return f"expected an http:// or https:// URL{got}"
    if url != url.strip() or any(c.isspace() for c in url):
        return f"must not contain spaces{got}"
    try:
        parts = urllib.parse.urlsplit(url)
    except ValueError as exc:
        if "[" in url and "]" not in url.split("[", 1)[1]:
            return f"IPv6 address bracket '[' is not closed{got}"
        return f"cannot be parsed ({exc}){got}"
    if parts.scheme not in ("http", "https"):
        scheme = f"{parts.scheme!r}" if parts.scheme else "none"
        return f"scheme must be http or https, got {scheme}{' in ' + shown if shown else ''} (expected http(s)://host[:port]/path)"
    if not parts.hostname:
        return f"missing host{got} (expected {parts.scheme}://host[:port]/path)"
    try:
        port = parts.port
    except ValueError as exc:
        return f"bad port ({exc}){got}"
    if port == 0:
        return f"bad port 0 (expected 1-65535){got}"
    if parts.fragment:
        return f"must not have a #fragment{got}"
    return None


@dataclass(frozen=True)
class TransportConfig:
    name: str
    url: str
    max_count: int = 1000
    max_bytes: int = 512 * 1024
    backoff_min_s: float = 1.0
    backoff_max_s: float = 60.0
    jitter: float = 0.2  # +/- fraction of each backoff delay
    timeout_s: float = 3.0
    idle_poll_s: float = 1.0
    linger_s: float = 5.0  # after a partial batch, wait this long for more before the next upload
    kind: str = "http"  # "http" (POST to url) or "mqtt" (publish to a broker: actors.harvest.mqtt_settings)
    topic_prefix: str = "egw"  # mqtt: <prefix>/<gateway>/batches, .../acks, .../presence
    mqtt_version: str = "5"  # mqtt: "5" or "3.1.1"
    tls_ca: str = ""  # mqtts: the broker's CA (PEM); empty: the system's CAs
    tls_cert: str = ""  # mqtts: the gateway's client certificate (PEM), optional
    tls_key: str = ""  # mqtts: its private key (PEM)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> TransportConfig:
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        unknown = sorted(set(data) - set(known))
        if unknown:
            raise ValueError(f"transport {data.get('name')!r}: unknown settings {unknown}")
        config = cls(**known)
        if not config.name:
            raise ValueError(f"transport needs a name, got {redact_urls_in(repr(data))}")
        if config.kind not in ("http", "mqtt"):
            raise ValueError(f"transport {config.name!r}: kind must be 'http' or 'mqtt', got {config.kind!r}")
        if config.kind == "mqtt":
            from actors.harvest.mqtt_settings import mqtt_settings_problems

            problems = mqtt_settings_problems(config)
            if problems:
                raise ValueError(f"transport {config.name!r} (mqtt {redact_url(str(config.url))!r}): {'; '.join(problems)}")
        else:
            problem = url_problem(config.url)
            if problem:
                raise ValueError(f"transport {config.name!r}: url {redact_url(str(config.url))!r}: {problem}")
        if config.max_count < 1 or config.max_bytes < 1024 or config.timeout_s <= 0 or config.backoff_min_s <= 0 or config.linger_s < 0:
            raise ValueError(f"transport {config.name!r}: limits must be positive (max_bytes >= 1024)")
        return config


@dataclass(frozen=True)
class StepResult:
    outcome: str  # idle | sent | waiting | retry | throttled | dead_lettered
    delay_s: float  # when to step again
    items: int = 0
    error: str | None = None


class TransientError(Exception):
    """Worth retrying: the batch may or may not have arrived."""


class PermanentError(Exception):
    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status


class Uploader:
    def __init__(
        self,
        outbox: Outbox,
        signer: Signer,
        gateway_id: str,
        config: TransportConfig,
        *,
        clock: Clock | None = None,
        post: Post = http_post,
        rng: random.Random | None = None,
    ) -> None:
        self.outbox, self.signer, self.gateway_id, self.config = outbox, signer, gateway_id, config
        self.clock = clock or SystemClock()
        self.post = post
        self.rng = rng or random.Random()
        outbox.register_transport(config.name, config.max_count)
        cursor = outbox.cursor(config.name)
        self.failures = int(cursor["failures"])
        self.backoff_s = float(cursor["backoff_s"])
        self.next_attempt_mono = self.clock.mono()
        if cursor["retry_at"] is not None:  # a backoff persisted by a previous incarnation
            self.next_attempt_mono += max(0.0, min(cursor["retry_at"] - self.clock.wall(), config.backoff_max_s))
        self._inflight: SignedBatch | None = None
        self.count_limit = config.max_count  # lowered after a 413, grows back after each success

    def close(self) -> None:
        """Release what the uploader holds (the outbox connection; an MQTT uploader also its broker session)."""
        self.outbox.close()

    def step(self) -> StepResult:
        now_mono = self.clock.mono()
        if now_mono < self.next_attempt_mono:
            return StepResult("waiting", self.next_attempt_mono - now_mono)
        cursor = self.outbox.cursor(self.config.name)
        requeued = self.outbox.next_requeued(self.config.name)
        if requeued is not None:
            return self._resend_dead_letter(requeued, cursor["last_hash"])
        items = self.outbox.pending(self.config.name, min(self.config.max_count, self.count_limit), self.config.max_bytes)
        if not items:
            return StepResult("idle", self.config.idle_poll_s)
        batch = self._inflight
        if batch is None or (batch.first_id, batch.last_id, batch.items) != (items[0].id, items[-1].id, len(items)):
            batch = build_signed_batch(self.signer, self.gateway_id, cursor["last_hash"], items)
            self._inflight = batch  # a retry re-sends the same bytes, so the receiver can spot the replay
        try:
            acked = self._send(batch)
        except PermanentError as exc:
            error = f"HTTP {exc.status}: {exc}"
            if exc.status == 413 and len(items) > 1:
                self.count_limit = max(1, len(items) // 2)  # smaller batches until one gets through
                self._inflight = None
                return StepResult("retry", MIN_STEP_S, 0, f"{error}; batch halved to {self.count_limit} items")
            if self.outbox.dead_letter_count(self.config.name) >= MAX_DEAD_LETTERS_PER_TRANSPORT:
                # never drop parked batches to make room: hold the rows and back off instead
                return self._schedule_retry("retry", self._grow_backoff(), f"{error}; dead-letter store full, holding the batch")
            self.outbox.dead_letter(self.config.name, items, exc.status, error, batch.batch_hash, batch.jws, self.clock.wall())
            self._inflight = None
            self._reset_backoff()
            return StepResult("dead_lettered", 0.0, len(items), error)
        except TransientError as exc:
            return self._retry_later(exc)
        self.outbox.release(self.config.name, batch.last_id, batch.batch_hash, acked, batch.items, self.clock.wall())
        self._inflight = None
        self._reset_backoff()
        self.count_limit = min(self.config.max_count, self.count_limit * 2)
        full = batch.items >= self.config.max_count or sum(i.nbytes for i in items) * 2 > self.config.max_bytes
        return StepResult("sent", 0.0 if full else self.config.linger_s, batch.items)

    def _resend_dead_letter(self, row: Any, prev_hash: str | None) -> StepResult:
        """Sign a parked batch's items again at the chain's head and send them once more."""
        items = dead_letter_items(row["jws"])
        batch = build_signed_batch(self.signer, self.gateway_id, prev_hash, items)
        try:
            self._send(batch)
        except PermanentError as exc:
            error = f"HTTP {exc.status}: {exc}"
            self.outbox.dead_letter_refused(row["id"], exc.status, error, self.clock.wall())
            return StepResult("dead_lettered", 0.0, len(items), f"re-sent dead letter refused again: {error}")
        except TransientError as exc:
            return self._retry_later(exc)
        self.outbox.dead_letter_delivered(self.config.name, row["id"], batch.batch_hash, len(items), self.clock.wall())
        self._reset_backoff()
        return StepResult("sent", 0.0, len(items))

    def _send(self, batch: SignedBatch) -> dict[str, int]:
        try:
            reply = self.post(self.config.url, batch.jws.encode("ascii"), self.config.timeout_s)
        except (OSError, http.client.HTTPException) as exc:
            raise TransientError(f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__) from None
        if reply.status == 429:
            raise ThrottledError(_retry_after(reply.headers.get("retry-after"), self.clock.wall()))
        if reply.status in (401, 403):
            # the gateway's credentials, not this batch: every batch would fail the same way
            raise TransientError(f"HTTP {reply.status}: {_reason(reply.body)} (is the gateway key registered with the receiver?)")
        if reply.status in (404, 405, 410):
            # the endpoint, not this batch: parking batches would only hide a wrong URL
            raise TransientError(f"HTTP {reply.status}: {_reason(reply.body)} (is the upload URL right?)")
        if 400 <= reply.status < 500 and reply.status != 408:
            raise PermanentError(reply.status, _reason(reply.body))
        if not 200 <= reply.status < 300:
            raise TransientError(f"HTTP {reply.status}: {_reason(reply.body)}")
        try:
            ack = json.loads(reply.body)
            acked = {str(k): int(v) for k, v in ack["acked"].items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise TransientError(f"unreadable acknowledgement: {reply.body[:80]!r}") from None
        short = {s: (acked.get(s), q) for s, q in batch.max_seq.items() if acked.get(s, 0) < q}
        if short:
            raise TransientError(f"receiver acknowledged less than the batch holds (stream: (acked, sent)) {short}")
        return {s: acked[s] for s in batch.max_seq}

    def _retry_later(self, exc: TransientError) -> StepResult:
        """Back off after a failure worth retrying; a 429's Retry-After, when given, sets the delay."""
        if isinstance(exc, ThrottledError) and exc.retry_after is not None:
            self.failures += 1
            return self._schedule_retry("throttled", exc.retry_after, str(exc))
        return self._schedule_retry("throttled" if isinstance(exc, ThrottledError) else "retry", self._grow_backoff(), str(exc))

    def _grow_backoff(self) -> float:
        self.failures += 1
        delay = backoff_delay(self.failures - 1, self.config.backoff_min_s, self.config.backoff_max_s, jitter=self.config.jitter, rng=self.rng)
        return max(min(self.config.backoff_max_s, self.config.backoff_min_s) * (1 - self.config.jitter), delay)

    def _reset_backoff(self) -> None:
        self.failures = 0
        self.backoff_s = 0.0
        self.next_attempt_mono = self.clock.mono()

    def _schedule_retry(self, outcome: str, delay: float, error: str) -> StepResult:
        self.backoff_s = delay
        self.next_attempt_mono = self.clock.mono() + delay
        now = self.clock.wall()
        self.outbox.record_failure(self.config.name, error, delay, now + delay, now)
        return StepResult(outcome, delay, 0, error)


def dead_letter_items(jws: str) -> list[OutboxItem]:
    """The items a parked batch carried, read back from its signed payload (our own, so not verified)."""
    payload = json.loads(b64url_decode(jws.split(".")[1]))
    return [
        OutboxItem(0, str(it["s"]), int(it["q"]), int(it["ql"]), str(it["k"]), float(it["w"]), json.dumps(it["x"], separators=(",", ":")), 0)
        for it in payload["items"]
    ]


class ThrottledError(TransientError):
    def __init__(self, retry_after: float | None) -> None:
        super().__init__(f"HTTP 429: throttled, retry after {retry_after if retry_after is not None else 'backoff'} s")
        self.retry_after = retry_after


def _retry_after(value: str | None, now_wall: float) -> float | None:
    """Retry-After as delta-seconds or an HTTP date; None when absent or unreadable."""
    if not value:
        return None
    try:
        seconds = float(value)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(value).timestamp() - now_wall
        except (TypeError, ValueError):
            return None
    return max(0.0, min(seconds, MAX_RETRY_AFTER_S))


def _reason(body: bytes) -> str:
    try:
        return str(json.loads(body)["error"])[:300]
    except (ValueError, KeyError, TypeError):
        return body[:120].decode("utf-8", "replace")
