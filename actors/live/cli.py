"""`egw watch TOPIC`: print a live feed in the terminal.

    egw watch transaction/17            a charging session as it happens
    egw watch charger/CP-1              connector states, sessions starting and stopping
    egw watch device/inv1 --json        each reading as one JSON line (for scripts)
    egw watch gateway --url http://gateway.local:8080 --token "$TOKEN"

It is an SSE client that behaves like a browser's EventSource: when the connection
drops (the gateway or its API restarts) it reconnects with `Last-Event-ID` and resumes
where it stopped; when that is impossible the gateway says so and `egw watch` prints it.
The token is read from the data directory (`--data-dir`, `EGW_DATA_DIR`, `--config`)
unless `--token` is given; the API is `127.0.0.1:<api_port>` unless `--url` says otherwise.
Exit codes: 0 after --count events or Ctrl-C, 2 when refused, unreachable or misused.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from actors.live.topics import TopicError, parse_topic

RECONNECT_DELAY = 1.0


class WatchError(Exception):
    """Stop with this message (exit code 2)."""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("topic", help="transaction/<id>, charger/<id>, device/<id>, loadpoint/<id> or gateway")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (optional)")
    parser.add_argument("--data-dir", help="data directory holding the API token (env EGW_DATA_DIR)")
    parser.add_argument("--api-port", type=int, help="REST API port (env EGW_API_PORT)")
    parser.add_argument("--url", help="base URL of the gateway's API (default http://127.0.0.1:<api_port>)")
    parser.add_argument("--token", help="bearer token: the API token or a transaction token (default: the data dir's)")
    parser.add_argument("--resume-from", type=int, metavar="SEQ", help="start with this sequence number (from the kept history)")
    parser.add_argument("--count", type=int, metavar="N", help="exit after N events")
    parser.add_argument("--json", action="store_true", help="print each message as one JSON line")
    parser.add_argument("--no-reconnect", action="store_true", help="exit when the connection drops")
    parser.add_argument("--timeout", type=float, default=60.0, help="seconds without any data (keep-alives included) before reconnecting")


def _settings(args: argparse.Namespace) -> tuple[str, str | None]:
    """(base URL, token) from the flags and the gateway configuration."""
    token = getattr(args, "token", None)
    url = getattr(args, "url", None)
    if url and token:
        return url.rstrip("/"), token
    from storage.api_token import read_token, token_path
    from supervisor.config import load_config

    config = load_config(getattr(args, "config", None), overrides={"api_port": getattr(args, "api_port", None), "data_dir": getattr(args, "data_dir", None)})
    base = url.rstrip("/") if url else f"http://127.0.0.1:{config.values['api_port']}"
    if token is None:
        try:
            token = read_token(token_path(config.values["data_dir"]))
        except PermissionError:
            raise WatchError(f"cannot read {token_path(config.values['data_dir'])}: permission denied (run as the gateway's user or pass --token)") from None
    return base, token


def sse_messages(lines: Iterator[bytes]) -> Iterator[dict[str, Any]]:
    """Parse an SSE stream into {"id", "event", "data"} dicts (comments and retry lines skipped)."""
    current: dict[str, Any] = {}
    data: list[str] = []
    for raw in lines:
        line = raw.decode("utf-8", "replace").rstrip("\r\n")
        if not line:
            if data:
                current["data"] = "\n".join(data)
                yield current
            current, data = {}, []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "data":
            data.append(value)
        elif field in ("id", "event"):
            current[field] = value


def describe(message: dict[str, Any]) -> str:
    """One readable line per message."""
    kind = message.get("type")
    if kind == "event":
        at = message.get("time") if message.get("time") is not None else message.get("emitted")
        stamp = datetime.fromtimestamp(at, UTC).strftime("%H:%M:%S.%f")[:-3] if isinstance(at, int | float) else "--:--:--"
        data = message.get("data") or {}
        values = data.get("values") if isinstance(data.get("values"), dict) else data
        fields = " ".join(f"{k}={_short(v)}" for k, v in values.items() if v is not None)
        return f"{stamp}  {message.get('topic')} #{message.get('seq')}  {message.get('kind')}  {fields}".rstrip()
    if kind == "subscribed":
        return f"-- watching {message.get('topic')} (last event #{message.get('seq')}, {message.get('replayed', 0)} from history)"
    if kind == "resync":
        return f"!! {message.get('topic')}: cannot resume: {message.get('reason')}; re-read {message.get('rest')}"
    if kind == "lagged":
        return f"!! too slow: {message.get('dropped')} events dropped; resuming from {message.get('resume_from')}"
    return f"!! {json.dumps(message)}"


def _short(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.6g}"
    text = json.dumps(value) if isinstance(value, dict | list) else str(value)
    return text if len(text) <= 40 else text[:37] + "..."


def watch(base: str, token: str | None, topic: str, *, resume_from: int | None = None, count: int | None = None, as_json: bool = False,
          reconnect: bool = True, timeout: float = 60.0, stdout: TextIO, stderr: TextIO) -> int:
    """Stream `topic` to `stdout` until `count` events, Ctrl-C, or a refusal."""
    last_id: str | None = None
    seen = 0
    while True:
        query = {"topic": topic}
        if resume_from is not None and last_id is None:
            query["resume_from"] = str(resume_from)
        request = urllib.request.Request(f"{base}/api/live/sse?{urllib.parse.urlencode(query)}", headers={"Accept": "text/event-stream"})
        if token:
            request.add_header("Authorization", f"Bearer {token}")
        if last_id:
            request.add_header("Last-Event-ID", last_id)
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                for message in sse_messages(response):
                    body = json.loads(message["data"])
                    if message.get("id"):
                        last_id = message["id"]
                    print(json.dumps(body) if as_json else describe(body), file=stdout, flush=True)
                    if body.get("type") == "event":
                        seen += 1
                        if count is not None and seen >= count:
                            return 0
        except urllib.error.HTTPError as exc:
            try:
                reason = json.loads(exc.read()).get("message", exc.reason)
            except ValueError:
                reason = exc.reason
            print(f"egw watch: refused ({exc.code}): {reason}", file=stderr)
            if exc.code in (400, 401, 403, 404):
                return 2
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            if not reconnect:
                print(f"egw watch: no live feed at {base} ({reason}); is the gateway running? (--url / --api-port)", file=stderr)
                return 2
            print(f"egw watch: connection lost ({reason}); reconnecting", file=stderr)
        if not reconnect:
            return 0 if count is None else 2
        time.sleep(RECONNECT_DELAY)


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    try:
        topic = str(parse_topic(args.topic))
        base, token = _settings(args)
    except (TopicError, WatchError, ValueError) as exc:  # ConfigError is a ValueError
        print(f"egw watch: {exc}", file=stderr)
        return 2
    if not token:
        print("egw watch: no token: pass --token or --data-dir of the gateway (see `egw token`)", file=stderr)
        return 2
    try:
        return watch(base, token, topic, resume_from=args.resume_from, count=args.count, as_json=args.json,
                     reconnect=not args.no_reconnect, timeout=args.timeout, stdout=stdout, stderr=stderr)
    except KeyboardInterrupt:
        return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="egw watch", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
