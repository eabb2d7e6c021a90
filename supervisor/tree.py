"""The gateway's supervision tree, built from its configuration.

Reading `root_spec()` top to bottom tells you what runs and in which order:

    root (one_for_one)
    ├── harvest        durable outbox writer
    ├── transports     one upload actor per endpoint
    ├── devices        one actor per inverter / meter
    ├── chargers       one actor per connected charger (dynamic)
    ├── ocpp           websocket front-end for chargers
    ├── energy         solar-surplus charging: limits to chargers (only with loadpoints)
    ├── api            REST front-end
    └── ble            BLE provisioning front-end

Each family contributes its child specs through one function in its own package, so
this module stays a table of contents rather than a place where logic accumulates.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from typing import Any

from supervisor.config import ConfigError, GatewayConfig, data_dir_problem
from supervisor.spec import Backoff, ChildSpec, Containment, Heartbeat, Intensity, SupervisorSpec, spec_from_mapping, supervisor_child

# (module, function): function(config_values: dict) -> list[ChildSpec], in start order.
PARTS: tuple[tuple[str, str], ...] = (
    ("actors.harvest.specs", "harvest_child_specs"),  # harvest, transports
    ("actors.device.specs", "devices_part"),  # devices
    ("actors.ocpp.specs", "ocpp_child_specs"),  # chargers, ocpp
    ("actors.energy.specs", "energy_children"),  # energy (nothing without loadpoints)
    ("actors.api.actor", "api_children"),  # api
    ("actors.ble.actor", "ble_children"),  # ble (nothing when ble_enabled is false)
)


def _part(module: str, function: str) -> Callable[[dict[str, Any]], list[ChildSpec]]:
    return getattr(importlib.import_module(module), function)


def root_spec(config: GatewayConfig, parts: tuple[tuple[str, str], ...] | None = None) -> SupervisorSpec:
    """The root supervisor's spec: every part of the gateway, then any extra children."""
    values = dict(config.values)
    # devices and upload endpoints changed over the REST API outlive restarts
    from storage.registry import effective_devices, effective_uploads

    values["configured_devices"] = list(values.get("devices") or [])  # the file's own, to tell its errors from stored ones
    values["devices"] = effective_devices(values)
    values["configured_uploads"] = list(values.get("uploads") or [])  # the file's own, to tell its errors from stored ones
    values["uploads"] = effective_uploads(values)
    children: list[ChildSpec] = []
    for module, function in PARTS if parts is None else parts:
        children.extend(_part(module, function)(values))
    for extra in values["extra_children"]:
        children.append(extra_child(extra))
    return SupervisorSpec(
        strategy="one_for_one",
        children=tuple(children),
        intensity=Intensity(values["restart_max"], values["restart_period"]),
        containment=root_containment(values["restart_max"], values["restart_period"]),
        backoff=Backoff(),
        # nested supervisors whose spec names no heartbeat inherit this one, at every level
        heartbeat=Heartbeat(values["heartbeat_interval"], values["heartbeat_timeout"]),
    )


def root_containment(restart_max: int, restart_period: float) -> Containment:
    """One actor may use at most half the root's restart budget (rounded up) before it is parked.

    With the default restart_max of 5 that is 3 restarts in restart_period: a single part
    that cannot work is parked as failed instead of exiting the gateway; only failures
    spread over several parts use up the budget and restart the gateway.
    """
    return Containment(max_restarts=max(1, (restart_max + 1) // 2), period=restart_period)


def extra_child(extra: dict[str, Any]) -> ChildSpec:
    """An `extra_children` entry as a ChildSpec; `kind = "supervisor"` makes its config a subtree.

    A configured supervisor (its config a table as read by `spec_from_mapping`) lets a
    plugin or a site run its own group of actors with its own strategy and limits.
    """
    restart = extra.get("restart", "permanent")
    if extra.get("kind") == "supervisor":
        spec = spec_from_mapping(extra.get("config") or {}, f"extra_children.{extra['name']}")
        return supervisor_child(extra["name"], spec, restart=restart)
    return ChildSpec(name=extra["name"], actor=extra["actor"], config=extra.get("config"), restart=restart)


def check_config(config: GatewayConfig, *, data_dir: bool = True) -> None:
    """Run the validators of the parts that read the settings; raise ConfigError with every error.

    The parts (device actors, upload transports, the OCPP listener) check their own
    settings when the tree is built, but by then an error is a traceback and exit 1;
    here the same validators run before anything starts and each error is prefixed with
    the file or variable the setting came from. `data_dir=False` skips the data dir (a
    process that only reads the configuration).
    """
    values, sources = config.values, config.sources
    errors = []
    for module, _ in PARTS:  # each part checks its own settings (`config_problems`), found by name like its specs
        try:
            problems = getattr(importlib.import_module(module), "config_problems", None)
        except ImportError:  # a build without that family
            continue
        for key, problem in problems(dict(values)) if problems else []:
            errors.append(_located(sources, key, problem))
    if data_dir:
        problem = data_dir_problem(values["data_dir"], create=False)
        if problem:
            errors.append(f"{sources['data_dir']}: data_dir: {problem}")
    if errors:
        raise ConfigError(*errors)


def _located(sources: Mapping[str, str], key: str, problem: str) -> str:
    """A part's problem prefixed with where its setting came from: a list setting's problem
    already names its entry; a setting left at its default (one of a pair) takes its partner's source."""
    source = sources.get(key, "configuration")
    if source == "default":
        partner = next((k for k in _PAIRED.get(key, ()) if sources.get(k, "default") != "default"), None)
        source = sources[partner] if partner else source
    return f"{source}: {problem}" if key in ("devices", "uploads", "loadpoints") else f"{source}: {key}: {problem}"


#: Settings that are only meaningful together: an error about a missing one names where the other was set.
_PAIRED = {"ocpp_tls_cert": ("ocpp_tls_key",), "ocpp_tls_key": ("ocpp_tls_cert",)}
