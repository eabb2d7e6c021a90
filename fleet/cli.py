"""`egw ingest ...`: the fleet receiver's command line.

    egw ingest serve --db postgresql://... [--port 8090] [--mqtt mqtt://broker:1883]   one worker
    egw ingest register --db ... gateway.pub.pem [--gateway ID]                        register a key
    egw ingest migrate --db ...                                                         schema only
    egw ingest status --db ... [--gateway ID]                                           progress as JSON

Run as many `serve` processes as the fleet needs (same --db, same --mqtt and --group):
each is a stateless worker. `--db` defaults to EGW_INGEST_DB and `--mqtt` to
EGW_INGEST_MQTT, so a password in either need not appear on a command line.
Exit codes: 0 done (serve: after SIGTERM/SIGINT), 1 the database is unusable, 2 bad input.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
from pathlib import Path
from typing import TYPE_CHECKING

from supervisor.clihelp import HelpFormatter, examples

if TYPE_CHECKING:
    from fleet.store import FleetStore
    from fleet.worker import Worker

EXAMPLES = (
    "egw ingest migrate --db postgresql://ingest@db.example.net/fleet",
    "egw ingest register --db postgresql://ingest@db.example.net/fleet gateway_key.pub.pem",
    "EGW_INGEST_DB=postgresql://ingest@db/fleet egw ingest serve --port 8090 --mqtt mqtts://ingest:secret@broker:8883 --mqtt-ca ca.pem",
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Mount the `ingest` subcommands on `parser` (the `egw` command's `ingest`)."""
    parser.epilog = examples(*EXAMPLES)
    sub = parser.add_subparsers(dest="ingest_command", metavar="SUBCOMMAND")

    def db_flag(p: argparse.ArgumentParser) -> None:
        p.add_argument("--db", default=os.environ.get("EGW_INGEST_DB", ""), help="PostgreSQL URL (env EGW_INGEST_DB), e.g. postgresql://user@host:5432/fleet")

    serve = sub.add_parser("serve", help="run one receiver worker (HTTP and/or MQTT)", formatter_class=HelpFormatter, epilog=examples(EXAMPLES[2]))
    db_flag(serve)
    serve.add_argument("--host", default="127.0.0.1", help="HTTP address to bind")
    serve.add_argument("--port", type=int, default=8090, help="HTTP port; 0 picks a free one (printed as JSON), -1 turns HTTP off")
    serve.add_argument("--reuse-port", action="store_true", help="share the HTTP port with other workers on this host (SO_REUSEPORT)")
    serve.add_argument("--mqtt", default=os.environ.get("EGW_INGEST_MQTT", ""), help="broker URL mqtt(s)://[user:password@]host[:port] (env EGW_INGEST_MQTT); empty: HTTP only")
    serve.add_argument("--mqtt-version", choices=("5", "3.1.1"), default="5", help="MQTT protocol version")
    serve.add_argument("--mqtt-ca", default="", help="CA certificate (PEM) to verify an mqtts:// broker; default: the system's")
    serve.add_argument("--mqtt-cert", default="", help="client certificate (PEM) for the broker")
    serve.add_argument("--mqtt-key", default="", help="its private key (PEM)")
    serve.add_argument("--topic-prefix", default="egw", help="topics are <prefix>/<gateway>/batches and .../acks")
    serve.add_argument("--group", default="egw-ingest", help="shared-subscription group: workers of one group split the batches")
    serve.add_argument("--token-file", type=Path, help="file holding the bearer token for POST /v1/gateways; without it REST registration is off")
    serve.add_argument("--pool", type=int, default=8, help="database connections of this worker")
    serve.add_argument("--inflight", type=int, default=32, help="MQTT batches under way at once in this worker")
    serve.add_argument("--log-level", default="INFO", help="DEBUG, INFO, WARNING or ERROR")

    register = sub.add_parser("register", help="register a gateway's public key", formatter_class=HelpFormatter, epilog=examples(EXAMPLES[1]))
    db_flag(register)
    register.add_argument("key", type=Path, help="the gateway's public key (PEM), e.g. gateway_key.pub.pem; '-' reads stdin")
    register.add_argument("--gateway", default="", help="the gateway id it uploads as (EGW_GATEWAY_ID); default: the key's serial")

    migrate = sub.add_parser("migrate", help="create or upgrade the receiver's tables, then exit", formatter_class=HelpFormatter, epilog=examples(EXAMPLES[0]))
    db_flag(migrate)

    status = sub.add_parser("status", help="print per-gateway progress, chain breaks and refusals as JSON", formatter_class=HelpFormatter)
    db_flag(status)
    status.add_argument("--gateway", default=None, help="only this gateway")


