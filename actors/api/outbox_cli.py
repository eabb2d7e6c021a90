"""`egw outbox`: the batches a receiver refused for good, and sending them again.

    egw outbox dead-letters               list parked batches (id, transport, status, reason, items)
    egw outbox dead-letters --json        the same as JSON, for scripts
    egw outbox resend cloud               send every parked batch of transport "cloud" again
    egw outbox resend cloud --id 3 --id 7 only these two

A refused batch is parked (it counts in the outbox's byte budget) so that the streams
behind it keep flowing. Fix what the receiver complained about (a wrong URL, a proxy
limit), then resend: the items are signed again at the head of the chain and the
receiver de-duplicates anything it already has. Talks to the running gateway's REST
API (`--url`, else 127.0.0.1:<api_port>); resending needs the API token, read from the
data directory unless `--token` is given. Exit codes: 0 done, 1 refused, 2 not reachable.
"""

from __future__ import annotations

import argparse
import json
import sys
import urllib.error
import urllib.request
from typing import Any

from actors.api.cli import base_url
from actors.api.client import api_request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("action", choices=("dead-letters", "resend"), help="dead-letters: list; resend TRANSPORT: send again")
    parser.add_argument("transport", nargs="?", help="the upload transport's name (for resend)")
    parser.add_argument("--id", dest="ids", type=int, action="append", metavar="N", help="only this dead letter (repeatable; default: all)")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (optional)")
    parser.add_argument("--data-dir", help="data directory holding the API token (env EGW_DATA_DIR)")
    parser.add_argument("--api-port", type=int, help="REST API port (env EGW_API_PORT)")
    parser.add_argument("--url", help="base URL of the gateway's API (default http://127.0.0.1:<api_port>)")
    parser.add_argument("--token", help="bearer token for resend (default: the data dir's API token)")
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")


def _token(args: argparse.Namespace) -> str:
    if args.token:
        return args.token
    from storage.api_token import read_token, token_path
    from supervisor.config import load_config

    config = load_config(args.config, overrides={"data_dir": args.data_dir, "api_port": args.api_port})
    return read_token(token_path(config.values["data_dir"]))


def run(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    base = base_url(args)
    try:
        if args.action == "dead-letters":
            status, body = api_request(f"{base}/api/outbox/dead-letters", args.timeout)
            if status != 200:
                print(f"egw outbox: {body.get('message') or body.get('error')}", file=sys.stderr)
                return 1
            letters = body["dead_letters"]
            if args.json:
                print(json.dumps(letters, indent=2), file=out)
                return 0
            if not letters:
                print("no dead letters", file=out)
                return 0
            print(f"{'id':>5}  {'transport':<14} {'status':>6} {'items':>6}  {'parked at':<24} reason", file=out)
            for d in letters:
                mark = " (queued)" if d["queued_to_resend"] else ""
                print(f"{d['id']:>5}  {d['transport']:<14} {d['http_status'] or '-':>6} {d['items']:>6}  {d['parked_at'] or '-':<24} {d['error']}{mark}", file=out)
            return 0
        if not args.transport:
            print("egw outbox resend: name the transport, e.g. `egw outbox resend cloud`", file=sys.stderr)
            return 2
        status, body = api_request(f"{base}/api/transports/{args.transport}/dead-letters/resend", args.timeout, method="POST",
                                   body={"ids": args.ids} if args.ids else {}, token=_token(args))
    except (urllib.error.URLError, OSError) as exc:
        print(f"egw outbox: gateway not reachable at {base}: {exc}", file=sys.stderr)
        return 2
    if status != 200:
        print(f"egw outbox: {body.get('message') or body.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(body) if args.json else f"{body['queued']} dead letter(s) of {body['transport']} queued to be sent again", file=out)
    return 0
