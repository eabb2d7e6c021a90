"""Real mosquitto, real PostgreSQL, real receiver workers and gateways, for the fleet tests and bench.

Each server runs on a free loopback port with its files in a private temporary directory.
PostgreSQL refuses to run as root, so as root it is run as the `postgres` user (Debian's
package creates it) through `setpriv`, in a directory that user owns. Nothing is mocked:
the gateways are real outboxes, keys and `MqttUploader`s (the transport actor's own code),
the workers are `egw ingest serve` processes.
"""

from __future__ import annotations

import asyncio
import json
import os
import pwd
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from actors.harvest.messages import Reading, ReadingBatch
from actors.harvest.mqtt import MqttUploader
from actors.harvest.uplink import StepResult, TransportConfig, Uploader
from storage.identity import load_or_create_signer
from storage.outbox import Outbox
from supervisor.embedded import free_port
from tests.conftest import wait_until
from tests.servers import need_program

ROOT = Path(__file__).resolve().parents[2]
PG_GLOB = "/usr/lib/postgresql/*/bin"


def _private_dir(prefix: str, owner: str | None) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    if owner and os.geteuid() == 0:
        entry = pwd.getpwnam(owner)
        os.chown(path, entry.pw_uid, entry.pw_gid)
    return path


def _as_postgres() -> list[str]:
    return ["setpriv", "--reuid=postgres", "--regid=postgres", "--init-groups", "--"] if os.geteuid() == 0 else []


class PostgresServer:
    """A private PostgreSQL cluster (initdb, trust auth on 127.0.0.1), one database per test."""

    def __init__(self, *, durable: bool = False, settings: tuple[str, ...] = ()) -> None:
        self.postgres = need_program("postgres", "postgresql", also_look_in=PG_GLOB)
        self.initdb = str(Path(self.postgres).with_name("initdb"))
        self.durable = durable
        self.extra_settings = [arg for setting in settings for arg in ("-c", setting)]
        self.dir = _private_dir("egw-pg-", "postgres")
        self.port = free_port()
        self.proc: subprocess.Popen | None = None
        self._databases = 0

    def start(self) -> PostgresServer:
        data = self.dir / "data"
        subprocess.run(
            [*_as_postgres(), self.initdb, "-D", str(data), "-U", "egw", "--auth=trust", "-E", "UTF8", "--no-sync"],
            check=True,
            capture_output=True,
            cwd=self.dir,
        )
        settings = ["-c", "listen_addresses=127.0.0.1", "-c", f"unix_socket_directories={self.dir}", "-c", "max_connections=200"]
        if not self.durable:  # tests: a crash of the machine is not what they are about
            settings += ["-c", "fsync=off", "-c", "full_page_writes=off"]
        settings += self.extra_settings
        self.log = open(self.dir / "postgres.log", "wb")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen([*_as_postgres(), self.postgres, "-D", str(data), "-p", str(self.port), *settings], stdout=self.log, stderr=subprocess.STDOUT, cwd=self.dir)
        wait_until(self._accepts, timeout=30, interval=0.05, what=f"PostgreSQL on port {self.port}")
        return self

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"postgres exited: {(self.dir / 'postgres.log').read_text()[-2000:]}")
        try:
            asyncio.run(self._fetch("postgres", "SELECT 1"))
            return True
        except (OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
            return False

    def dsn(self, database: str) -> str:
        return f"postgresql://egw@127.0.0.1:{self.port}/{database}"

    async def _fetch(self, database: str, sql: str, *args: Any) -> list[Any]:
        conn = await asyncpg.connect(self.dsn(database), timeout=5)
        try:
            return await conn.fetch(sql, *args)
        finally:
            await conn.close()

    def query(self, database: str, sql: str, *args: Any) -> list[Any]:
        """Run one statement in its own connection (from a test's thread) and return its rows."""
        return asyncio.run(self._fetch(database, sql, *args))

    def create_database(self) -> str:
        self._databases += 1
        name = f"fleet_{self._databases}"
        self.query("postgres", f"CREATE DATABASE {name}")
        return name

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGINT)  # fast shutdown
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if getattr(self, "log", None):
            self.log.close()
        shutil.rmtree(self.dir, ignore_errors=True)


