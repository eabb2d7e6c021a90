"""The Supervisor actor: starts its children from a SupervisorSpec and keeps them running.

Thespian tells a parent when a child process is gone (`ChildActorExited`) but does
nothing about it, and that notice is not even certain to arrive: when siblings die at
the same instant one of them can be reported never. This actor supplies the rest of
OTP's supervisor, without trusting any single notification:

* restart types (permanent / transient / temporary) and the strategies one_for_one,
  rest_for_one and one_for_all;
* every child's process is identified at creation (pid + kernel start time, see
  `supervisor.procs.ProcessIdentity`); each heartbeat tick reconciles the children
  against the processes that exist, so a child whose exit notice was lost is restarted
  within one heartbeat interval, and a pid that now belongs to someone else is never
  signalled;
* deadlines, each ending in SIGKILL and an ordinary restart: `start_timeout` (a child
  stuck in on_start), the heartbeat timeout (a child stuck in a handler or stopped by
  SIGSTOP) and `shutdown_timeout` (a child that ignores its exit request); a child we
  killed, or found already gone ("no such process"), counts as exited at once;
* restart intensity: more than `max_restarts` in `period` seconds and it gives up,
  stops its children and sends `Escalate` to its own parent (at the root, the launcher,
  which exits non-zero so that the container or systemd restarts the whole gateway);
* containment: a child over its own restart limit is parked as "failed" and retried
  only every `park_delay` seconds; its failures no longer count towards the intensity,
  so one child that cannot work never takes its siblings or the gateway down with it;
* exponential backoff with jitter between restarts of one child;
* children are created in bounded steps between messages, so a supervisor starting
  hundreds of children still answers its own heartbeat;
* heartbeat settings: a nested supervisor whose spec has none inherits this one's;
* dynamic children (chargers appear when they connect): `StartChild` / `StopChild`;
* a health record per child, pushed upwards as `SubtreeReport`, so the root can answer
  `GetTree` (the REST API's actor tree) and `Lookup` (current addresses) at once.

docs/supervision.md describes the policy next to OTP's.

Why one module: it is one actor, OTP's supervisor: child state, strategies, intensity,
containment, heartbeats and /proc reconciliation act on the same children in the same
message handlers; the pure parts (spec, policy, backoff, procs) are already modules of their
own.
"""

from __future__ import annotations

import os
import random
import threading
import time
from collections import deque
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from thespian.actors import ActorExitRequest, ChildActorExited, WakeupMessage

from supervisor.actor import SupervisedActor
from supervisor.hardening import in_forked_actor
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
    TreeEvent,
)
from supervisor.policy import BackoffSchedule, RestartIntensity
from supervisor.procs import ProcessIdentity, children_of, identify
from supervisor.spec import ChildSpec, Containment, Heartbeat, Intensity, SupervisorSpec

_HEARTBEAT = "heartbeat"
_REPORT = "report"
_START_STEP = "start-step"
_ESCALATE_EXIT = "escalate-exit"
ESCALATE_GRACE = timedelta(seconds=2.0)  # a nested supervisor that escalated exits by itself after this, if its parent has not ended it
# A subtree report carries every child's record (a device's values among them) to the
# parent: changes within this window travel as one report. At 100 devices, 0.2 s meant
# five reports of 100 records a second, pickled twice on their way to the root.
_REPORT_DELAY = timedelta(seconds=1.0)
START_BATCH = 8
"""Children created per step; between steps the supervisor handles its mailbox (Ping included)."""
UNDELIVERED_EVENTS = 64  # tree events the root keeps while no observer is running (oldest dropped)
# > 0, as every timer in the gateway: thespian 4.0.1's TCPTransport._runWithExpiry
# (thespian/system/transport/TCPTransport.py) returns before reading any socket or queued
# message once the earliest wakeup has expired, and wakeupTransportBase._run_subtransport
# then delivers the wakeups; a timer re-armed due at once starves the mailbox (no Ping
# answered, no ChildActorExited read). Thespian has no setting for it.
# tests/supervisor/test_thespian_workarounds.py shows it and checks this floor.
_STEP_PAUSE = timedelta(seconds=0.002)
EXIT_GRACE = 1.0
"""Seconds an exiting supervisor waits, once its children are gone, before it ends its own process."""
UNUSABLE_STATES = ("restarting", "stopping", "stopped", "hung", "failed")


