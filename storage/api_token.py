"""The API token's file: created once on first start, read by the API and the command-line tools.

Generated into the data dir as `api-token` with mode 0600, so only the gateway's user (and
root) can read it; `egw token` prints it for the installer. Created with O_EXCL so two
processes starting at once can never both write a token and disagree about which one is
valid: the loser reads the winner's. The API checks requests against it
(`actors.api.token`); the BLE actor and the CLIs only read it, through this module.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path

from storage.files import load_or_create_secret

TOKEN_FILE = "api-token"
_MIN_LENGTH = 32


def token_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / TOKEN_FILE


def load_or_create_token(data_dir: str | os.PathLike[str]) -> str:
    """Return the gateway's API token, creating it (0600) if this is the first start.

    A token file that is empty or too short (a half-written file from a power cut
    before this code's fsync) is replaced rather than trusted.
    """
    return load_or_create_secret(token_path(data_dir), read_token, lambda: secrets.token_urlsafe(32))


def read_token(path: str | os.PathLike[str]) -> str | None:
    """The token stored at `path`, or None when missing or unusable."""
    try:
        text = Path(path).read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text if len(text) >= _MIN_LENGTH else None
