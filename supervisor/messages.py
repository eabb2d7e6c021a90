"""Messages of the supervision protocol: small immutable dataclasses.

Every supervised actor speaks this protocol with its parent supervisor:

    parent -> child   Start(name, config)      first message; the child replies Started
    parent -> child   Ping(seq)                heartbeat; the child replies Pong at once
    child  -> parent  ChildFailed(name, error) an unexpected exception; the child then exits
    child  -> parent  StatusUpdate(name, ...)  published state (shown as the actor tree)
    sup    -> parent  SubtreeReport(...)       a supervisor's children, for the tree view
    sup    -> parent  Escalate(name, reason)   too many restarts: the parent must act
    sup    -> parent  TreeEvent(kind, data)    a restart, exit, hang, parking or escalation;
                                               passed up to the root, which hands it to every
                                               child whose spec says `observer=True`
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from supervisor.brief import BriefRepr


@dataclass(frozen=True, repr=False)
class Start(BriefRepr):
    """Sent by a supervisor to a freshly created child: its name and configuration."""

    name: str
    config: Any = None
    path: str | None = None  # "devices/inv1"; "" for the root supervisor; None: just the name


@dataclass(frozen=True)
class Started:
    name: str
    pid: int


@dataclass(frozen=True)
class Ping:
    seq: int


@dataclass(frozen=True)
class Pong:
    seq: int
    name: str
    pid: int


@dataclass(frozen=True)
class ChildFailed:
    """A child's handler raised: the child reports why, then exits to be restarted fresh."""

    name: str
    error: str


@dataclass(frozen=True, repr=False)
class StatusUpdate(BriefRepr):
    """State an actor publishes about itself (e.g. `unavailable`, a device's last values).

    `state` overrides the record's state when given; `info` is free-form JSON-able data.
    """

    name: str
    state: str | None = None
    info: dict = field(default_factory=dict)
    seq: int = 0  # increases per update from one actor incarnation; older ones are ignored


@dataclass(frozen=True, repr=False)
class SubtreeReport(BriefRepr):
    """A supervisor's current view of its children, pushed to its parent on every change.

    `seq` increases with every report: thespian does not guarantee the order of messages
    between two actors, and an older view must never overwrite a newer one.
    """

    name: str
    records: tuple
    seq: int = 0


@dataclass(frozen=True)
class Escalate:
    """Restart intensity exceeded: the supervisor gives up and hands the problem upwards."""

    name: str
    reason: str


@dataclass(frozen=True)
class GetTree:
    """Ask a supervisor for its subtree (the root's answer is the whole actor tree)."""


@dataclass(frozen=True, repr=False)
class Tree(BriefRepr):
    records: tuple


@dataclass(frozen=True)
class Lookup:
    """Ask for the current address of the actor at `path` (e.g. "harvest", "devices/inv1").

    Addresses change on every restart, so actors look each other up instead of caching
    addresses across restarts. Supervisors answer from their subtree or forward upwards.
    """

    path: str
    requester: Any = None
    rest: str | None = None  # the part of `path` still to resolve, while forwarded downwards


@dataclass(frozen=True)
class LookupResult:
    path: str
    address: Any


@dataclass(frozen=True, repr=False)
class StartChild(BriefRepr):
    """Add a dynamic child (e.g. a charger on connect) to a supervisor at run time."""

    spec: Any


@dataclass(frozen=True)
class StopChild:
    """Stop and remove a child; it is not restarted."""

    name: str


@dataclass(frozen=True)
class ChildStopped:
    name: str


@dataclass(frozen=True)
class TreeEvent:
    """Something the supervision tree did (a restart, an exit, a hang, a parking, an escalation).

    Supervisors pass these up to the root, and the root sends each to its running observer
    children (`ChildSpec.observer`): the supervisor needs to know no more of who watches
    the tree than that flag. `time` is the wall-clock time the supervisor saw it.
    """

    kind: str
    data: dict[str, Any] = field(default_factory=dict)
    time: float | None = None
