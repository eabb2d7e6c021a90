"""Child specifications and supervisor policies: plain data, like OTP's child specs.

A supervisor is configured entirely by a `SupervisorSpec`; reading one tells you what
runs, in which order, how it restarts and when the supervisor gives up. Specs are
frozen dataclasses of plain values, so they pickle across actor processes and print
readably in logs and in the actor tree.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Restart = Literal["permanent", "transient", "temporary"]
Strategy = Literal["one_for_one", "rest_for_one"]
Kind = Literal["worker", "supervisor"]


@dataclass(frozen=True)
class ChildSpec:
    """One child of a supervisor.

    name      unique among its siblings; also the last segment of its path ("devices/inv1")
    actor     the actor class as a dotted path, "package.module.ClassName"
    config    handed to the child's `on_start(config)`; must pickle
    restart   permanent: always restarted; transient: restarted only after a failure
              (not after it stopped itself); temporary: never restarted
    kind      "supervisor" children get the subtree view and longer shutdown time
    shutdown_timeout  seconds an orderly stop may take before the child is killed
    """

    name: str
    actor: str
    config: Any = None
    restart: Restart = "permanent"
    kind: Kind = "worker"
    shutdown_timeout: float = 5.0


@dataclass(frozen=True)
class Intensity:
    """At most `max_restarts` restarts within `period` seconds, else escalate (OTP's MaxR/MaxT)."""

    max_restarts: int = 5
    period: float = 60.0


@dataclass(frozen=True)
class Backoff:
    """Delay before restart number n (n = 0, 1, ...): min(max, min * factor**n), +/- jitter.

    After a child has run `reset_after` seconds without failing, n goes back to 0.
    """

    min_delay: float = 0.05
    max_delay: float = 30.0
    factor: float = 2.0
    jitter: float = 0.1
    reset_after: float = 60.0


@dataclass(frozen=True)
class Heartbeat:
    """Ping each running child every `interval` s; one silent for `timeout` s is killed."""

    interval: float = 1.0
    timeout: float = 5.0


@dataclass(frozen=True)
class SupervisorSpec:
    strategy: Strategy = "one_for_one"
    children: tuple[ChildSpec, ...] = ()
    intensity: Intensity = field(default_factory=Intensity)
    backoff: Backoff = field(default_factory=Backoff)
    heartbeat: Heartbeat = field(default_factory=Heartbeat)


SUPERVISOR_ACTOR = "supervisor.supervisor.Supervisor"


def supervisor_child(name: str, spec: SupervisorSpec, restart: Restart = "permanent") -> ChildSpec:
    """A ChildSpec for a nested supervisor (its config is its own SupervisorSpec)."""
    return ChildSpec(name=name, actor=SUPERVISOR_ACTOR, config=spec, restart=restart, kind="supervisor", shutdown_timeout=15.0)
