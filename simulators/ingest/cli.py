"""Command line of the ingest receiver: `python -m simulators.ingest` and `egw sim ingest`.

    python -m simulators.ingest --port N --db FILE [--key gateway_key.pub.pem ...]

`add_arguments(parser)` and `run(args)` let the `egw` command mount it as a subcommand.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

from simulators.ingest.server import serve
from supervisor.clihelp import HelpFormatter, examples


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="egw sim ingest", formatter_class=HelpFormatter, epilog=examples("egw sim ingest --port 8088 --db /tmp/ingest.db"), description="egw ingest receiver (upload endpoint simulator)")
    add_arguments(parser)
    return run(parser.parse_args(argv))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", type=int, default=8088, help="TCP port (0 picks a free one; the URL is printed as JSON)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--db", required=True, type=Path, help="the receiver's SQLite file")
    parser.add_argument("--key", action="append", default=[], type=Path, help="a gateway public key (PEM) to register; repeatable")


def run(args: argparse.Namespace) -> int:
    from supervisor.logs import configure_process_logging

    configure_process_logging()
    for key in args.key:
        if not key.is_file():
            print(f"--key {key}: no such file", file=sys.stderr)
            return 2
    try:
        asyncio.run(serve(args.db, args.port, args.host, tuple(args.key)))
    except KeyboardInterrupt:
        pass
    return 0
