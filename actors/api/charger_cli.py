"""`egw chargers`: add, key, accept, block and remove chargers; manage the local idTag list.

    egw chargers list                              every charger: confirmed, blocked, key fingerprint, candidate keys
    egw chargers add CP-7 --key-stdin              add CP-7; its AuthorizationKey is read from stdin (never from argv)
    egw chargers add CP-8 --no-key --pending       add CP-8 without a key, its BootNotification answered Pending
    egw chargers set-key CP-7 --key-stdin          rotate CP-7's key: the old one stops working at once
    egw chargers fingerprint --key-stdin           the fingerprint of a key, computed here (compare with `list`)
    egw chargers accept CP-8 --fingerprint 3f2a…   accept CP-8, pinning the candidate key it presented
    egw chargers block CP-9 | unblock CP-9         refuse (or allow again) CP-9's handshakes
    egw chargers remove CP-9                       forget CP-9 (its transactions stay)
    egw chargers tags                              the local authorization list and its version
    egw chargers tag-set TAG1 --expiry 2027-01-01T00:00:00Z --parent FLEET
    egw chargers tag-block TAG1 | tag-remove TAG1
    egw chargers sync CP-7 [--full]                send CP-7 the list (Differential since what it confirmed)

Under `ocpp_unknown_chargers = "accept"` a charger that connects on its own is let in
unconfirmed and the key it presented becomes a candidate; `list` shows the candidates'
fingerprints and where they came from, `accept --fingerprint` pins the right one. Keys
are read from stdin (`--key-stdin`) or prompted for, so they stay out of the shell
history and the process list. Talks to the running gateway's REST API (`--url`, else
127.0.0.1:<api_port>) with the data directory's API token (or `--token`).
Exit codes: 0 done, 1 refused by the gateway, 2 not reachable or bad arguments.
"""

from __future__ import annotations

import argparse
import getpass
import json
import sys
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

from actors.api.cli import base_url
from actors.api.outbox_cli import _token
from actors.api.client import api_request

ACTIONS = ("list", "add", "set-key", "fingerprint", "accept", "block", "unblock", "remove", "tags", "tag-set", "tag-block", "tag-remove", "sync")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("action", choices=ACTIONS, metavar="ACTION", help=", ".join(ACTIONS))
    parser.add_argument("target", nargs="?", help="the charger id (chargePointId), or the idTag for tag-*")
    parser.add_argument("--key-stdin", action="store_true", help="read the AuthorizationKey from stdin (default: prompt for it)")
    parser.add_argument("--pending", action="store_true", help="add: answer its BootNotification Pending until `accept` (default Accepted)")
    parser.add_argument("--no-key", action="store_true", help="add: without a key (it presents one later; accept its fingerprint)")
    parser.add_argument("--fingerprint", help="accept: pin the candidate key with this fingerprint (16 hex digits)")
    parser.add_argument("--status", default="Accepted", choices=("Accepted", "Blocked", "Expired", "Invalid"), help="tag-set: the tag's status (default Accepted)")
    parser.add_argument("--expiry", help="tag-set: RFC 3339 date-time after which the tag answers Expired (default: never)")
    parser.add_argument("--parent", help="tag-set: the parent (group) idTag")
    parser.add_argument("--full", action="store_true", help="sync: send the whole list (default: what changed since the charger's version)")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (optional)")
    parser.add_argument("--data-dir", help="data directory holding the API token (env EGW_DATA_DIR)")
    parser.add_argument("--api-port", type=int, help="REST API port (env EGW_API_PORT)")
    parser.add_argument("--url", help="base URL of the gateway's API (default http://127.0.0.1:<api_port>)")
    parser.add_argument("--token", help="bearer token (default: the data dir's API token)")
    parser.add_argument("--json", action="store_true", help="print the gateway's JSON answer instead of text")
    parser.add_argument("--timeout", type=float, default=45.0, help="seconds to wait for the answer (default 45: a sync waits for the charger)")


def _key(args: argparse.Namespace) -> str:
    """The key from stdin or a prompt: never an argument, which `ps` and the shell history would show."""
    if args.key_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return getpass.getpass("AuthorizationKey: ")


def _quote(value: str) -> str:
    return urllib.parse.quote(value, safe="")


