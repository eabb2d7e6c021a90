"""Making a forked actor process die like a normal process.

Thespian installs its own handlers in every actor process. Two of its defaults are
harmful for an unattended box:

* a segfaulting actor returns from thespian's SIGSEGV handler straight into the
  faulting instruction and spins at 100 % CPU forever; restoring SIG_DFL makes it die,
  so the parent is told `ChildActorExited` and restarts it;
* a hard-killed parent leaves its children running; `PR_SET_PDEATHSIG` asks the kernel
  to SIGKILL the child as soon as its parent dies, so a subtree never outlives its
  supervisor;
* thespian's admin and logger are not actors of ours, and the admin is daemonized (its
  first parent exits at once), so nothing ties them to the launcher: a SIGKILLed launcher
  left the whole family running, the OCPP port still held. `hold_family_lifeline` ties
  every process forked below the launcher to it through a pipe (see there).
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import threading

PR_SET_PDEATHSIG = 1
PR_SET_CHILD_SUBREAPER = 36
_FATAL_SIGNALS = ("SIGSEGV", "SIGBUS", "SIGFPE", "SIGILL", "SIGABRT")


def in_forked_actor() -> bool:
    """True inside an actor process forked by the multiprocess actor system."""
    return multiprocessing.parent_process() is not None


def harden_process() -> None:
    """Restore fatal-signal defaults and tie this process's life to its parent's."""
    for name in _FATAL_SIGNALS:
        signal.signal(getattr(signal, name), signal.SIG_DFL)
    set_parent_death_signal(signal.SIGKILL)


def set_parent_death_signal(sig: int) -> bool:
    """Ask the kernel to send `sig` to this process when its parent dies (Linux only)."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, int(sig), 0, 0, 0) != 0:
            return False
    except (OSError, AttributeError):
        return False
    # The parent may have died between fork and prctl: then we are already orphaned.
    parent = multiprocessing.parent_process()
    if parent is not None and os.getppid() != parent.pid:
        os.kill(os.getpid(), sig)
    return True


def become_subreaper() -> bool:
    """Adopt orphaned descendants (Linux): thespian's admin daemonizes itself with a double
    fork, and as a subreaper the launcher still sees it, and everything below it, as family."""
    try:
        return ctypes.CDLL(None, use_errno=True).prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        return False


_lifeline_write: int | None = None  # the launcher's end; closed in every forked child
_lifeline_read: int | None = None


def hold_family_lifeline() -> None:
    """Make every process forked from here on (and below) die when this process dies.

    This process keeps the write end of a pipe; every forked descendant closes its copy
    of that end at birth and watches the read end from a daemon thread. However this
    process ends (SIGKILL included), the kernel closes the last write end, the read
    returns end-of-file, and each descendant SIGKILLs itself. Costs one blocked thread
    per process and nothing per message.
    """
    global _lifeline_read, _lifeline_write
    if _lifeline_read is not None:
        return
    _lifeline_read, _lifeline_write = os.pipe()
    os.register_at_fork(after_in_child=_watch_lifeline)


def _watch_lifeline() -> None:
    global _lifeline_write
    if _lifeline_write is not None:  # only the first generation holds a copy to close
        os.close(_lifeline_write)
        _lifeline_write = None
    threading.Thread(target=_die_when_the_launcher_does, args=(_lifeline_read,), name="family-lifeline", daemon=True).start()


def _die_when_the_launcher_does(fd: int | None) -> None:
    if fd is None:
        return
    try:
        while os.read(fd, 1):
            pass
    except OSError:  # the descriptor was closed by whoever forked us (a daemonizing library): no lifeline
        return
    os.kill(os.getpid(), signal.SIGKILL)
