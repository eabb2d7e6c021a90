"""The Supervisor actor: starts its children from a SupervisorSpec and keeps them running.

Thespian tells a parent when a child process is gone (`ChildActorExited`) but does
nothing about it. This actor supplies the rest of OTP's supervisor:

* restart types (permanent / transient / temporary) and the strategies one_for_one and
  rest_for_one;
* restart intensity: more than `max_restarts` in `period` seconds and it gives up,
  stops its children and sends `Escalate` to its own parent (at the root, the launcher,
  which exits non-zero so that the container or systemd restarts the whole gateway);
* exponential backoff with jitter between restarts of one child;
* hang detection: children are pinged on a heartbeat; one that stays silent past its
  deadline is SIGKILLed, which turns a hang into an ordinary restart;
* dynamic children (chargers appear when they connect): `StartChild` / `StopChild`;
* a health record per child, pushed upwards as `SubtreeReport`, so the root can answer
  `GetTree` (the REST API's actor tree) and `Lookup` (current addresses) at once.
"""

from __future__ import annotations

import os
import random
import signal
import time
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

from thespian.actors import ActorExitRequest, ChildActorExited, WakeupMessage

from actors.live.publisher import LivePublisher
from supervisor.actor import SupervisedActor
from supervisor.messages import (
    ChildFailed,
    ChildStopped,
    Escalate,
    GetTree,
    Lookup,
    LookupResult,
    Ping,
    Pong,
    StartChild,
    Started,
    StatusUpdate,
    StopChild,
    Start,
    SubtreeReport,
    Tree,
)
from supervisor.policy import BackoffSchedule, RestartIntensity
from supervisor.spec import ChildSpec, SupervisorSpec

_HEARTBEAT = "heartbeat"
_REPORT = "report"
_REPORT_DELAY = timedelta(seconds=0.2)


@dataclass
class ChildState:
    """Everything the supervisor knows about one child; `record()` is its public view."""

    spec: ChildSpec
    backoff: BackoffSchedule
    address: Any = None
    pid: int | None = None
    state: str = "stopped"
    restarts: int = 0
    last_error: str | None = None
    since: float = field(default_factory=time.time)
    info: dict = field(default_factory=dict)
    subtree: tuple = ()
    subtree_seq: int = -1  # seq of the SubtreeReport in `subtree`; older reports are ignored
    status_seq: int = -1  # seq of the last StatusUpdate applied
    generation: int = 0
    failed: bool = False  # reported ChildFailed (or was killed as hung) before exiting
    stopping: bool = False  # we asked it to exit
    removing: bool = False  # StopChild: forget it once it has exited
    start_on_exit: bool = False  # rest_for_one: start again once its old process is gone
    last_pong: float = 0.0

    def record(self) -> dict:
        return {
            "name": self.spec.name,
            "kind": self.spec.kind,
            "actor": self.spec.actor,
            "pid": self.pid,
            "state": self.state,
            "restarts": self.restarts,
            "last_error": self.last_error,
            "since": self.since,
            "info": dict(self.info),
            "children": list(self.subtree),
        }