def _request_for(args: argparse.Namespace, base: str, token_of: Any) -> tuple[str, str, dict | None]:
    """(method, url, body) of the request an action makes."""
    target = args.target or ""
    charger = f"{base}/api/chargers/{_quote(target)}"
    tag = f"{base}/api/id-tags/{_quote(target)}"
    if args.action == "list":
        return "GET", f"{base}/api/charger-credentials", None
    if args.action == "add":
        body: dict[str, Any] = {"id": target, "registration": "Pending" if args.pending else "Accepted"}
        if not args.no_key:
            body["key"] = _key(args)
        return "POST", f"{base}/api/chargers", body
    if args.action == "set-key":
        return "PUT", f"{charger}/key", {"key": _key(args)}
    if args.action == "accept":
        return "POST", f"{charger}/accept", {"fingerprint": args.fingerprint.lower()} if args.fingerprint else {}
    if args.action in ("block", "unblock"):
        return "POST", f"{charger}/{args.action}", None
    if args.action == "remove":
        return "DELETE", charger, None
    if args.action == "tags":
        return "GET", f"{base}/api/id-tags", None
    if args.action == "tag-set":
        return "PUT", tag, {"status": args.status, "expiry_date": args.expiry, "parent_id_tag": args.parent}
    if args.action == "tag-block":
        status, current = api_request(tag, args.timeout, token=token_of())
        keep = {k: current.get(k) for k in ("expiry_date", "parent_id_tag")} if status == 200 else {}
        return "PUT", tag, {"status": "Blocked", **keep}
    if args.action == "tag-remove":
        return "DELETE", tag, None
    return "POST", f"{charger}/local-list/sync" + ("?update=full" if args.full else ""), None


def _describe(action: str, body: Any) -> str:
    """The answer as a line (or a table) an operator reads."""
    if action == "list":
        lines = [f"{'id':<20} {'registration':<12} {'state':<12} {'key':<17} candidates"]
        for c in body["chargers"]:
            state = "blocked" if c["blocked"] else ("confirmed" if c["confirmed"] else "unconfirmed")
            candidates = ", ".join(f"{k['fingerprint']} ({k['remote'] or '?'}, {k['attempts']}x, last {k['last_seen']})" for k in c["candidates"]) or "-"
            lines.append(f"{c['id']:<20} {c['registration']:<12} {state:<12} {c['key_fingerprint'] or ('set' if c['key_set'] else '-'):<17} {candidates}")
        return "\n".join(lines)
    if action == "tags":
        lines = [f"list version {body['list_version']}", f"{'idTag':<21} {'status':<9} {'expiry':<25} parent"]
        lines += [f"{t['id_tag']:<21} {t['status']:<9} {t['expiry_date'] or '-':<25} {t['parent_id_tag'] or '-'}" for t in body["id_tags"]]
        return "\n".join(lines)
    if action in ("tag-set", "tag-block", "tag-remove"):
        return f"{body['id_tag']}: {body['status']} (list version {body['list_version']})"
    if action == "sync":
        return f"{body['charger']}: {body['status']} ({body['update_type']} update, {body['entries']} idTag(s); charger at version {body['charger_version']}, list at {body['list_version']})"
    if action == "remove":
        return f"{body['id']}: removed"
    key = body["key_fingerprint"] or ("set" if body["key_set"] else "none")
    return f"{body['id']}: registration {body['registration']}, {'blocked' if body['blocked'] else 'not blocked'}, key {key}"


def run(args: argparse.Namespace, out: Any = None) -> int:
    out = out or sys.stdout
    if args.action == "fingerprint":
        from storage.chargers import key_fingerprint

        print(key_fingerprint(_key(args)), file=out)
        return 0
    if args.action not in ("list", "tags") and not args.target:
        print(f"egw chargers {args.action}: name the {'idTag' if args.action.startswith('tag') else 'charger'}, e.g. `egw chargers {args.action} CP-7`", file=sys.stderr)
        return 2
    base = base_url(args)
    try:
        token = _token(args)
        method, url, body = _request_for(args, base, lambda: token)
        status, answer = api_request(url, args.timeout, method=method, body=body, token=token)
    except (urllib.error.URLError, OSError) as exc:
        print(f"egw chargers: gateway not reachable at {base}: {exc}", file=sys.stderr)
        return 2
    if status >= 300 and not (args.action == "sync" and status == 409):
        print(f"egw chargers: {answer.get('message') or answer.get('error')}", file=sys.stderr)
        return 1
    print(json.dumps(answer, indent=2) if args.json else _describe(args.action, answer), file=out)
    return 0 if status < 300 else 1
