"""Private files that survive a power cut: the gateway's key, its API token, its data dir.

A secret is written to a temporary file (0600), fsynced, then linked into place, so the
name only ever points at a complete file: a power cut mid-write leaves a stray temporary
file, never a truncated key that makes every later start fail. Linking (not renaming)
fails when another process won the race, so two processes starting at once agree on one
secret.
"""

from __future__ import annotations

import os
import stat
from collections.abc import Callable
from pathlib import Path

PRIVATE_FILE = 0o600
PRIVATE_DIR = 0o700


def make_private_dir(path: str | os.PathLike[str]) -> Path:
    """Create `path` (and parents) if needed; it is tightened to 0700 when others could read it."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=PRIVATE_DIR)
    make_private(path, PRIVATE_DIR)
    return path


def make_private(path: str | os.PathLike[str], mode: int = PRIVATE_FILE) -> None:
    """Take group and other permissions away from an existing file or directory."""
    try:
        if stat.S_IMODE(os.stat(path).st_mode) & 0o077:
            os.chmod(path, mode)
    except FileNotFoundError:
        pass


def create_private_file(path: str | os.PathLike[str], data: bytes, *, replace: bool = False) -> bool:
    """Write `data` to `path` atomically with mode 0600; False when `path` already existed.

    With `replace`, an existing file is replaced (for one found unusable: empty or cut
    short by a power cut under an older version).
    """
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, PRIVATE_FILE)
    try:
        os.fchmod(fd, PRIVATE_FILE)
        os.write(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)
    try:
        if replace:
            os.replace(tmp, path)
            _sync_dir(path.parent)
            return True
        try:
            os.link(tmp, path)  # atomic, and fails if another process created it first
        except FileExistsError:
            return False
        except OSError:  # file systems without hard links
            if path.exists():
                return False
            os.replace(tmp, path)
            _sync_dir(path.parent)
            return True
        _sync_dir(path.parent)
        return True
    finally:
        if tmp.exists():
            tmp.unlink()


def load_or_create_secret(path: Path, read: Callable[[Path], str | None], new: Callable[[], str],
                          render: Callable[[str], str] = str) -> str:
    """The secret stored at `path` (as `read` accepts it), or a `new()` one written there (0600).

    For the secrets a gateway makes once and keeps (the API token, the BLE setup code):
    the file is created with a link, so two processes starting at once agree on one value
    (the loser reads the winner's); only a file `read` refuses (empty or cut short by a
    power cut) is replaced, never a usable one that may already be printed on a label.
    """
    make_private_dir(path.parent)
    existing = read(path)
    if existing is not None:
        make_private(path)
        return existing
    value = new()
    data = (render(value) + "\n").encode()
    if create_private_file(path, data, replace=path.exists()):
        return value
    winner = read(path)  # another process created it first: use theirs
    if winner is not None:
        return winner
    create_private_file(path, data, replace=True)
    return value


def _sync_dir(path: Path) -> None:
    """The new directory entry itself must reach the disk, not only the file's data."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