def run(args: argparse.Namespace) -> int:
    """Run the chosen subcommand; returns the exit code."""
    command = getattr(args, "ingest_command", None)
    if command is None:
        print("egw ingest: choose a subcommand: serve, register, migrate or status (see egw ingest --help)", file=sys.stderr)
        return 2
    if not args.db:
        print("egw ingest: --db (or EGW_INGEST_DB) is required: the PostgreSQL URL", file=sys.stderr)
        return 2
    from fleet.store import DatabaseUnavailableError

    try:
        if command == "serve":
            return _serve(args)
        return asyncio.run({"register": _register, "migrate": _migrate, "status": _status}[command](args))
    except DatabaseUnavailableError as exc:
        print(f"egw ingest: {exc}", file=sys.stderr)
        return 1


async def _open(args: argparse.Namespace) -> FleetStore:
    from fleet.store import FleetStore

    return await FleetStore.open(args.db, max_size=2, application_name="egw-ingest-cli")


async def _register(args: argparse.Namespace) -> int:
    try:
        pem = sys.stdin.buffer.read() if str(args.key) == "-" else args.key.read_bytes()
    except OSError as exc:
        print(f"egw ingest register: {args.key}: {exc.strerror or exc}", file=sys.stderr)
        return 2
    store = await _open(args)
    try:
        kid, gateway, created = await store.register(pem, args.gateway or None)
    except ValueError as exc:
        print(f"egw ingest register: {args.key}: {exc}", file=sys.stderr)
        return 2
    finally:
        await store.close()
    print(json.dumps({"kid": kid, "gateway": gateway, "created": created}))
    return 0


async def _migrate(args: argparse.Namespace) -> int:
    from fleet.schema import MIGRATIONS

    store = await _open(args)
    await store.close()
    print(json.dumps({"schema_version": len(MIGRATIONS)}))
    return 0


async def _status(args: argparse.Namespace) -> int:
    store = await _open(args)
    try:
        print(json.dumps(await store.status(args.gateway), indent=2))
    finally:
        await store.close()
    return 0


def _serve(args: argparse.Namespace) -> int:
    from actors.harvest.mqtt_settings import mqtt_url_problem
    from fleet.worker import Worker, WorkerConfig
    from supervisor.logs import configure_process_logging

    configure_process_logging(args.log_level, process_name="ingest-worker")
    if args.mqtt:
        problem = mqtt_url_problem(args.mqtt)
        if problem:
            print(f"egw ingest serve: --mqtt: {problem}", file=sys.stderr)
            return 2
    for flag in ("mqtt_ca", "mqtt_cert", "mqtt_key"):
        path = getattr(args, flag)
        if path and not os.path.isfile(path):
            print(f"egw ingest serve: --{flag.replace('_', '-')}: no such file {path!r}", file=sys.stderr)
            return 2
    token = ""
    if args.token_file is not None:
        try:
            token = args.token_file.read_text().strip()
        except OSError as exc:
            print(f"egw ingest serve: --token-file {args.token_file}: {exc.strerror or exc}", file=sys.stderr)
            return 2
        if not token:
            print(f"egw ingest serve: --token-file {args.token_file}: the file is empty", file=sys.stderr)
            return 2
    config = WorkerConfig(
        dsn=args.db,
        host=args.host,
        port=args.port,
        reuse_port=args.reuse_port,
        mqtt_url=args.mqtt,
        mqtt_version=args.mqtt_version,
        mqtt_ca=args.mqtt_ca,
        mqtt_cert=args.mqtt_cert,
        mqtt_key=args.mqtt_key,
        topic_prefix=args.topic_prefix,
        group=args.group,
        token=token,
        pool_size=max(1, args.pool),
        inflight=max(1, args.inflight),
    )
    return asyncio.run(_serve_until_stopped(Worker(config)))


async def _serve_until_stopped(worker: Worker) -> int:
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await worker.start()
    print(json.dumps({"listening": f"http://{worker.config.host}:{worker.port}/v1/batches" if worker.port else None, "port": worker.port, "worker": worker.name}), flush=True)
    await stop.wait()
    await worker.stop()
    return 0
