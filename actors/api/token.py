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
import stat
from pathlib import Path

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
    path.parent.mkdir(parents=True, exist_ok=True)
    existing = read_token(path)
    if existing is not None:
        _ensure_private(path)
        return existing
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{TOKEN_FILE}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.fchmod(fd, 0o600)
        os.write(fd, (token + "\n").encode())
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        os.link(tmp, path)  # atomic, and fails if another process won the race
    except FileExistsError:
        winner = read_token(path)
        if winner is not None:
            os.unlink(tmp)
            return winner
        os.replace(tmp, path)  # an empty or truncated file: replace it
        return token
    except OSError:
        os.replace(tmp, path)  # file systems without hard links
        return token
    os.unlink(tmp)
    return token


def read_token(path: str | os.PathLike[str]) -> str | None:
    """The token stored at `path`, or None when missing or unusable."""
    try:
        text = Path(path).read_text().strip()
    except (FileNotFoundError, UnicodeDecodeError):
        return None
    return text if len(text) >= _MIN_LENGTH else None


def _ensure_private(path: Path) -> None:
    if stat.S_IMODE(path.stat().st_mode) & 0o077:
        os.chmod(path, 0o600)


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
