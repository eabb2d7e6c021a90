"""Finding and ending a process family through /proc (no extra dependency)."""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path


def parent_of(pid: int) -> int | None:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    # the command name may contain spaces and parentheses: split after the last ')'
    return int(stat.rsplit(")", 1)[1].split()[1])


def descendants(root: int) -> list[int]:
    """Every living process below `root`, found by walking parent links in /proc."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            ppid = parent_of(int(entry))
            if ppid is not None:
                children.setdefault(ppid, []).append(int(entry))
    found, stack = [], [root]
    while stack:
        for child in children.get(stack.pop(), []):
            found.append(child)
            stack.append(child)
    return found


def is_alive(pid: int) -> bool:
    """True while `pid` exists and is not a zombie."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def end_family(pids: list[int], grace: float = 2.0) -> list[int]:
    """SIGTERM, wait up to `grace` seconds, then SIGKILL what is left; returns the killed pids."""
    for pid in pids:
        _signal(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while time.monotonic() < deadline and any(is_alive(p) for p in pids):
        time.sleep(0.05)
    killed = [p for p in pids if is_alive(p)]
    for pid in killed:
        _signal(pid, signal.SIGKILL)
    return killed


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except (ProcessLookupError, PermissionError):
        pass


def reap_zombie_children() -> list[int]:
    """Collect exit statuses of this process's children that have ended (zombies).

    The launcher is the family's subreaper and, in a container, PID 1: every orphan of the
    family becomes its child, and unreaped ones would pile up as zombies.
    """
    reaped = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        fields = _stat_fields(int(entry))
        if fields is None or fields[0] != "Z" or int(fields[1]) != me:
            continue
        try:
            if os.waitpid(int(entry), os.WNOHANG)[0]:
                reaped.append(int(entry))
        except ChildProcessError:
            continue
    return reaped


def _stat_fields(pid: int) -> list[str] | None:
    """Fields of /proc/<pid>/stat after the command name (state is [0], ppid [1], starttime [19])."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()


@dataclass(frozen=True)
class ProcessIdentity:
    """A process as the kernel knows it: a pid alone can be reused, pid + start time cannot.

    `start_ticks` is /proc/<pid>/stat's starttime (clock ticks since boot); `parent` the
    pid that created it. A supervisor asks `alive()` instead of trusting that an exit
    notification will arrive, and never signals a pid that now belongs to someone else.
    """

    pid: int
    start_ticks: int
    parent: int

    def alive(self) -> bool:
        """True while this very process (same start time, same parent) exists and is not a zombie."""
        fields = _stat_fields(self.pid)
        if fields is None or fields[0] in ("Z", "X", "x"):
            return False
        return int(fields[19]) == self.start_ticks and int(fields[1]) == self.parent

    def kill(self, sig: int = signal.SIGKILL) -> bool:
        """Send `sig` if this is still the same process; False when it is already gone."""
        if not self.alive():
            return False
        try:
            os.kill(self.pid, sig)
        except (ProcessLookupError, PermissionError):
            return False
        return True


def identify(pid: int, parent: int | None = None) -> ProcessIdentity | None:
    """The identity of a living `pid` (optionally required to be a child of `parent`)."""
    fields = _stat_fields(pid)
    if fields is None or fields[0] in ("Z", "X", "x"):
        return None
    ppid = int(fields[1])
    if parent is not None and ppid != parent:
        return None
    return ProcessIdentity(pid, int(fields[19]), ppid)


def children_of(parent: int) -> list[int]:
    """Living direct children of `parent`, by a scan of /proc (slow: for fallbacks only)."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            fields = _stat_fields(int(entry))
            if fields is not None and fields[0] not in ("Z", "X", "x") and int(fields[1]) == parent:
                found.append(int(entry))
    return found


BOOT_ID_PATH = "/proc/sys/kernel/random/boot_id"


def boot_id(path: str = BOOT_ID_PATH) -> str | None:
    """This boot's id (a fresh UUID at every kernel boot), or None where the kernel does not say.

    Monotonic clocks and saved deadlines only compare within one boot: this is how a stored
    time stamp (a reading's, a provisioning window's) tells whether it is from this boot.
    """
    try:
        return Path(path).read_text().strip() or None
    except OSError:
        return None