class Supervisor(SupervisedActor):
    """A supervisor is itself a supervised actor, so trees nest to any depth."""

    def on_start(self, config: SupervisorSpec) -> None:
        self.spec = config
        self.children: dict[str, ChildState] = {}
        self.intensity = RestartIntensity(config.intensity)
        self.rng = random.Random()
        self.ping_seq = 0
        self.report_pending = False
        self.report_seq = 0
        self.escalated = False
        # `gateway` live events (restarts, exits, hangs); the root knows the API's address itself
        self.live = LivePublisher(self, resolve=self._api_address if self.path == "" else None)
        for child in config.children:
            self._add(child)
        self.wakeupAfter(timedelta(seconds=config.heartbeat.interval), payload=_HEARTBEAT)

    # ------------------------------------------------------------ children
    def _add(self, spec: ChildSpec) -> ChildState:
        state = ChildState(spec=spec, backoff=BackoffSchedule(self.spec.backoff, self.rng))
        self.children[spec.name] = state
        self._launch(state)
        return state

    def _launch(self, child: ChildState, restart: bool = False) -> None:
        child.generation += 1
        child.restarts += 1 if restart else 0
        child.address = self.createActor(child.spec.actor)
        child.pid, child.failed, child.stopping, child.start_on_exit = None, False, False, False
        child.subtree, child.subtree_seq, child.status_seq, child.info = (), -1, -1, {}  # never show the previous incarnation's view as current
        child.state, child.since = "starting", time.time()
        now = time.monotonic()
        child.last_pong = now
        child.backoff.started(now)
        self.send(child.address, Start(child.spec.name, child.spec.config, path=self._child_path(child.spec.name)))
        self._changed()

    def _child_path(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name

    @property
    def parent_is_supervisor(self) -> bool:
        """Only the root (path "") answers to the launcher; every other supervisor to a supervisor."""
        return self.path != ""

    def _by_address(self, address: Any) -> ChildState | None:
        for child in self.children.values():
            if child.address == address:
                return child
        return None

    def _stop(self, child: ChildState) -> None:
        if child.address is not None and not child.stopping:
            child.stopping = True
            child.state = "stopping"
            self.send(child.address, ActorExitRequest())

    # -------------------------------------------------- supervision protocol
    def receiveMsg_Started(self, msg: Started, sender: Any) -> None:  # noqa: N802
        child = self._by_address(sender)
        if child is None:
            return
        child.pid, child.state, child.since = msg.pid, "running", time.time()
        child.last_pong = time.monotonic()
        self.log.info("child started", child=child.spec.name, pid=msg.pid, restarts=child.restarts)
        if child.restarts:
            self.live.emit("gateway", "restarted", {"child": self._child_path(child.spec.name), "pid": msg.pid, "restarts": child.restarts})
        self._changed()

    def receiveMsg_Pong(self, msg: Pong, sender: Any) -> None:  # noqa: N802
        child = self._by_address(sender)
        if child is not None:
            child.last_pong = time.monotonic()
            child.pid = msg.pid

    def receiveMsg_ChildFailed(self, msg: ChildFailed, sender: Any) -> None:  # noqa: N802
        child = self._by_address(sender)
        if child is not None:
            child.failed, child.last_error = True, msg.error
            self._changed()

    def receiveMsg_Escalate(self, msg: Escalate, sender: Any) -> None:  # noqa: N802
        child = self._by_address(sender)
        if child is not None:
            child.failed, child.last_error = True, f"escalated: {msg.reason}"
            self._changed()

    def receiveMsg_StatusUpdate(self, msg: StatusUpdate, sender: Any) -> None:  # noqa: N802
        child = self._by_address(sender)
        if child is None:
            return
        if msg.seq > child.status_seq:
            child.status_seq = msg.seq
            if msg.state:
                child.state = msg.state
            child.info.update(msg.info)
        else:  # overtaken by a newer update: keep only what that one did not say
            for key, value in msg.info.items():
                child.info.setdefault(key, value)
        self._changed()

    def receiveMsg_SubtreeReport(self, msg: SubtreeReport, sender: Any) -> None:  # noqa: N802
        child = self._by_address(sender)
        if child is not None and msg.seq > child.subtree_seq:
            child.subtree, child.subtree_seq = msg.records, msg.seq
            self._changed()

    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, sender: Any) -> None:  # noqa: N802
        child = self._by_address(msg.childAddress)
        if child is None:
            return
        child.address, child.pid = None, None
        if child.removing:
            del self.children[child.spec.name]
            self._changed()
            return
        if child.stopping:
            child.state = "stopped"
            if child.start_on_exit:
                self._launch(child, restart=True)
            self._changed()
            return
        if self.escalated:
            return
        self._exited_unexpectedly(child)

    def _exited_unexpectedly(self, child: ChildState) -> None:
        spec = child.spec
        reason = child.last_error if child.failed else "exited"
        if not child.failed and child.last_error is None:
            child.last_error = "process exited unexpectedly"
        self.log.warning("child exited", child=spec.name, reason=reason, restart=spec.restart)
        self.live.emit("gateway", "child_exited", {"child": self._child_path(spec.name), "reason": reason, "restart": spec.restart})
        if spec.restart == "temporary" or (spec.restart == "transient" and not child.failed and child.state == "stopped"):
            child.state = "stopped"
            self._changed()
            return
        now = time.monotonic()
        if not self.intensity.allow(now):
            self._escalate(f"{spec.name} restarted more than {self.spec.intensity.max_restarts} times in {self.spec.intensity.period:g} s")
            return
        group = [child]
        if self.spec.strategy == "rest_for_one":
            names = list(self.children)
            for later in names[names.index(spec.name) + 1:]:
                sibling = self.children[later]
                group.append(sibling)
                if sibling.address is not None:
                    self._stop(sibling)
        delay = child.backoff.next_delay(now)
        for member in group:
            member.state = "restarting"
        self.wakeupAfter(timedelta(seconds=delay), payload=("restart", spec.name, child.generation))
        self._changed()

    def _restart_group(self, name: str) -> None:
        names = list(self.children)
        group = names[names.index(name):] if self.spec.strategy == "rest_for_one" else [name]
        for member_name in group:
            member = self.children[member_name]
            if member.address is None:
                self._launch(member, restart=True)
            elif member.stopping:
                member.start_on_exit = True

    def _escalate(self, reason: str) -> None:
        self.escalated = True
        self.log.error("restart intensity exceeded; escalating", reason=reason)
        self.live.emit("gateway", "escalated", {"supervisor": self.path or "root", "reason": reason})
        if self.parent is not None:
            self.send(self.parent, Escalate(self.name, reason))
        for child in self.children.values():
            self._stop(child)
        self.send(self.myAddress, ActorExitRequest())

    def receiveMsg_PoisonMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802
        """A message to a child that could not be created or handle it; its exit is what counts."""
        self.log.debug("message to a child was not delivered", type=type(msg.poisonMessage).__name__)

    # ------------------------------------------------------------- timers
    def receiveMsg_WakeupMessage(self, msg: WakeupMessage, sender: Any) -> None:  # noqa: N802
        payload = msg.payload
        if payload == _HEARTBEAT:
            self._heartbeat()
        elif payload == _REPORT:
            self.report_pending = False
            self._report()
        elif isinstance(payload, tuple) and payload[0] == "restart":
            _, name, generation = payload
            child = self.children.get(name)
            if child is not None and child.generation == generation and not self.escalated:
                self._restart_group(name)

    def _heartbeat(self) -> None:
        now = time.monotonic()
        beat = self.spec.heartbeat
        for child in self.children.values():
            if child.address is None or child.stopping:
                continue
            if child.pid and now - child.last_pong > beat.timeout:
                self._kill_hung(child, now - child.last_pong)
                continue
            self.ping_seq += 1
            self.send(child.address, Ping(self.ping_seq))
        self.wakeupAfter(timedelta(seconds=beat.interval), payload=_HEARTBEAT)

    def _kill_hung(self, child: ChildState, silent_for: float) -> None:
        child.failed = True
        child.last_error = f"missed heartbeat: silent for {silent_for:.1f} s"
        child.state = "hung"
        self.log.error("child hung; killing it", child=child.spec.name, pid=child.pid, silent_s=round(silent_for, 2))
        self.live.emit("gateway", "child_hung", {"child": self._child_path(child.spec.name), "silent_s": round(silent_for, 2)})
        if child.pid and child.pid != os.getpid():
            try:
                os.kill(child.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        child.last_pong = time.monotonic()  # one kill per deadline
        self._changed()

    # --------------------------------------------------------- tree & lookup
    def _changed(self) -> None:
        if not self.report_pending:
            self.report_pending = True
            self.wakeupAfter(_REPORT_DELAY, payload=_REPORT)

    def _records(self) -> tuple:
        return tuple(child.record() for child in self.children.values())

    def _report(self) -> None:
        if self.parent is not None and self.parent_is_supervisor:
            self.report_seq += 1
            self.send(self.parent, SubtreeReport(self.name, self._records(), self.report_seq))

    def receiveMsg_LookupResult(self, msg: LookupResult, sender: Any) -> None:  # noqa: N802
        self.live.lookup_result(msg)  # the answer to the live feed's Lookup("api")

    def _api_address(self) -> Any:
        api = self.children.get("api")
        return api.address if api is not None and api.state == "running" else None

    def receiveMsg_GetTree(self, msg: GetTree, sender: Any) -> None:  # noqa: N802
        self.send(sender, Tree(self._records()))

    def receiveMsg_Lookup(self, msg: Lookup, sender: Any) -> None:  # noqa: N802
        requester = msg.requester or sender
        rest = msg.rest if msg.rest is not None else msg.path
        head, _, tail = rest.partition("/")
        child = self.children.get(head)
        if child is None:
            from_parent = sender == self.parent
            if self.parent_is_supervisor and not from_parent:
                self.send(self.parent, Lookup(msg.path, requester))
            else:
                self.send(requester, LookupResult(msg.path, None))
            return
        if not tail:
            usable = child.address if child.state not in ("restarting", "stopping", "stopped", "hung") else None
            self.send(requester, LookupResult(msg.path, usable))
        elif child.spec.kind == "supervisor" and child.address is not None:
            self.send(child.address, Lookup(msg.path, requester, tail))
        else:
            self.send(requester, LookupResult(msg.path, None))

    # ------------------------------------------------------ dynamic children
    def receiveMsg_StartChild(self, msg: StartChild, sender: Any) -> None:  # noqa: N802
        spec: ChildSpec = msg.spec
        child = self.children.get(spec.name)
        if child is None:
            child = self._add(spec)
        elif child.removing:
            child.removing, child.start_on_exit = False, True
            child.spec = spec
        self.send(sender, LookupResult(spec.name, child.address))

    def receiveMsg_StopChild(self, msg: StopChild, sender: Any) -> None:  # noqa: N802
        child = self.children.get(msg.name)
        if child is None:
            self.send(sender, ChildStopped(msg.name))
            return
        child.removing = True
        if child.address is None:
            del self.children[msg.name]
            self._changed()
        else:
            self._stop(child)
        self.send(sender, ChildStopped(msg.name))

    def on_stop(self) -> None:
        for child in self.children.values():
            self._stop(child)
