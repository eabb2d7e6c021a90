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
Strategy = Literal["one_for_one", "rest_for_one", "one_for_all"]
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
    shutdown_timeout  seconds an orderly stop may take before the child is SIGKILLed
    start_timeout     seconds from creation to `Started` (on_start done) before the child
                      is SIGKILLed as hung in on_start and restarted like any failure
    containment       this child's own restart limit; None: the supervisor's `containment`
    observer          a child of the root that receives every `TreeEvent` of the tree (the
                      REST API's live feed turns them into its `gateway` topic)
    """

    name: str
    actor: str
    config: Any = None
    restart: Restart = "permanent"
    kind: Kind = "worker"
    shutdown_timeout: float = 5.0
    start_timeout: float = 30.0
    containment: Containment | None = None
    observer: bool = False


@dataclass(frozen=True)
class Intensity:
    """At most `max_restarts` restarts within `period` seconds, else escalate (OTP's MaxR/MaxT)."""

    max_restarts: int = 5
    period: float = 60.0


@dataclass(frozen=True)
class Containment:
    """Per child: more than `max_restarts` failures within `period` s and the child is parked.

    A parked child shows the state "failed" and is retried only every `park_delay` s
    (+/- the backoff's jitter); its failures no longer count towards the supervisor's
    `Intensity`, so one child that cannot work never restarts its siblings or the gateway.
    A parked child that then runs `Backoff.reset_after` s without failing is healthy again.
    Keep `max_restarts` below the supervisor's `Intensity.max_restarts`: the intensity is
    checked first, and escalation is meant for failures of several children at once.
    """

    max_restarts: int = 3
    period: float = 60.0
    park_delay: float = 300.0


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
    """Ping each running child every `interval` s; one silent for `timeout` s is killed.

    The same tick reconciles the children against the processes that exist, so a child
    whose exit notification never arrived is noticed within one `interval`.
    """

    interval: float = 1.0
    timeout: float = 5.0


@dataclass(frozen=True)
class SupervisorSpec:
    """How one supervisor runs its children.

    strategy     one_for_one: restart the failed child alone; rest_for_one: it and the
                 children after it (in `children` order); one_for_all: every child
    intensity    more restarts than this in its window: stop everything and escalate
    containment  per-child limit after which that child alone is parked as "failed"
    heartbeat    None inherits the parent supervisor's heartbeat (at the root:
                 `Heartbeat()`), so the gateway's configured heartbeat reaches every level
    """

    strategy: Strategy = "one_for_one"
    children: tuple[ChildSpec, ...] = ()
    intensity: Intensity = field(default_factory=Intensity)
    backoff: Backoff = field(default_factory=Backoff)
    heartbeat: Heartbeat | None = None
    containment: Containment = field(default_factory=Containment)


SUPERVISOR_ACTOR = "supervisor.supervisor.Supervisor"


def supervisor_child(name: str, spec: SupervisorSpec, restart: Restart = "permanent") -> ChildSpec:
    """A ChildSpec for a nested supervisor (its config is its own SupervisorSpec)."""
    return ChildSpec(name=name, actor=SUPERVISOR_ACTOR, config=spec, restart=restart, kind="supervisor", shutdown_timeout=15.0)


def _section(cls: type, raw: Any, where: str) -> Any:
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise ValueError(f"{where}: expected a table, got {type(raw).__name__}")
    try:
        return cls(**raw)
    except TypeError as exc:
        raise ValueError(f"{where}: {exc}") from None


def spec_from_mapping(raw: dict[str, Any], where: str = "supervisor") -> SupervisorSpec:
    """A SupervisorSpec from plain tables (TOML/JSON), for supervisors added by configuration.

    Keys mirror the dataclasses: strategy, children (each: name, actor, config, restart,
    kind, shutdown_timeout, start_timeout, containment), intensity, backoff, heartbeat,
    containment. A child of kind "supervisor" has its own such table as config.
    """
    children = []
    for index, child in enumerate(raw.get("children") or []):
        child = dict(child)
        at = f"{where}.children[{index}]"
        child["containment"] = _section(Containment, child.get("containment"), f"{at}.containment")
        if child.get("kind") == "supervisor":
            child.setdefault("actor", SUPERVISOR_ACTOR)
            child["config"] = spec_from_mapping(child.get("config") or {}, at)
        try:
            children.append(ChildSpec(**child))
        except TypeError as exc:
            raise ValueError(f"{at}: {exc}") from None
    fields = {"strategy": raw.get("strategy", "one_for_one"), "children": tuple(children)}
    if fields["strategy"] not in ("one_for_one", "rest_for_one", "one_for_all"):
        raise ValueError(f"{where}.strategy: unknown strategy {fields['strategy']!r}")
    for key, cls in (("intensity", Intensity), ("backoff", Backoff), ("heartbeat", Heartbeat), ("containment", Containment)):
        if key in raw:
            fields[key] = _section(cls, raw[key], f"{where}.{key}")
    unknown = set(raw) - {"strategy", "children", "intensity", "backoff", "heartbeat", "containment"}
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}")
    return SupervisorSpec(**fields)
