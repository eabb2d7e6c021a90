"""Making a forked actor process die like a normal process.

Thespian installs its own handlers in every actor process. Two of its defaults are
harmful for an unattended box:

* a segfaulting actor returns from thespian's SIGSEGV handler straight into the
  faulting instruction and spins at 100 % CPU forever; restoring SIG_DFL makes it die,
  so the parent is told `ChildActorExited` and restarts it;
* a hard-killed parent leaves its children running; `PR_SET_PDEATHSIG` asks the kernel
  to SIGKILL the child as soon as its parent dies, so a subtree never outlives its
  supervisor.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal

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
