"""`egw ble`: the setup code for the box's label, and the provisioning window.

    egw ble code                      print the setup code (created if the gateway never ran)
    egw ble code --data-dir /data     ... of another data dir (env EGW_DATA_DIR)
    egw ble window                    the window's state (GET /api/ble)
    egw ble window open --minutes 15  open (or extend) the window (POST /api/ble/window)
    egw ble window close              close it now (DELETE /api/ble/window)

The setup code is what an installer's phone sends with every write over BLE
(`Setup-Code` header, see actors/ble/PROTOCOL.md); it is read from the data dir
(`ble-setup-code`, 0600), so only the gateway's user can print it. Print it on the
gateway's label. The window commands talk to the running gateway's REST API (`--url`,
else 127.0.0.1:<api_port>) with the API token from the data dir (or `--token`).
Exit codes: 0 done, 1 refused by the gateway, 2 not reachable or not readable.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from actors.ble.setup_code import format_code, load_or_create_setup_code, setup_code_path
from actors.api.client import api_request


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.formatter_class = argparse.RawDescriptionHelpFormatter
    parser.description = __doc__
    parser.add_argument("action", choices=("code", "window"), help="code: print the setup code; window [open|close]: the provisioning window")
    parser.add_argument("change", nargs="?", choices=("open", "close"), help="for window: open or close it (default: show it)")
    parser.add_argument("--minutes", type=float, help="for window open: how long (default: ble_window_minutes)")
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (optional)")
    parser.add_argument("--data-dir", help="data directory (env EGW_DATA_DIR)")
    parser.add_argument("--api-port", type=int, help="REST API port (env EGW_API_PORT)")
    parser.add_argument("--url", help="base URL of the gateway's API (default http://127.0.0.1:<api_port>)")
    parser.add_argument("--token", help="bearer token (default: the data dir's API token)")
    parser.add_argument("--timeout", type=float, default=10.0, help="seconds to wait for the answer (default 10)")


def _config(args: argparse.Namespace) -> dict[str, Any]:
    from supervisor.config import load_config

    overrides = {"data_dir": getattr(args, "data_dir", None), "api_port": getattr(args, "api_port", None)}
    return load_config(getattr(args, "config", None), overrides=overrides).values


def _code(values: dict[str, Any], stdout: TextIO, stderr: TextIO) -> int:
    data_dir = values["data_dir"]
    try:
        code = load_or_create_setup_code(data_dir)
    except PermissionError:
        print(f"egw ble: cannot read {setup_code_path(data_dir)}: permission denied (run as the gateway's user)", file=stderr)
        return 2
    print(format_code(code), file=stdout)
    return 0


def _window(args: argparse.Namespace, values: dict[str, Any], stdout: TextIO, stderr: TextIO) -> int:
    from storage.api_token import read_token, token_path

    base = args.url.rstrip("/") if args.url else f"http://127.0.0.1:{values['api_port']}"
    token = args.token or read_token(token_path(values["data_dir"]))
    if args.change == "open":
        call = ("POST", "/api/ble/window", {} if args.minutes is None else {"minutes": args.minutes})
    elif args.change == "close":
        call = ("DELETE", "/api/ble/window", None)
    else:
        call = ("GET", "/api/ble", None)
    method, path, body = call
    try:
        status, answer = api_request(base + path, args.timeout, method=method, body=body, token=token)
    except (OSError, ValueError) as exc:
        print(f"egw ble: gateway not reachable at {base} ({type(exc).__name__})", file=stderr)
        return 2
    if status != 200:
        print(f"egw ble: {answer.get('message') or answer.get('error')}", file=stderr)
        return 1
    print(json.dumps(answer, indent=2), file=stdout)
    return 0


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    try:
        values = _config(args)
    except ValueError as exc:
        print(f"egw ble: configuration error: {exc}", file=stderr)
        return 2
    if args.action == "code":
        return _code(values, stdout, stderr)
    return _window(args, values, stdout, stderr)
