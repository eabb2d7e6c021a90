"""A private actor system in this process, for tests, benchmarks and the demo's helpers.

The launcher is the only way the gateway itself runs; tests and benchmarks need the same
actor system without its signal handling and exit codes. Whatever hosts one must still
keep its sockets on loopback, see the whole process family (thespian's admin
daemonizes itself) and end that family afterwards, so this module does it in one place.
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from supervisor.hardening import become_subreaper
from supervisor.loopback import LOOPBACK, confine_actor_sockets_to_loopback
from supervisor.messages import Start, Started
from supervisor.procs import descendants, end_family
from supervisor.spec import SUPERVISOR_ACTOR, SupervisorSpec


def free_port() -> int:
    """A TCP port nobody listens on right now (bound and released on 127.0.0.1)."""
    with socket.socket() as probe:
        probe.bind((LOOPBACK, 0))
        return probe.getsockname()[1]


STARTUP_ATTEMPTS = 3


@contextmanager
def private_actor_system(log_defs: dict | None = None) -> Iterator[Any]:
    """A multiprocTCPBase actor system on a free loopback admin port, torn down with its family."""
    from thespian.actors import ActorSystem

    confine_actor_sockets_to_loopback()
    become_subreaper()
    options: dict[str, Any] = {"transientUnique": True}
    if log_defs is not None:
        options["logDefs"] = log_defs
    from thespian.actors import InvalidActorAddress

    before = set(descendants(os.getpid()))
    for attempt in range(STARTUP_ATTEMPTS):
        try:
            asys = ActorSystem("multiprocTCPBase", capabilities={"Admin Port": free_port(), "Process Startup Method": "fork"}, **options)
            break
        except InvalidActorAddress:
            # the admin did not answer on its port (taken between free_port and its bind, or too
            # slow on a loaded machine): end what it started and try again on another port
            end_family(sorted(set(descendants(os.getpid())) - before), grace=1.0)
            if attempt == STARTUP_ATTEMPTS - 1:
                raise
    # the admin and logger (and whatever they fork) are the family; other children of this
    # process, such as a test's dbus-daemon or simulator, are not ours to end
    roots = set(descendants(os.getpid())) - before
    try:
        yield asys
    finally:
        family = {pid for root in roots for pid in (root, *descendants(root))}
        asys.shutdown()
        end_family(sorted(family), grace=1.0)


def ask_typed(asys: Any, address: Any, msg: Any, kind: type, timeout: float = 5.0) -> Any:
    """Ask and return the first reply of type `kind`, skipping unrelated messages."""
    deadline = time.monotonic() + timeout
    reply = asys.ask(address, msg, timeout)
    while not isinstance(reply, kind):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError(f"no {kind.__name__} reply to {type(msg).__name__} within {timeout:g} s")
        reply = asys.listen(remaining)
    return reply


def start_root(asys: Any, spec: SupervisorSpec, timeout: float = 10.0) -> Any:
    """Create a root supervisor (path "") for `spec`; returns its address once it has started."""
    root = asys.createActor(SUPERVISOR_ACTOR)
    ask_typed(asys, root, Start("root", spec, path=""), Started, timeout)
    return root