@dataclass
class ChildState:
    """Everything the supervisor knows about one child; `record()` is its public view."""

    spec: ChildSpec
    backoff: BackoffSchedule
    window: RestartIntensity  # this child's own failures, for containment
    address: Any = None
    previous_address: Any = None  # the last incarnation's, for a message that comes after its exit
    pid: int | None = None
    process: ProcessIdentity | None = None  # the child's process as the kernel knows it
    state: str = "stopped"
    restarts: int = 0
    last_error: str | None = None
    since: float = field(default_factory=time.time)
    info: dict = field(default_factory=dict)
    subtree: tuple = ()
    subtree_seq: int = -1  # seq of the SubtreeReport in `subtree`; older reports are ignored
    status_seq: int = -1  # seq of the last StatusUpdate applied
    generation: int = 0
    failed: bool = False  # reported ChildFailed (or was killed by a deadline) before exiting
    stopping: bool = False  # we asked it to exit
    removing: bool = False  # StopChild: forget it once it has exited
    start_on_exit: bool = False  # group restart: start again once its old process is gone
    awaiting_group: bool = False  # stopped for a group restart that a timer will perform
    queued: bool = False  # waiting in the start queue
    waiters: list = field(default_factory=list)  # StartChild senders awaiting the new address
    queued_restart: bool = False
    parked: bool = False  # over its containment limit: retried only every park_delay
    started_ok: bool = False  # Started received from the current incarnation
    launched_at: float = 0.0
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

    def set_state(self, state: str) -> None:
        if state != self.state:
            self.state, self.since = state, time.time()


