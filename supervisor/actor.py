"""The base of every gateway actor: supervision protocol, hardening, fail-fast.

Subclass `SupervisedActor`, then:

* override `on_start(config)` to set up (open files, arm timers with `self.wakeupAfter`);
* handle messages with thespian's type dispatch: `def receiveMsg_MyMessage(self, msg, sender)`;
* handle timers with `receiveMsg_WakeupMessage(self, msg, sender)` (`msg.payload` tells which);
* publish state for the actor tree and status queries with `self.publish(state, **info)`;
* log with `self.log.info("what happened", key=value)` (JSON line, actor name included);
* override `on_stop()` to release resources on an orderly stop.

What the base does for you, and why:

* Ping is answered with Pong by the base, so a handler stuck in a blocking call misses
  its heartbeat and the supervisor SIGKILLs and restarts it.
* An unexpected exception in any handler ends the actor (after reporting `ChildFailed`
  to the parent) instead of thespian's retry-once-then-carry-on: the restarted actor
  starts from fresh state, never from whatever half-updated state the failure left.
* In a forked actor process, fatal signals get their default handlers back and the
  process dies with its parent (see `supervisor.hardening`), from the moment the actor
  exists, before its Start arrives.
"""

from __future__ import annotations

import os
from typing import Any

from thespian.actors import ActorExitRequest, ActorTypeDispatcher, ChildActorExited

from supervisor.hardening import harden_process, in_forked_actor
from supervisor.logs import ActorLog, label_process_records
from supervisor.messages import ChildFailed, Ping, Pong, Start, Started, StatusUpdate

MAX_EARLY_MESSAGES = 100


class SupervisedActor(ActorTypeDispatcher):
    """An actor that a `supervisor.supervisor.Supervisor` can start, watch and restart."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.name: str = type(self).__name__
        self.path: str = ""
        self.config: Any = None
        self.parent: Any = None
        self.log = ActorLog(self.name)
        self._failed = False
        self._started = False
        self._status_seq = 0
        self._early: list[tuple[Any, Any]] = []  # messages that overtook Start, replayed after it
        if in_forked_actor():
            # at birth, not at Start: a parent killed before this child's Start arrived
            # (SIGKILL, or hung while creating children) must not leave it running orphaned
            harden_process()

    # ----------------------------------------------------------------- hooks
    def on_start(self, config: Any) -> None:
        """Called once with the child spec's config, before Started is reported."""

    def on_stop(self) -> None:
        """Called on an orderly stop (ActorExitRequest)."""

    # ----------------------------------------------------------- utilities
    def publish(self, state: str | None = None, **info: Any) -> None:
        """Tell the parent supervisor about this actor's state (shown in the actor tree)."""
        if self.parent is not None:
            self._status_seq += 1
            self.send(self.parent, StatusUpdate(self.name, state, info, self._status_seq))

    def stop(self) -> None:
        """End this actor normally: a transient child stopped this way is not restarted."""
        self.publish("stopped")
        self.send(self.myAddress, ActorExitRequest())

    # -------------------------------------------------------------- plumbing
    def receiveMessage(self, msg: Any, sender: Any) -> Any:  # noqa: N802 (thespian API)
        if self._failed:
            return None
        try:
            if isinstance(msg, Ping):
                self.send(sender, Pong(msg.seq, self.name, os.getpid()))
                return None
            if isinstance(msg, Start):
                self._start(msg, sender)
                early, self._early = self._early, []
                for queued, queued_sender in early:
                    self.receiveMessage(queued, queued_sender)
                return None
            if isinstance(msg, ActorExitRequest):
                self.on_stop()
                return None
            if not self._started:
                # Message order between different senders is not guaranteed: a peer that
                # looked up our fresh address may overtake our supervisor's Start.
                if len(self._early) < MAX_EARLY_MESSAGES:
                    self._early.append((msg, sender))
                else:
                    self.log.warning("message before start dropped: too many queued", type=type(msg).__name__)
                return None
            if isinstance(msg, ChildActorExited) and not hasattr(self, "receiveMsg_ChildActorExited"):
                return None
            return super().receiveMessage(msg, sender)
        except Exception as exc:  # noqa: BLE001 - fail fast, the supervisor restarts us
            self._fail(exc)
            return None

    def receiveUnrecognizedMessage(self, msg: Any, sender: Any) -> None:  # noqa: N802 (thespian API)
        self.log.warning("unrecognised message ignored", type=type(msg).__name__)

    def _start(self, msg: Start, sender: Any) -> None:
        self.name, self.config, self.parent = msg.name, msg.config, sender
        self.path = msg.path if msg.path is not None else msg.name
        self.log = ActorLog(self.path or self.name)
        if in_forked_actor():
            label_process_records(self.path or self.name)
        self.on_start(msg.config)
        self._started = True
        self.send(sender, Started(self.name, os.getpid()))

    def _fail(self, exc: BaseException) -> None:
        self._failed = True
        error = f"{type(exc).__name__}: {exc}"
        self.log.exception("handler failed; exiting for a fresh restart", error=error)
        if self.parent is not None:
            self.send(self.parent, ChildFailed(self.name, error))
        try:
            self.on_stop()
        except Exception:  # noqa: BLE001 - already failing; the restart cleans up
            pass
        self.send(self.myAddress, ActorExitRequest())
