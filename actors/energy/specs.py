"""The energy family's place in the supervision tree: one `energy` actor when loadpoints are configured.

Without `[[loadpoints]]` nothing runs (a site without chargers to steer spends no
process on it); `GET /api/loadpoints` then answers an empty list.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import actors.energy.actor  # noqa: F401 - imported in the launcher so the forked actor shares it
from actors.energy.config import control_settings, parse_loadpoints, settings_problems
from storage.db import database_path
from supervisor.spec import ChildSpec

ENERGY_ACTOR = "actors.energy.actor.EnergyActor"


def config_problems(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, problem) for `egw config --check` and the tree builder."""
    _, problems = parse_loadpoints(values.get("loadpoints") or [], values.get("configured_devices", values.get("devices")))
    return [("loadpoints", problem) for problem in problems] + settings_problems(values)


def energy_children(values: dict[str, Any]) -> list[ChildSpec]:
    """[energy] for the root supervisor, or nothing without loadpoints."""
    loadpoints, problems = parse_loadpoints(values.get("loadpoints") or [], values.get("devices"))
    problems = [p for p in problems] + [f"{k}: {p}" for k, p in settings_problems(values)]
    if problems:
        raise ValueError("; ".join(problems))
    if not loadpoints:
        return []
    config = {"db_path": str(database_path(values)), "loadpoints": [asdict(lp) for lp in loadpoints],
              "settings": asdict(control_settings(values))}
    return [ChildSpec(name="energy", actor=ENERGY_ACTOR, config=config, restart="permanent")]
