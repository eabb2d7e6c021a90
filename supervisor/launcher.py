"""Starting and stopping the whole gateway: `egw run` and `egw demo` end up here.

The launcher is the only process outside the actor tree. It

1. imports the heavy libraries first, so every forked actor shares their pages
   (about 4.5 MiB PSS per actor instead of about 21 MiB);
2. confines the actor system's sockets to loopback, and becomes a child subreaper so
   that thespian's self-daemonizing admin stays in its process family: on the way out
   it ends every descendant still alive (each actor also dies with its parent, see
   `supervisor.hardening`);
3. starts thespian's multiprocTCPBase on the configured admin port, with JSON-lines
   logging, creates the root supervisor and hands it the tree built from the config;
4. waits: SIGTERM/SIGINT stop the tree in order and exit 0; an `Escalate` from the
   root (restart intensity exceeded) or a silent root exits 1, so the container or
   systemd restarts the gateway from scratch.
"""

from __future__ import annotations

import gc
import os
import signal
import socket
import sys
import threading
import time
from typing import Any

from supervisor.config import ConfigError, GatewayConfig, error_text, prepare_data_dir
from supervisor.hardening import become_subreaper, hold_family_lifeline
from supervisor.logs import ActorLog, configure_process_logging, log_definitions
from supervisor.loopback import LOOPBACK, confine_actor_sockets_to_loopback
from supervisor.messages import Escalate, Ping, Pong, Start, Started
from supervisor.procs import descendants, end_family, reap_zombie_children
from supervisor.spec import SUPERVISOR_ACTOR, SupervisorSpec
from supervisor.tree import root_spec

EXIT_OK = 0
EXIT_ESCALATED = 1
EXIT_STARTUP = 2
ORDERLY_STOP_S = 3.5  # seconds an orderly stop may take before what is left is ended
ROOT_SILENCE_LIMIT = 30.0  # seconds without a Pong before the launcher gives up on the root


# The gateway's own actor modules: imported once here, their code and constants are shared
# by every actor process instead of being built again (privately) in each of them.
ACTOR_MODULES = (
    "supervisor.supervisor", "actors.device.actor", "actors.device.sunspec", "actors.harvest.actor", "actors.harvest.transport",
    "actors.ocpp.listener", "actors.ocpp.charger", "actors.api.actor", "actors.ble.actor", "actors.live.hub", "storage.outbox",
    "actors.energy.actor", "actors.harvest.mqtt",
)


def preimport_heavy_libraries() -> None:
    """Import what actors use before forking them, so the pages are shared copy-on-write.

    Then freeze what exists: the cyclic garbage collector never visits frozen objects,
    so it does not write to (and so un-share) their pages in every forked actor.
    """
    import importlib

    import aiohttp.web  # noqa: F401
    import bless  # noqa: F401
    import dbus_next.aio  # noqa: F401
    import cryptography.hazmat.primitives.asymmetric.ec  # noqa: F401
    import ocpp.v16  # noqa: F401
    import paho.mqtt.client  # noqa: F401 - the MQTT upload transport
    import pymodbus.client  # noqa: F401
    import sqlite_utils  # noqa: F401

    for name in ACTOR_MODULES:
        try:
            importlib.import_module(name)
        except ImportError:  # a build without that family (e.g. no BLE stack) still runs
            continue
    gc.collect()
    gc.freeze()


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((LOOPBACK, port))
        except OSError:
            return False
    return True


