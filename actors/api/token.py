"""The bearer token that guards the API's write endpoints.

Generated once, on first start, into the data dir as `api-token` with mode 0600, so only
the gateway's user (and root) can read it; `egw token` prints it for the installer.
Created with O_EXCL so two processes starting at once can never both write a token and
disagree about which one is valid: the loser reads the winner's.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from storage.files import create_private_file, make_private, make_private_dir

TOKEN_FILE = "api-token"
_MIN_LENGTH = 32


def token_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / TOKEN_FILE


def load_or_create_token(data_dir: str | os.PathLike[str]) -> str:
    """Return the gateway's API token, creating it (0600) if this is the first start.

    A token file that is empty or too short (a half-written file from a power cut
    before this code's fsync) is replaced rather than trusted.
    """
    path = token_path(data_dir)
    make_private_dir(path.parent)
    existing = read_token(path)
    if existing is not None:
        make_private(path)
        return existing
    token = secrets.token_urlsafe(32)
    if create_private_file(path, (token + "\n").encode(), replace=path.exists()):
        return token
    winner = read_token(path)  # another process created it first: use theirs
    if winner is not None:
        return winner
    create_private_file(path, (token + "\n").encode(), replace=True)
    return token


def read_token(path: str | os.PathLike[str]) -> str | None:
    """The token stored at `path`, or None when missing or unusable."""
    try:
        text = Path(path).read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text if len(text) >= _MIN_LENGTH else None


def token_matches(expected: str, authorization: str | None) -> bool:
    """True when an `Authorization` header carries exactly `Bearer <expected>`.

    Compared in constant time so response timing reveals nothing about the token.
    """
    if not authorization:
        return False
    scheme, _, presented = authorization.partition(" ")
    if scheme.lower() != "bearer":
        return False
    return hmac.compare_digest(presented.strip().encode("utf-8", "replace"), expected.encode())