class Supervisor(SupervisedActor):
    """A supervisor is itself a supervised actor, so trees nest to any depth."""

    def on_start(self, config: SupervisorSpec) -> None:
        self.spec = config
        self.heartbeat: Heartbeat = config.heartbeat or Heartbeat()
        self.children: dict[str, ChildState] = {}
        self.intensity = RestartIntensity(config.intensity)
        self.rng = random.Random()
        self.ping_seq = 0
        self.report_pending = False
        self.report_seq = 0
        self.escalated = False
        self.exiting = False
        self.queue: deque[str] = deque()
        self.step_armed = False
        self.step_budget = START_BATCH  # children that may still be created before the next step
        # only a supervisor in its own forked process owns child processes it may signal
        self.manages_processes = in_forked_actor()
        # tree events the root holds while no observer runs yet (the first ones of a start)
        self.undelivered: deque[TreeEvent] = deque(maxlen=UNDELIVERED_EVENTS)
        for child in config.children:
            self._add(child)
        self._pump()
        self.wakeupAfter(timedelta(seconds=self.heartbeat.interval), payload=_HEARTBEAT)

    # ------------------------------------------------------------ children
    def _add(self, spec: ChildSpec) -> ChildState:
        containment = spec.containment or self.spec.containment
        state = ChildState(
            spec=spec,
            backoff=BackoffSchedule(self.spec.backoff, self.rng),
            window=RestartIntensity(Intensity(containment.max_restarts, containment.period)),
        )
        self.children[spec.name] = state
        self._enqueue(state)
        return state

    def _containment(self, child: ChildState) -> Containment:
        return child.spec.containment or self.spec.containment

    def _enqueue(self, child: ChildState, restart: bool = False) -> None:
        """Start `child` in the next bounded step (creating a process takes milliseconds)."""
        if child.queued:
            child.queued_restart = child.queued_restart or restart
            return
        child.queued, child.queued_restart = True, restart
        child.set_state("starting")
        self.queue.append(child.spec.name)

    def _pump(self) -> None:
        """Create queued children, at most START_BATCH per step; the mailbox is read between steps.

        At most START_BATCH children are in flight (created, Started not yet received):
        thespian sends at most 20 messages at a time and queues the rest in order, so
        without that bound this supervisor's own Pong would wait behind hundreds of Start
        messages. A burst (a spec with hundreds of children, hundreds of StartChild at
        once, a one_for_all restart) therefore never delays that Pong by more than a step.
        """
        in_flight = sum(1 for c in self.children.values() if c.address is not None and not c.started_ok and not c.stopping)
        while self.queue and self.step_budget > 0 and in_flight < START_BATCH and not self.exiting:
            child = self.children.get(self.queue.popleft())
            if child is None or not child.queued:
                continue
            child.queued = False
            if child.address is None and not child.removing:
                self._launch(child, restart=child.queued_restart)
                self.step_budget -= 1
                in_flight += 1
        if self.queue and not self.step_armed and not self.exiting:
            self.step_armed = True
            self.wakeupAfter(_STEP_PAUSE, payload=_START_STEP)

    def _launch(self, child: ChildState, restart: bool = False) -> None:
        child.generation += 1
        child.restarts += 1 if restart else 0
        before = self._unclaimed_children() if self.manages_processes and not self._thespian_children_known() else None
        child.address = self.createActor(child.spec.actor)
        child.process = self._identify_new_child(child.address, before)
        child.pid = child.process.pid if child.process else None
        child.failed, child.stopping, child.start_on_exit, child.awaiting_group, child.started_ok = False, False, False, False, False
        child.subtree, child.subtree_seq, child.status_seq, child.info = (), -1, -1, {}  # never show the previous incarnation's view as current
        child.set_state("starting")
        now = time.monotonic()
        child.launched_at = child.last_pong = now
        child.backoff.started(now)
        self.send(child.address, Start(child.spec.name, self._child_config(child.spec), path=self._child_path(child.spec.name)))
        waiters, child.waiters = child.waiters, []
        for waiter in waiters:
            self.send(waiter, LookupResult(child.spec.name, child.address))
        self._changed()

    def _child_config(self, spec: ChildSpec) -> Any:
        """A nested supervisor without heartbeat settings of its own gets this supervisor's."""
        config = spec.config
        if spec.kind == "supervisor" and isinstance(config, SupervisorSpec) and config.heartbeat is None:
            return replace(config, heartbeat=self.heartbeat)
        return config

    # ----------------------------------------------------- child processes
    def _thespian_children_known(self) -> bool:
        return isinstance(getattr(getattr(self, "_myRef", None), "_child_procs", None), list)

    def _unclaimed_children(self) -> set[int]:
        claimed = {c.process.pid for c in self.children.values() if c.process}
        return set(children_of(os.getpid())) - claimed

    def _identify_new_child(self, address: Any, before: set[int] | None) -> ProcessIdentity | None:
        """The process thespian just forked for `address` (createActor forks synchronously).

        Knowing it before the child answers is what lets a child stuck in on_start be
        killed. Thespian keeps the forked process object next to the local address it
        returned; without that (another thespian version) the new child of this process
        found in /proc is used.
        """
        if not self.manages_processes:
            return None
        me = os.getpid()
        for info in reversed(getattr(getattr(self, "_myRef", None), "_child_procs", None) or []):
            if getattr(info, "childAddr", None) is address or getattr(info, "childAddr", None) == address:
                pid = getattr(info.childProc, "pid", None)
                return identify(pid, parent=me) if pid else None
        if before is not None:
            new = self._unclaimed_children() - before
            if len(new) == 1:
                return identify(new.pop(), parent=me)
        self.log.warning("could not identify a new child's process", child=str(address))
        return None

    def _kill(self, child: ChildState) -> None:
        """SIGKILL the child's process if it is still that process (never a reused pid)."""
        if child.process is not None and child.process.pid != os.getpid():
            child.process.kill()

    def _child_path(self, name: str) -> str:
        return f"{self.path}/{name}" if self.path else name

    @property
    def parent_is_supervisor(self) -> bool:
        """Only the root (path "") answers to the launcher; every other supervisor to a supervisor."""
        return self.path != ""

    def _named(self, name: str, sender: Any) -> ChildState | None:
        """The child a message names, if it came from that child's current incarnation.

        One address comparison instead of a scan of every child: heartbeats and status
        updates arrive from every child all the time, and thespian's address equality
        is not cheap.
        """
        child = self.children.get(name)
        return child if child is not None and child.address is not None and child.address == sender else None

    def _by_address(self, address: Any) -> ChildState | None:
        if address is None:
            return None
        for child in self.children.values():
            if child.address == address:
                return child
        return None

    def _stop(self, child: ChildState) -> None:
        """Ask the child to exit; past its shutdown_timeout it is killed."""
        if child.address is not None and not child.stopping:
            child.stopping = True
            child.set_state("stopping")
            self.send(child.address, ActorExitRequest())
            if not self.exiting:
                self.wakeupAfter(timedelta(seconds=child.spec.shutdown_timeout), payload=("stop-deadline", child.spec.name, child.generation))

    # -------------------------------------------------- supervision protocol
    def receiveMsg_Started(self, msg: Started, sender: Any) -> None:  # noqa: N802
        child = self._by_address(sender)
        if child is None:
            return
        if child.process is None and self.manages_processes:
            child.process = identify(msg.pid, parent=os.getpid())
        child.pid, child.started_ok = msg.pid, True
        if not child.stopping:
            child.set_state("running")
        child.last_pong = time.monotonic()
        self.log.info("child started", child=child.spec.name, pid=msg.pid, restarts=child.restarts)
        if self.queue:
            self._pump()
        if child.spec.observer:
            while self.undelivered:
                self.send(sender, self.undelivered.popleft())
        if child.restarts:
            self._tree_event("restarted", {"child": self._child_path(child.spec.name), "pid": msg.pid, "restarts": child.restarts})
        self._changed()

    def receiveMsg_Pong(self, msg: Pong, sender: Any) -> None:  # noqa: N802
        child = self._named(msg.name, sender)
        if child is not None:
            child.last_pong = time.monotonic()

    def receiveMsg_ChildFailed(self, msg: ChildFailed, sender: Any) -> None:  # noqa: N802
        child = self._by_address(sender)
        if child is not None:
            child.failed, child.last_error = True, msg.error
            self._changed()

    def receiveMsg_Escalate(self, msg: Escalate, sender: Any) -> None:  # noqa: N802
        child = self._by_address(sender)
        if child is not None:
            child.failed, child.last_error = True, f"escalated: {msg.reason}"
            self._tree_event("escalated", {"supervisor": self._child_path(child.spec.name), "reason": msg.reason})
            self.send(sender, ActorExitRequest())  # it waits for this; its exit then counts as a failure
            self._changed()
            return
        # The escalating supervisor ended itself (ESCALATE_GRACE passed before this arrived) and
        # its exit notice came first: the exit is already counted, but its cause is this reason.
        child = next((c for c in self.children.values() if sender is not None and c.previous_address == sender and c.address is None), None)
        if child is not None and child.last_error == "process exited unexpectedly":
            child.last_error = f"escalated: {msg.reason}"
            self._tree_event("escalated", {"supervisor": self._child_path(child.spec.name), "reason": msg.reason})
            self._changed()

    def receiveMsg_StatusUpdate(self, msg: StatusUpdate, sender: Any) -> None:  # noqa: N802
        child = self._named(msg.name, sender)
        if child is None:
            return
        if msg.seq > child.status_seq:
            child.status_seq = msg.seq
            if msg.state and not child.stopping:
                child.set_state(msg.state)
            child.info.update(msg.info)
        else:  # overtaken by a newer update: keep only what that one did not say
            for key, value in msg.info.items():
                child.info.setdefault(key, value)
        self._changed()

    def receiveMsg_SubtreeReport(self, msg: SubtreeReport, sender: Any) -> None:  # noqa: N802
        child = self._named(msg.name, sender)
        if child is not None and msg.seq > child.subtree_seq:
            child.subtree, child.subtree_seq = msg.records, msg.seq
            self._changed()

    def receiveMsg_ChildActorExited(self, msg: ChildActorExited, sender: Any) -> None:  # noqa: N802
        child = self._by_address(msg.childAddress)
        if child is not None:
            self._gone(child)

    def _gone(self, child: ChildState, cause: str | None = None) -> None:
        """The child's process is gone: by notification, by reconciliation or because we killed it.

        Called at most once per incarnation: the address is forgotten here, so a late
        ChildActorExited for the old process matches nothing.
        """
        if cause is not None:
            child.failed, child.last_error = True, cause
        child.previous_address = child.address
        child.address, child.pid, child.process = None, None, None
        child.started_ok = False
        if self.queue and not self.step_armed and not self.exiting:
            self.step_armed = True
            self.wakeupAfter(_STEP_PAUSE, payload=_START_STEP)
        if child.removing:
            del self.children[child.spec.name]
            self._changed()
            return
        if child.stopping:
            child.stopping = False
            child.set_state("restarting" if child.awaiting_group else "stopped")
            if child.start_on_exit:
                self._enqueue(child, restart=True)
                self._pump()
            self._changed()
            return
        if self.escalated or self.exiting:
            return
        self._exited_unexpectedly(child)

    def _exited_unexpectedly(self, child: ChildState) -> None:
        spec = child.spec
        reason = child.last_error if child.failed else "exited"
        if not child.failed and child.last_error is None:
            child.last_error = "process exited unexpectedly"
        self.log.warning("child exited", child=spec.name, reason=reason, restart=spec.restart)
        self._tree_event("child_exited", {"child": self._child_path(spec.name), "reason": reason, "restart": spec.restart})
        if spec.restart == "temporary" or (spec.restart == "transient" and not child.failed and child.state == "stopped"):
            child.set_state("stopped")
            self._changed()
            return
        now = time.monotonic()
        if child.parked:
            started = child.backoff.started_at
            if started is not None and now - started >= self.spec.backoff.reset_after:
                self._unpark(child)  # it had recovered; this is a fresh failure
            else:
                self._park(child, now)  # contained: not counted towards the intensity
                return
        if not self.intensity.allow(now):
            self._escalate(f"{spec.name} restarted more than {self.spec.intensity.max_restarts} times in {self.spec.intensity.period:g} s")
            return
        if not child.window.allow(now):
            self._park(child, now)
            return
        for sibling in self._group(spec.name):
            if sibling is child or sibling.parked:
                continue
            sibling.awaiting_group = True
            if sibling.address is not None:
                self._stop(sibling)
            else:
                sibling.set_state("restarting")
        delay = child.backoff.next_delay(now)
        child.set_state("restarting")
        self.wakeupAfter(timedelta(seconds=delay), payload=("restart", spec.name, child.generation))
        self._changed()

    def _group(self, name: str) -> list[ChildState]:
        """The children restarted together with `name` under this supervisor's strategy."""
        names = list(self.children)
        if self.spec.strategy == "rest_for_one":
            chosen = names[names.index(name):]
        elif self.spec.strategy == "one_for_all":
            chosen = names
        else:
            chosen = [name]
        return [self.children[n] for n in chosen if not self.children[n].removing]

    def _park(self, child: ChildState, now: float) -> None:
        """Contain a child that keeps failing: state "failed", retried rarely, siblings untouched."""
        containment = self._containment(child)
        jitter = self.spec.backoff.jitter
        delay = containment.park_delay * (1.0 + (self.rng.uniform(-jitter, jitter) if jitter else 0.0))
        first = not child.parked
        child.parked = True
        child.set_state("failed")
        child.info = {
            "reason": f"parked: more than {containment.max_restarts} restarts in {containment.period:g} s; last: {child.last_error}",
            "retry_at": time.time() + delay,
        }
        log = self.log.error if first else self.log.warning
        log("child parked as failed; retried rarely", child=child.spec.name, error=child.last_error, retry_in_s=round(delay, 1))
        self._tree_event("child_failed", {"child": self._child_path(child.spec.name), "reason": child.last_error, "retry_in_s": round(delay, 1)})
        self.wakeupAfter(timedelta(seconds=delay), payload=("restart", child.spec.name, child.generation))
        self._changed()

    def _unpark(self, child: ChildState) -> None:
        child.parked = False
        containment = self._containment(child)
        child.window = RestartIntensity(Intensity(containment.max_restarts, containment.period))
        self.log.info("parked child recovered", child=child.spec.name)

    def _restart_group(self, name: str) -> None:
        child = self.children[name]
        group = [child] if child.parked else [child, *(m for m in self._group(name) if m is not child and not m.parked)]
        for member in group:
            member.awaiting_group = False
            if member.address is None:
                self._enqueue(member, restart=True)
            elif member.stopping:
                member.start_on_exit = True
        self._pump()

    def _escalate(self, reason: str) -> None:
        self.escalated = True
        self.log.error("restart intensity exceeded; escalating", reason=reason)
        if self.parent is not None:
            self.send(self.parent, Escalate(self.name, reason))
        # Only the Escalate goes to a parent supervisor, which tells the observers: thespian sends
        # to one address one at a time, and the Escalate is the message that must arrive.
        if not self.parent_is_supervisor:
            self._tree_event("escalated", {"supervisor": "root", "reason": reason})
        for child in self.children.values():
            self._stop(child)
        if self.parent_is_supervisor:
            # The parent ends this process once the Escalate has arrived, so the reason cannot be
            # lost with an exit that overtakes it (seen in thespian under load); failing that,
            # this process ends itself after ESCALATE_GRACE.
            self.wakeupAfter(ESCALATE_GRACE, payload=_ESCALATE_EXIT)
        else:
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
        elif payload == _ESCALATE_EXIT:
            self.send(self.myAddress, ActorExitRequest())
        elif payload == _START_STEP:
            self.step_armed, self.step_budget = False, START_BATCH
            self._pump()
        elif isinstance(payload, tuple) and payload[0] == "restart":
            _, name, generation = payload
            child = self.children.get(name)
            if child is not None and child.generation == generation and child.address is None and not self.escalated:
                self._restart_group(name)
        elif isinstance(payload, tuple) and payload[0] == "stop-deadline":
            _, name, generation = payload
            child = self.children.get(name)
            if child is not None and child.generation == generation and child.stopping and child.address is not None:
                timeout = child.spec.shutdown_timeout
                self.log.error("child ignored its exit request; killing it", child=name, pid=child.pid, timeout_s=timeout)
                self._kill(child)
                self._gone(child)

    def _heartbeat(self) -> None:
        """Ping the children, and hold every child to its deadline against the processes that exist."""
        now = time.monotonic()
        beat = self.heartbeat
        for child in list(self.children.values()):
            if child.address is None:
                continue
            if child.process is not None and not child.process.alive():
                self.log.warning("child process gone without an exit notice", child=child.spec.name, pid=child.process.pid)
                self._gone(child)
                continue
            if child.stopping:
                continue
            if not child.started_ok:
                if now - child.launched_at > child.spec.start_timeout:
                    self._deadline_kill(child, f"no Started within {child.spec.start_timeout:g} s (hung in on_start)", "child_hung")
                continue
            if now - child.last_pong > beat.timeout:
                self._deadline_kill(child, f"missed heartbeat: silent for {now - child.last_pong:.1f} s", "child_hung")
                continue
            self.ping_seq += 1
            self.send(child.address, Ping(self.ping_seq))
            if child.parked and child.state != "failed" and now - child.launched_at >= self.spec.backoff.reset_after:
                self._unpark(child)
        self.wakeupAfter(timedelta(seconds=beat.interval), payload=_HEARTBEAT)

    def _deadline_kill(self, child: ChildState, error: str, event: str) -> None:
        """A child past a deadline: SIGKILL it and count it as exited now (not when a notice comes)."""
        self.log.error("child hung; killing it", child=child.spec.name, pid=child.pid, error=error)
        self._tree_event(event, {"child": self._child_path(child.spec.name), "error": error})
        if child.process is None:
            # not identifiable (not a forked child): ask it to go and restart regardless
            self.send(child.address, ActorExitRequest())
        self._kill(child)
        self._gone(child, error)

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

    def _tree_event(self, kind: str, data: dict[str, Any]) -> None:
        self._pass_on(TreeEvent(kind, data, time.time()))

    def receiveMsg_TreeEvent(self, msg: TreeEvent, sender: Any) -> None:  # noqa: N802
        self._pass_on(msg)

    def _pass_on(self, event: TreeEvent) -> None:
        """Up to the root; the root hands it to its running observers (or holds a few)."""
        if self.parent is not None and self.parent_is_supervisor:
            self.send(self.parent, event)
            return
        observers = [c.address for c in self.children.values() if c.spec.observer and c.state == "running" and c.address is not None]
        if not observers:
            self.undelivered.append(event)
        for address in observers:
            self.send(address, event)

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
            usable = child.address if child.state not in UNUSABLE_STATES else None
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
        if child.queued:  # answered with its address once it is created (see _pump)
            child.waiters.append(sender)
            self._pump()
        else:
            self.send(sender, LookupResult(spec.name, child.address))

    def receiveMsg_StopChild(self, msg: StopChild, sender: Any) -> None:  # noqa: N802
        child = self.children.get(msg.name)
        if child is None:
            self.send(sender, ChildStopped(msg.name))
            return
        child.removing = True
        if child.address is None:
            for waiter in child.waiters:  # asked to start, stopped before it was created
                self.send(waiter, LookupResult(msg.name, None))
            del self.children[msg.name]
            self._changed()
        else:
            self._stop(child)
        self.send(sender, ChildStopped(msg.name))

    # ------------------------------------------------------------ exiting
    def on_stop(self) -> None:
        """Stop every child; whoever ignores the request past its shutdown_timeout is killed.

        Once an actor is exiting thespian delivers it no timers, so the deadlines are kept
        by a watchdog thread (no child is created from here on: thespian refuses to create
        actors while exiting). If this process is still alive EXIT_GRACE s after its last
        child has gone (an exit notice thespian waits for was lost), it ends itself so that
        a stop of the gateway is never held up.
        """
        self.exiting = True
        self.queue.clear()
        for child in self.children.values():
            self._stop(child)
        if not self.manages_processes:
            return
        now = time.monotonic()
        watched = [(c.process, now + c.spec.shutdown_timeout) for c in self.children.values() if c.process is not None]
        threading.Thread(target=_exit_watchdog, args=(watched,), name="supervisor-exit-watchdog", daemon=True).start()


def _exit_watchdog(watched: list[tuple[ProcessIdentity, float]]) -> None:
    """Kill children past their shutdown deadline, then end this process if it lingers."""
    while True:
        now = time.monotonic()
        watched = [(process, deadline) for process, deadline in watched if process.alive()]
        if not watched:
            break
        for process, deadline in watched:
            if now >= deadline:
                process.kill()
        time.sleep(0.02)
    time.sleep(EXIT_GRACE)
    os._exit(0)
