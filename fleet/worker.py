"""One receiver worker: the HTTP face and an MQTT shared-subscription consumer on one store.

    POST /v1/batches    body: a compact JWS    -> 200 {"batch", "status", "acked": {stream: seq}, ...}
                                                  or 4xx/503 {"batch", "status", "error"}
    POST /v1/gateways   body: a PEM public key, ?gateway=ID, Authorization: Bearer <token>
                                               -> 201 {"kid", "gateway"} (200 when already registered)
    GET  /v1/status     per gateway: progress per stream, batches, duplicates, chain breaks, refusals
    GET  /metrics       Prometheus text: this worker's counters
    GET  /healthz       {"db": ..., "mqtt": "subscribed" | "connecting" | "off"} (503 unless usable)

Over MQTT the worker takes `<prefix>/+/batches` through `$share/<group>/...`, so the broker
hands each batch to one of the group's workers; the acknowledgement (the same JSON as the
HTTP reply) goes to `<prefix>/<gateway>/acks` after the commit, and only then is the
incoming message PUBACKed (paho's manual acknowledgements): a worker that dies mid-batch
leaves the batch unacknowledged on both sides, and the gateway publishes it again.

Bounded: the broker never has more than `inflight` unacknowledged batches out to a worker
(MQTT 5 Receive Maximum; the paho thread also blocks at that many), the database pool has
`pool_size` connections, HTTP bodies are capped at MAX_BATCH_BYTES.

Nothing here keeps state that matters across a restart: keys are cached (and re-read),
counters are this worker's own (Prometheus sums them over workers).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import os
import socket
import threading
import time
import urllib.parse
import uuid
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as mqtt
from aiohttp import web
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from fleet.store import FleetStore, Outcome, DatabaseUnavailableError
from fleet.verify import BatchRefusedError
from supervisor.logs import ActorLog
from supervisor.redaction import redact_url

MAX_BATCH_BYTES = 16 * 1024 * 1024
MQTT_KEEPALIVE_S = 30
STOP_DRAIN_S = 5.0


@dataclass(frozen=True)
class WorkerConfig:
    """Everything one worker needs; `egw ingest serve` builds it from flags and EGW_INGEST_* variables."""

    dsn: str
    host: str = "127.0.0.1"
    port: int = 8090  # 0: a free port (printed); -1: no HTTP
    reuse_port: bool = False
    mqtt_url: str = ""  # mqtt(s)://[user:password@]host[:port]; empty: no MQTT
    mqtt_version: str = "5"
    mqtt_ca: str = ""
    mqtt_cert: str = ""
    mqtt_key: str = ""
    topic_prefix: str = "egw"
    group: str = "egw-ingest"
    token: str = ""  # bearer token for POST /v1/gateways; empty: registration over REST is off
    pool_size: int = 8
    inflight: int = 32
    name: str = ""


class Metrics:
    """This worker's counters in Prometheus text format (no client library: a handful of lines)."""

    def __init__(self, worker: str) -> None:
        self.worker = worker
        self.counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = {}
        self.gauges: dict[str, Any] = {}

    def inc(self, name: str, value: float = 1, **labels: str) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0) + value

    def value(self, name: str, **labels: str) -> float:
        return self.counters.get((name, tuple(sorted(labels.items()))), 0)

    def render(self) -> str:
        lines = []
        helps = {
            "egw_ingest_batches_total": "Batches handled, by transport (http|mqtt) and outcome (stored|refused|unavailable)",
            "egw_ingest_items_stored_total": "Items written to PostgreSQL (new ones only)",
            "egw_ingest_duplicates_total": "Items received again and ignored (already stored)",
            "egw_ingest_refused_total": "Batches refused, by reason",
            "egw_ingest_chain_breaks_total": "Accepted batches whose previous batch this receiver never saw",
            "egw_ingest_batch_seconds_sum": "Seconds spent verifying and storing batches",
            "egw_ingest_batch_seconds_count": "Batches timed",
            "egw_ingest_acks_published_total": "Acknowledgements published over MQTT",
        }
        by_name: dict[str, list[tuple[tuple[tuple[str, str], ...], float]]] = {}
        for (name, labels), value in sorted(self.counters.items()):
            by_name.setdefault(name, []).append((labels, value))
        for name, help_text in helps.items():
            kind = "counter" if name.endswith("_total") else "untyped"
            lines += [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
            for labels, value in by_name.get(name, [((), 0)]):
                text = ",".join([f'worker="{self.worker}"'] + [f'{k}="{v}"' for k, v in labels])
                lines.append(f"{name}{{{text}}} {value:g}")
        for name, value in self.gauges.items():
            lines += [f"# TYPE {name} gauge", f'{name}{{worker="{self.worker}"}} {float(value):g}']
        return "\n".join(lines) + "\n"


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        return 0


class Worker:
    """One stateless receiver process's work: `start()`, then batches flow until `stop()`."""

    def __init__(self, config: WorkerConfig) -> None:
        self.config = config
        self.name = config.name or f"{socket.gethostname()}-{os.getpid()}"
        self.log = ActorLog("ingest-worker")
        self.metrics = Metrics(self.name)
        self.store: FleetStore | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.runner: web.AppRunner | None = None
        self.port: int | None = None
        self.mqtt: mqtt.Client | None = None
        self.mqtt_state = "off"
        self._slots = threading.BoundedSemaphore(config.inflight)
        self._inflight = 0

    # ------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.store = await FleetStore.open(self.config.dsn, max_size=self.config.pool_size, application_name=f"egw-ingest-{os.getpid()}")
        if self.config.port >= 0:
            app = web.Application(client_max_size=MAX_BATCH_BYTES)
            app.router.add_post("/v1/batches", self._post_batch)
            app.router.add_post("/v1/gateways", self._post_gateway)
            app.router.add_get("/v1/status", self._get_status)
            app.router.add_get("/metrics", self._get_metrics)
            app.router.add_get("/healthz", self._get_health)
            self.runner = web.AppRunner(app, access_log=None)
            await self.runner.setup()
            site = web.TCPSite(self.runner, self.config.host, self.config.port, reuse_port=self.config.reuse_port or None)
            await site.start()
            self.port = self.runner.addresses[0][1]
        if self.config.mqtt_url:
            self._start_mqtt()
        self.log.info(
            "ingest worker ready",
            worker=self.name,
            http=f"http://{self.config.host}:{self.port}" if self.port else None,
            mqtt=redact_url(self.config.mqtt_url) if self.config.mqtt_url else None,
            group=self.config.group,
        )

    async def stop(self) -> None:
        """Stop taking batches, let the ones under way finish (bounded), then close everything."""
        if self.mqtt is not None:
            self.mqtt.unsubscribe(self._subscription)
            deadline = time.monotonic() + STOP_DRAIN_S
            while self._inflight and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            self.mqtt.disconnect()
            self.mqtt.loop_stop()
        if self.runner is not None:
            await self.runner.cleanup()
        if self.store is not None:
            await self.store.close()

    # ------------------------------------------------------------ the work
    async def handle(self, body: bytes, via: str, topic_gateway: str | None = None) -> tuple[int, dict[str, Any]]:
        """Verify and store one batch; return (status, acknowledgement). Never raises for bad input."""
        assert self.store is not None
        started = time.perf_counter()
        digest = hashlib.sha256(body).hexdigest()
        try:
            batch = await self.store.verify(body, topic_gateway)
            outcome: Outcome = await self.store.ingest(batch, via)
        except BatchRefusedError as exc:
            self.metrics.inc("egw_ingest_batches_total", via=via, outcome="refused")
            self.metrics.inc("egw_ingest_refused_total", reason=exc.code)
            gateway = getattr(exc, "gateway", None)
            self.log.warning("batch refused", via=via, gateway=gateway or topic_gateway, code=exc.code, reason=exc.reason, batch=digest[:16])
            if gateway:
                await self.store.record_refusal(gateway, f"{exc.code}: {exc.reason}")
            return exc.status, {"batch": digest, "status": exc.status, "error": exc.reason, "code": exc.code}
        except DatabaseUnavailableError as exc:
            self.metrics.inc("egw_ingest_batches_total", via=via, outcome="unavailable")
            self.log.error("database unavailable; batch not stored, the gateway sends it again", via=via, error=str(exc)[:300])
            return 503, {"batch": digest, "status": 503, "error": "receiver database unavailable, try again", "retry_after": 1}
        except Exception as exc:  # noqa: BLE001 - a bug must not leave the batch unanswered (nor its MQTT slot taken)
            self.metrics.inc("egw_ingest_batches_total", via=via, outcome="error")
            self.log.exception("batch handling failed; not stored, the gateway sends it again", via=via, error=f"{type(exc).__name__}: {exc}"[:300], batch=digest[:16])
            return 500, {"batch": digest, "status": 500, "error": f"receiver error ({type(exc).__name__}); the batch was not stored, try again"}
        self.metrics.inc("egw_ingest_batches_total", via=via, outcome="stored")
        self.metrics.inc("egw_ingest_items_stored_total", outcome.stored)
        self.metrics.inc("egw_ingest_duplicates_total", outcome.duplicates)
        if outcome.extra.get("chain_break"):
            self.metrics.inc("egw_ingest_chain_breaks_total")
            self.log.warning("chain break: the batch's previous batch was never received", gateway=outcome.gateway, batch=digest[:16])
        self.metrics.inc("egw_ingest_batch_seconds_sum", time.perf_counter() - started)
        self.metrics.inc("egw_ingest_batch_seconds_count")
        return 200, outcome.as_json()

    # ------------------------------------------------------------ HTTP
    async def _post_batch(self, request: web.Request) -> web.Response:
        status, ack = await self.handle(await request.read(), "http")
        return web.json_response(ack, status=status, headers={"Retry-After": "1"} if status == 503 else None)

    async def _post_gateway(self, request: web.Request) -> web.Response:
        assert self.store is not None
        if not self.config.token:
            return web.json_response({"error": "registration over REST is off: start the receiver with --token-file (or use egw ingest register)"}, status=403)
        given = request.headers.get("Authorization", "")
        if not hmac.compare_digest(given.encode(), f"Bearer {self.config.token}".encode()):
            return web.json_response({"error": "missing or wrong bearer token"}, status=401)
        body = await request.read()
        try:
            kid, gateway, created = await self.store.register(body, request.query.get("gateway") or None)
        except ValueError as exc:
            status = 409 if "already registered" in str(exc) else 400
            return web.json_response({"error": str(exc)}, status=status)
        self.log.info("gateway registered" if created else "gateway already registered", kid=kid, gateway=gateway, via="rest")
        return web.json_response({"kid": kid, "gateway": gateway}, status=201 if created else 200)

    async def _get_status(self, request: web.Request) -> web.Response:
        assert self.store is not None
        try:
            limit = max(1, min(10_000, int(request.query.get("limit", "1000"))))
        except ValueError:
            return web.json_response({"error": "limit must be an integer"}, status=400)
        try:
            status = await self.store.status(request.query.get("gateway"), limit)
        except (OSError, DatabaseUnavailableError) as exc:
            return web.json_response({"error": f"database unavailable: {exc}"}, status=503)
        return web.json_response(status | {"worker": self.name})

    async def _get_metrics(self, _request: web.Request) -> web.Response:
        self.metrics.gauges["egw_ingest_inflight"] = self._inflight
        self.metrics.gauges["egw_ingest_mqtt_subscribed"] = int(self.mqtt_state == "subscribed")
        self.metrics.gauges["egw_ingest_resident_memory_bytes"] = _rss_bytes()
        return web.Response(text=self.metrics.render(), content_type="text/plain", charset="utf-8")

    async def _get_health(self, _request: web.Request) -> web.Response:
        assert self.store is not None
        try:
            await self.store.pool.fetchval("SELECT 1")
            db = True
        except Exception:  # noqa: BLE001 - health reports any failure as "not usable"
            db = False
        ok = db and self.mqtt_state in ("subscribed", "off")
        return web.json_response({"worker": self.name, "db": db, "mqtt": self.mqtt_state, "pid": os.getpid()}, status=200 if ok else 503)

    # ------------------------------------------------------------ MQTT
    @property
    def _subscription(self) -> str:
        return f"$share/{self.config.group}/{self.config.topic_prefix}/+/batches"

    def _start_mqtt(self) -> None:
        cfg = self.config
        parts = urllib.parse.urlsplit(cfg.mqtt_url)
        tls = parts.scheme == "mqtts"
        client_id = f"egw-ingest-{self.name}-{uuid.uuid4().hex[:8]}"[:128]
        v5 = cfg.mqtt_version == "5"
        client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5 if v5 else mqtt.MQTTv311, manual_ack=True, **({} if v5 else {"clean_session": True}))
        if parts.username is not None:
            client.username_pw_set(urllib.parse.unquote(parts.username), urllib.parse.unquote(parts.password) if parts.password is not None else None)
        if tls:
            client.tls_set(ca_certs=cfg.mqtt_ca or None, certfile=cfg.mqtt_cert or None, keyfile=cfg.mqtt_key or None)
        client.reconnect_delay_set(min_delay=1, max_delay=10)
        client.max_inflight_messages_set(max(20, cfg.inflight))
        client.on_connect = self._on_connect
        client.on_disconnect = self._on_disconnect
        client.on_subscribe = self._on_subscribe
        client.on_message = self._on_message
        properties = None
        if v5:
            properties = Properties(PacketTypes.CONNECT)
            properties.ReceiveMaximum = cfg.inflight
        self.mqtt_state = "connecting"
        client.connect_async(parts.hostname or "", parts.port or (8883 if tls else 1883), keepalive=MQTT_KEEPALIVE_S, properties=properties)
        client.loop_start()
        self.mqtt = client

    def _on_connect(self, client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if reason.is_failure:
            self.log.warning("broker refused the connection", reason=str(reason))
            return
        client.subscribe(self._subscription, qos=1)
        self.log.info("connected to broker; subscribing", subscription=self._subscription)

    def _on_subscribe(self, _client: mqtt.Client, _userdata: Any, _mid: int, reasons: Any, _properties: Any) -> None:
        failed = [str(r) for r in reasons if getattr(r, "is_failure", False)]
        if failed:
            self.log.error("broker refused the subscription", subscription=self._subscription, reasons=failed)
            return
        self.mqtt_state = "subscribed"
        self.log.info("subscribed", subscription=self._subscription)

    def _on_disconnect(self, _client: mqtt.Client, _userdata: Any, _flags: Any, reason: Any, _properties: Any) -> None:
        if self.mqtt_state != "off":
            self.mqtt_state = "connecting"
        self.log.warning("disconnected from broker; reconnecting", reason=str(reason))

    def _on_message(self, client: mqtt.Client, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        """On paho's thread: hand the batch to the event loop; block when `inflight` are under way."""
        assert self.loop is not None
        self._slots.acquire()
        self._inflight += 1
        future = asyncio.run_coroutine_threadsafe(self._handle_message(client, message), self.loop)
        future.add_done_callback(self._message_done)

    def _message_done(self, future: Any) -> None:
        self._inflight -= 1
        self._slots.release()
        if not future.cancelled() and future.exception() is not None:
            self.log.error("batch handling failed", error=f"{type(future.exception()).__name__}: {future.exception()}")

    async def _handle_message(self, client: mqtt.Client, message: mqtt.MQTTMessage) -> None:
        prefix = self.config.topic_prefix + "/"
        topic = message.topic
        gateway = topic[len(prefix) : -len("/batches")] if topic.startswith(prefix) and topic.endswith("/batches") else ""
        if not gateway or "/" in gateway:
            self.log.warning("message on an unexpected topic ignored", topic=topic[:200])
            client.ack(message.mid, message.qos)
            return
        try:
            _status, ack = await self.handle(message.payload, "mqtt", topic_gateway=gateway)
            info = client.publish(f"{prefix}{gateway}/acks", json.dumps(ack, separators=(",", ":")), qos=1)
            if info.rc == mqtt.MQTT_ERR_SUCCESS:
                self.metrics.inc("egw_ingest_acks_published_total")
        finally:
            client.ack(message.mid, message.qos)  # only now may the broker forget the batch (its slot is free again)
