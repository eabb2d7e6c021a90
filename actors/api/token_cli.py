"""`egw token`: print the REST API's bearer token (creating it if the gateway never ran).

    egw token                        the token in the configured data dir
    egw token --data-dir /data       ... in another data dir (env EGW_DATA_DIR)
    curl -H "Authorization: Bearer $(egw token)" -X POST http://gateway:8080/api/...

It reads the same file the API actor guards its write endpoints with (`api-token`,
mode 0600), so it only works for a user who may read the gateway's data dir.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from actors.api.token import load_or_create_token, token_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (optional)")
    parser.add_argument("--data-dir", help="data directory (env EGW_DATA_DIR)")
    parser.add_argument("--path", action="store_true", help="print the token file's path instead of the token")


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    from supervisor.config import load_config

    try:
        config = load_config(getattr(args, "config", None), overrides={"data_dir": getattr(args, "data_dir", None)})
    except ValueError as exc:
        print(f"egw token: configuration error: {exc}", file=stderr)
        return 2
    data_dir = config.values["data_dir"]
    if getattr(args, "path", False):
        print(token_path(data_dir), file=stdout)
        return 0
    try:
        token = load_or_create_token(data_dir)
    except PermissionError:
        print(f"egw token: cannot read {token_path(data_dir)}: permission denied (run as the gateway's user)", file=stderr)
        return 2
    print(token, file=stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="egw token", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