class Mosquitto:
    """A private mosquitto broker on a free port; `stop()` and `start()` again keep the port."""

    def __init__(self, listener_conf: str = "allow_anonymous true\n", scheme: str = "mqtt") -> None:
        self.binary = need_program("mosquitto", "mosquitto", also_look_in="/usr/sbin")
        self.dir = _private_dir("egw-mqtt-", None)
        os.chmod(self.dir, 0o755)  # run as root, mosquitto reads its files as user mosquitto
        self.port = free_port()
        self.conf = self.dir / "mosquitto.conf"
        self.conf.write_text(f"persistence false\nlog_dest stderr\nmax_inflight_messages 20\nlistener {self.port} 127.0.0.1\n{listener_conf}")
        os.chmod(self.conf, 0o644)
        self.proc: subprocess.Popen | None = None
        self.url = f"{scheme}://127.0.0.1:{self.port}"

    def start(self) -> Mosquitto:
        self.proc = subprocess.Popen([self.binary, "-c", str(self.conf)], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        wait_until(self._accepts, timeout=15, interval=0.02, what=f"mosquitto on port {self.port}")
        return self

    def _accepts(self) -> bool:
        if self.proc is not None and self.proc.poll() is not None:
            raise AssertionError(f"mosquitto exited with {self.proc.returncode}")
        import socket

        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                return True
        except OSError:
            return False

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def close(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


class WorkerProcess:
    """One `egw ingest serve` process; its stdout lines are kept (JSON logs, the listening line)."""

    def __init__(self, dsn: str, mqtt_url: str = "", *, extra: list[str] | None = None, env: dict[str, str] | None = None) -> None:
        args = [sys.executable, "-m", "supervisor.cli", "ingest", "serve", "--db", dsn, "--port", "0", *(["--mqtt", mqtt_url] if mqtt_url else []), *(extra or [])]
        environ = {k: v for k, v in os.environ.items() if not k.startswith("EGW_")} | {"PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"} | (env or {})
        self.proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=environ, cwd=ROOT)
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self.port: int | None = None

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for raw in self.proc.stdout:
            self.lines.append(raw.decode("utf-8", "replace").rstrip("\n"))

    @property
    def pid(self) -> int:
        return self.proc.pid

    def ready(self, mqtt: bool = True, timeout: float = 30) -> WorkerProcess:
        """Wait for the listening line, then for /healthz to say the database (and subscription) are up."""

        def listening() -> int | None:
            if self.proc.poll() is not None:
                raise AssertionError(f"worker exited {self.proc.returncode}: {self.lines[-20:]}")
            for line in self.lines:
                if line.startswith('{"listening"'):
                    return json.loads(line)["port"]
            return None

        self.port = wait_until(listening, timeout=timeout, what="the worker's listening line")
        wait_until(lambda: self.health().get("mqtt") in (("subscribed",) if mqtt else ("off", "subscribed")), timeout=timeout, what="worker healthy")
        return self

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def get(self, path: str) -> Any:
        with urllib.request.urlopen(self.url + path, timeout=10) as reply:
            body = reply.read()
        return json.loads(body) if path != "/metrics" else body.decode()

    def health(self) -> dict[str, Any]:
        try:
            return self.get("/healthz")
        except OSError:
            return {}

    def metric(self, name: str, **labels: str) -> float:
        """The value of one counter in this worker's /metrics (0 when absent)."""
        want = [f'{k}="{v}"' for k, v in labels.items()]
        total = 0.0
        for line in self.get("/metrics").splitlines():
            if line.startswith(name + "{") and all(w in line for w in want):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        return self.proc.returncode


class StepClock:
    """The uploader's clock: real wall time, a monotonic time that jumps over each requested delay.

    Backoff and linger are the transport actor's timer; here a test steps the uploader
    itself, so the delays are skipped rather than slept. Waits on the network (an
    acknowledgement) stay real.
    """

    def __init__(self) -> None:
        import time

        self._time = time
        self._offset = 0.0

    def wall(self) -> float:
        return self._time.time() + self._offset

    def mono(self) -> float:
        return self._time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        self._offset += max(0.0, seconds)


@dataclass
class Gateway:
    """One simulated gateway: its own key, outbox and uploader (MQTT or HTTP), producing readings.

    Like the transport actor, every use of the outbox (a SQLite connection belongs to the
    thread that opened it) happens on the gateway's own worker thread, so several gateways
    can upload at once from a test.
    """

    name: str
    dir: Path
    thread: ThreadPoolExecutor
    outbox: Outbox
    uploader: Uploader
    clock: StepClock
    signer: Any
    seq: dict[str, int] = field(default_factory=dict)
    batch_id: int = 0
    steps: list[StepResult] = field(default_factory=list)

    def on_thread(self, fn: Callable[..., Any], *args: Any) -> Any:
        return self.thread.submit(fn, *args).result(120)

    def produce(self, streams: list[str], per_stream: int) -> None:
        """`per_stream` readings of each device, committed as one producer batch per device."""
        for stream in streams:
            readings = []
            for _ in range(per_stream):
                n = self.seq.get(stream, 0) + 1
                self.seq[stream] = n
                readings.append(Reading(stream, 1_760_000_000.0 + n, 1000.0 + n, "boot-0", {"ac_power_w": 1000.0 + n, "energy_total_wh": 10_000.0 + n, "n": n}))
            self.batch_id += 1
            self.on_thread(self.outbox.ingest, ReadingBatch("poller", self.batch_id, tuple(readings)))

    def pending(self) -> int:
        return self.on_thread(lambda: self.outbox.transport_status(self.uploader.config.name)["pending"])

    def pending_items(self, limit: int = 1000) -> list[Any]:
        return self.on_thread(self.outbox.pending, self.uploader.config.name, limit, 10**8)

    def step(self) -> StepResult:
        result = self.on_thread(self.uploader.step)
        self.steps.append(result)
        self.clock.advance(result.delay_s)
        return result

    def drain(self, timeout: float = 60.0, on_step: Callable[[StepResult], None] | None = None) -> None:
        """Step until every row is acknowledged; waits (real time) only on the broker coming back."""

        def done() -> bool:
            result = self.step()
            if on_step is not None:
                on_step(result)
            link = getattr(self.uploader, "link", None)
            if link is not None and not link.connected:
                wait_until(lambda: link.connected, timeout=timeout, what=f"{self.name} reconnected")
            return result.outcome == "idle" and self.pending() == 0

        wait_until(done, timeout=timeout, interval=0.0, what=f"{self.name} drained")

    def close(self) -> None:
        if not getattr(self, "closed", False):
            self.closed = True
            self.on_thread(self.uploader.close)
            self.thread.shutdown()


def make_gateway(root: Path, name: str, url: str, *, kind: str = "mqtt", connect: bool = True, **settings: Any) -> Gateway:
    """A gateway whose uploader talks to `url` (a broker for mqtt, /v1/batches for http); `connect`: wait until connected."""
    folder = root / name
    folder.mkdir(parents=True, exist_ok=True)
    signer = load_or_create_signer(folder)
    config = TransportConfig.from_dict({"name": "fleet", "url": url, "kind": kind, "linger_s": 0.0, "timeout_s": 5.0, "backoff_min_s": 0.2, "backoff_max_s": 2.0, **settings})
    clock = StepClock()
    thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"gateway-{name}")

    def build() -> tuple[Outbox, Uploader]:
        outbox = Outbox.open(folder / "egw.db")
        if kind == "mqtt":
            return outbox, MqttUploader.connect(outbox, signer, name, config, clock=clock)
        return outbox, Uploader(outbox, signer, name, config, clock=clock)

    outbox, uploader = thread.submit(build).result(30)
    if kind == "mqtt" and connect:
        wait_until(lambda: uploader.link.connected, timeout=15, what=f"{name} connected to the broker")
    return Gateway(name, folder, thread, outbox, uploader, clock, signer)


class MqttProbe:
    """A plain MQTT client for tests: publish raw bytes, collect what arrives on topics."""

    def __init__(self, url: str, *topics: str) -> None:
        port = int(url.rsplit(":", 1)[1])
        self.messages: list[tuple[str, bytes, bool]] = []
        self._lock = threading.Lock()
        self.client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
        self.client.on_message = self._on_message
        self.subscribed = threading.Event()
        self.client.on_subscribe = lambda *_a: self.subscribed.set()
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()
        for topic in topics:
            self.subscribed.clear()
            self.client.subscribe(topic, qos=1)
            wait_until(self.subscribed.is_set, timeout=10, what=f"subscribed to {topic}")

    def _on_message(self, _c: Any, _u: Any, message: mqtt.MQTTMessage) -> None:
        with self._lock:
            self.messages.append((message.topic, bytes(message.payload), bool(message.retain)))

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(10)

    def json_on(self, topic: str) -> list[dict[str, Any]]:
        with self._lock:
            return [json.loads(p) for t, p, _r in self.messages if t == topic]

    def ack_for(self, topic: str, digest: str) -> dict[str, Any] | None:
        return next((a for a in self.json_on(topic) if a.get("batch") == digest), None)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