class Launcher:
    """Runs one gateway until it is told to stop or its root supervisor gives up."""

    def __init__(self, config: GatewayConfig, spec: SupervisorSpec | None = None, environment: Any = None) -> None:
        self.config = config
        self.spec = spec
        self.environment = environment  # the demo's simulators, started after the actor system
        self.log = ActorLog("launcher")
        self.stop_requested: str | None = None

    def _request_stop(self, signum: int, _frame: Any) -> None:
        self.stop_requested = signal.Signals(signum).name

    def run(self) -> int:
        cfg = self.config
        configure_process_logging(cfg.log_level, "launcher")
        os.umask(0o077)  # everything the family creates (database, WAL, key, token) is the gateway's alone
        try:  # an unusable data dir needs a person, not a restart: exit 2, never a traceback
            prepare_data_dir(cfg)
        except ConfigError as exc:
            print(error_text(exc), file=sys.stderr)
            return EXIT_STARTUP
        spec = self.spec or root_spec(cfg)
        if not port_is_free(cfg.actor_port):
            self.log.error("actor port in use: is another gateway running? set EGW_ACTOR_PORT", port=cfg.actor_port)
            return EXIT_STARTUP
        preimport_heavy_libraries()
        confine_actor_sockets_to_loopback()
        become_subreaper()
        hold_family_lifeline()
        signal.signal(signal.SIGTERM, self._request_stop)
        signal.signal(signal.SIGINT, self._request_stop)

        from thespian.actors import ActorSystem

        asys = ActorSystem(
            "multiprocTCPBase",
            capabilities={"Admin Port": cfg.actor_port, "Process Startup Method": "fork"},
            logDefs=log_definitions(cfg.log_level),
        )
        code = EXIT_OK
        try:
            if self.environment is not None:
                self.environment.start()
            root = asys.createActor(SUPERVISOR_ACTOR)
            asys.tell(root, Start("root", spec, path=""))
            self.log.info("gateway starting", pid=os.getpid(), children=[c.name for c in spec.children], actor_port=cfg.actor_port)
            code = self._wait(asys, root)
        finally:
            self._shutdown(asys)
        self.log.info("gateway stopped", exit_code=code, reason=self.stop_requested or "escalation")
        return code

    def _wait(self, asys: Any, root: Any) -> int:
        last_pong = time.monotonic()
        ping_seq = 0
        next_ping = 0.0
        while self.stop_requested is None:
            now = time.monotonic()
            if now >= next_ping:
                ping_seq += 1
                asys.tell(root, Ping(ping_seq))
                next_ping = now + 2.0
                reap_zombie_children()  # orphans of the family are ours (subreaper, PID 1 in a container)
            msg = asys.listen(0.5)
            if isinstance(msg, Pong):
                last_pong = time.monotonic()
            elif isinstance(msg, Started):
                self.log.info("root supervisor running", pid=msg.pid)
            elif isinstance(msg, Escalate):
                self.log.error("root supervisor gave up; exiting for a full restart", reason=msg.reason)
                return EXIT_ESCALATED
            if time.monotonic() - last_pong > ROOT_SILENCE_LIMIT:
                self.log.error("root supervisor silent; exiting for a full restart", silent_s=ROOT_SILENCE_LIMIT)
                return EXIT_ESCALATED
        return EXIT_OK

    def _shutdown(self, asys: Any) -> None:
        """Stop the tree in order, but never for longer than ORDERLY_STOP_S.

        Thespian drops a message to an address it has wrongly declared dead (seen after
        siblings die together), so an exit request can be lost and the child's supervisor
        then waits out the child's shutdown_timeout. A stop of the gateway is bounded here
        instead: whatever is still running after ORDERLY_STOP_S is ended (SIGTERM, then
        SIGKILL). Nothing committed is lost by that: SQLite's WAL survives a SIGKILL.
        """
        started = time.monotonic()
        orderly = threading.Thread(target=self._stop_actor_system, args=(asys,), name="actor-system-shutdown", daemon=True)
        orderly.start()
        orderly.join(ORDERLY_STOP_S)
        if orderly.is_alive():
            self.log.warning("orderly stop overran; ending the processes still running", limit_s=ORDERLY_STOP_S, left=len(descendants(os.getpid())))
        if self.environment is not None:
            self.environment.stop()
        left = descendants(os.getpid())
        killed = end_family(left, grace=0.5 if orderly.is_alive() else 1.0) if left else []
        self.log.info("actor system stopped", seconds=round(time.monotonic() - started, 2), leftover_killed=len(killed))

    def _stop_actor_system(self, asys: Any) -> None:
        try:
            asys.shutdown()
        except Exception as exc:  # noqa: BLE001 - the family is ended by _shutdown regardless
            self.log.warning("actor system shutdown failed", error=repr(exc))
