"""`egw token`: print the bearer token of the configured gateway's REST API.

    egw token                              the token of the gateway configured as `egw run` is
    egw token --config /etc/egw/gateway.toml   ... the gateway run with that file
    egw token --data-dir /data             ... in another data dir (env EGW_DATA_DIR)
    curl -H "Authorization: Bearer $(egw token)" -X POST http://gateway:8080/api/...

It reads the same file the API actor guards its write endpoints with (`api-token`,
mode 0600), so it only works for a user who may read the gateway's data dir. It never
creates a token: one created in the wrong data dir (the gateway runs with another) is
a token the gateway rejects with 401, so when there is none it says where it looked
and how to point it at the gateway instead. The gateway creates it on its first start.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import TextIO

from storage.api_token import read_token, token_path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="the gateway's TOML configuration file, as given to `egw run` (default: none)")
    parser.add_argument("--data-dir", metavar="DIR", help="the gateway's data directory (default: EGW_DATA_DIR, then the file's data_dir, then ./data)")
    parser.add_argument("--path", action="store_true", help="print the token file's path instead of the token")


def run(args: argparse.Namespace, stdout: TextIO | None = None, stderr: TextIO | None = None) -> int:
    stdout, stderr = stdout or sys.stdout, stderr or sys.stderr
    from supervisor.config import ConfigError, error_text, load_config

    try:  # the same resolution as `egw run`: --data-dir, EGW_DATA_DIR, the file, the default
        config = load_config(getattr(args, "config", None), overrides={"data_dir": getattr(args, "data_dir", None)})
    except ConfigError as exc:
        print(error_text(exc, "egw token"), file=stderr)
        return 2
    data_dir, source = config.values["data_dir"], config.sources["data_dir"]
    source = "the built-in default" if source == "default" else source
    path = token_path(data_dir)
    if getattr(args, "path", False):
        print(path, file=stdout)
        return 0
    try:
        token = read_token(path)
    except PermissionError:
        print(f"egw token: cannot read {path}: permission denied (run as the gateway's user)", file=stderr)
        return 2
    except IsADirectoryError:
        token = None
    if token is None:
        found = "is not a usable token (empty or cut short)" if path.exists() else "does not exist"
        print(
            f"egw token: {path} {found}: no gateway has started with data dir {data_dir} (from {source}).\n"
            "Point egw token at the gateway's data dir as the gateway is run: --config FILE (its data_dir), "
            "--data-dir DIR or EGW_DATA_DIR=DIR (the demo's is data/demo); a gateway creates its token on its first start.",
            file=stderr,
        )
        return 2
    print(token, file=stdout)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="egw token", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_arguments(parser)
    return run(parser.parse_args(argv))
