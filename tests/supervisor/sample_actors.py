"""Small actors with controllable misbehaviour, used to exercise the supervisor for real."""

from __future__ import annotations

import ctypes
import os
import time
from dataclasses import dataclass
from typing import Any

from supervisor.actor import SupervisedActor


@dataclass(frozen=True)
class Hello:
    """Ask an actor to identify itself: answered with WhoAmI."""


@dataclass(frozen=True)
class WhoAmI:
    name: str
    pid: int
    started: float
    handled: int


@dataclass(frozen=True)
class Raise:
    """Make the actor's handler raise."""


@dataclass(frozen=True)
class Segfault:
    """Make the actor dereference NULL."""


@dataclass(frozen=True)
class Block:
    seconds: float


class Echo(SupervisedActor):
    """Answers Hello with its identity; misbehaves on request."""

    def on_start(self, config: Any) -> None:
        self.started = time.time()
        self.handled = 0
        config = config if isinstance(config, dict) else {}
        self.block_on_stop = float(config.get("block_on_stop", 0))
        if config.get("fail_on_start"):
            raise RuntimeError("configured to fail on start")
        marker = config.get("hang_on_first_start")
        if marker and not os.path.exists(marker):
            with open(marker, "w") as flag:  # the next incarnation starts normally
                flag.write(str(os.getpid()))
            time.sleep(3600)  # a stand-in for an on_start that never returns (a device that never answers)

    def on_stop(self) -> None:
        time.sleep(self.block_on_stop)  # a stand-in for a clean-up that ignores the exit request

    def receiveMsg_Hello(self, msg: Hello, sender: Any) -> None:  # noqa: N802
        self.handled += 1
        self.send(sender, WhoAmI(self.name, os.getpid(), self.started, self.handled))

    def receiveMsg_Raise(self, msg: Raise, sender: Any) -> None:  # noqa: N802
        raise RuntimeError("asked to fail")

    def receiveMsg_Segfault(self, msg: Segfault, sender: Any) -> None:  # noqa: N802
        ctypes.string_at(0)

    def receiveMsg_Block(self, msg: Block, sender: Any) -> None:  # noqa: N802
        time.sleep(msg.seconds)  # a stand-in for a blocking driver call that never returns


@dataclass(frozen=True)
class Burst:
    """Ask a Churner to send `count` StartChild requests to `supervisor` in one go."""

    supervisor: Any
    count: int
    prefix: str = "CP"


class Churner(SupervisedActor):
    """Plays the OCPP listener during a reconnect storm: many StartChild at once, from an actor.

    Sent 20 at a time (thespian's limit of messages in flight), the next 20 as soon as the
    supervisor has answered those, so the supervisor always has a backlog while the
    churner's own outgoing queue stays short enough for its heartbeat.
    """

    def receiveMsg_Burst(self, msg: Burst, sender: Any) -> None:  # noqa: N802
        self.pending = [(msg.supervisor, f"{msg.prefix}{i}") for i in range(msg.count)]
        self.outstanding = 0
        self._send_some()

    def receiveMsg_LookupResult(self, msg: Any, sender: Any) -> None:  # noqa: N802
        self.outstanding -= 1
        if self.outstanding <= 0:
            self._send_some()

    def _send_some(self) -> None:
        from supervisor.messages import StartChild
        from supervisor.spec import ChildSpec

        chunk, self.pending = self.pending[:20], self.pending[20:]
        self.outstanding = len(chunk)
        for supervisor, name in chunk:
            self.send(supervisor, StartChild(ChildSpec(name, "tests.supervisor.sample_actors.Echo", restart="temporary")))
