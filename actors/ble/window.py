"""The provisioning window: the span of time in which BLE may change the gateway.

It opens only on an explicit trigger: the gateway's first start while unprovisioned
(see `actors.ble.actor`), or someone holding the API token (`POST /api/ble/window`,
`egw ble window open`). Outside it BLE stops advertising and every write over BLE is
refused. A short window keeps the attack surface of a radio interface small.

The window's state is persisted (`ble-window.json` in the data dir, 0600, replaced
atomically) on every change, and a starting BLE actor restores it instead of opening
anew: a restarted actor (a crash, a hang killed by its supervisor, a SIGKILL) resumes
a window that was open until its deadline and never opens one that was closed. So
nobody can reopen provisioning by making the actor crash.

The deadline is a CLOCK_MONOTONIC time together with the kernel's boot id: the
monotonic clock is shared by every process of one boot and never jumps (a wall clock
set by NTP after Wi-Fi comes up would move the deadline), and a state from another
boot is read as closed, so a reboot never extends an open window either.
"""

from __future__ import annotations

import json
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path

from storage.files import create_private_file
from supervisor.procs import BOOT_ID_PATH, boot_id

WINDOW_FILE = "ble-window.json"

log = logging.getLogger(__name__)


def window_path(data_dir: str | os.PathLike[str]) -> Path:
    return Path(data_dir) / WINDOW_FILE


def read_boot_id(path: str = BOOT_ID_PATH) -> str | None:
    """This boot's id, or None (`supervisor.procs.boot_id`; a path of its own for tests)."""
    return boot_id(path)


class WindowStore:
    """The persisted window: `{"boot_id": ..., "open_until": <monotonic s> | null}`.

    `load` answers None when there is no file at all (the gateway's first start, or
    a data dir wiped on purpose), else the deadline (None: closed). Anything that is
    not a state of this boot with a deadline (unreadable, corrupt, another boot, no
    boot id) reads as closed: an error must never open the window.
    """

    def __init__(self, path: str | os.PathLike[str], boot_id: Callable[[], str | None] = read_boot_id) -> None:
        self.path = Path(path)
        self.boot_id = boot_id

    def exists(self) -> bool:
        return self.path.exists() or self.path.is_symlink()

    def load(self) -> float | None:
        try:
            state = json.loads(self.path.read_text())
            until = state.get("open_until")
            same_boot = state.get("boot_id") is not None and state.get("boot_id") == self.boot_id()
        except (OSError, ValueError, AttributeError) as exc:
            log.warning("BLE window state unreadable, treated as closed: %s", type(exc).__name__)
            return None
        if not same_boot or not isinstance(until, (int, float)) or isinstance(until, bool):
            return None
        return float(until)

    def save(self, open_until: float | None) -> None:
        data = json.dumps({"boot_id": self.boot_id(), "open_until": open_until}).encode()
        create_private_file(self.path, data, replace=True)


class ProvisioningWindow:
    """Open until a monotonic deadline; `open()` extends it, `close()` ends it now.

    With a store, the window starts as the store says (closed when it says nothing)
    and every change is written through; `first_start` tells the owner that no state
    existed, i.e. that it has to decide whether this is an unprovisioned first boot.
    A change that cannot be written is still applied in memory: the next start then
    reads the previous state, and an unwritable close leaves at worst a window that
    closes at its old deadline.
    """

    def __init__(self, minutes: float, clock: Callable[[], float] = time.monotonic, store: WindowStore | None = None) -> None:
        self.minutes = minutes
        self.clock = clock
        self.store = store
        self.first_start = store is None or not store.exists()
        restored = None if store is None or self.first_start else store.load()
        self._until = restored if restored is not None else float("-inf")
        self.save_error: str | None = None

    def is_open(self) -> bool:
        return self.clock() < self._until

    def remaining(self) -> float:
        """Seconds until the window closes; 0 when closed."""
        return max(0.0, self._until - self.clock())

    def open(self, minutes: float | None = None) -> None:
        span = self.minutes if minutes is None else minutes
        self._until = self.clock() + max(span, 0.0) * 60.0
        self._save()

    def close(self) -> None:
        self._until = float("-inf")
        self._save()

    def _save(self) -> None:
        self.first_start = False
        if self.store is None:
            return
        try:
            self.store.save(self._until if self.is_open() else None)
            self.save_error = None
        except OSError as exc:
            self.save_error = f"{type(exc).__name__}: {exc}"[:200]
