"""The harvest family's place in the supervision tree, built from the gateway configuration."""

from __future__ import annotations

import dataclasses
import difflib
from pathlib import Path
from typing import Any

from actors.harvest.mqtt_settings import gateway_topic_problem, mqtt_url_problem
from actors.harvest.uplink import TransportConfig, url_problem
from supervisor.redaction import redact_url
from supervisor.spec import ChildSpec, SupervisorSpec, supervisor_child

HARVEST_ACTOR = "actors.harvest.actor.HarvestActor"
TRANSPORT_ACTOR = "actors.harvest.transport.TransportActor"
DB_FILE = "egw.db"


def harvest_child_specs(config: dict[str, Any]) -> list[ChildSpec]:
    """`harvest` (the outbox writer) and `transports` (a supervisor with one actor per upload endpoint).

    Reads the gateway settings data_dir, uploads ([{name, url, ...}]), upload_batch_max,
    upload_batch_max_kb, outbox_budget_mb, outbox_min_free_pct, harvest_commit_window_s and, optionally,
    gateway_id (default: the serial derived from the device key). Upload entries are
    validated when the configuration is read (a bad one in the file is an error naming it);
    one made unusable by settings stored over REST still gets its child, which fails alone.
    """
    data_dir = Path(config.get("data_dir", "data"))
    db_path = str(Path(config.get("outbox_db") or data_dir / DB_FILE))
    harvest = ChildSpec(
        name="harvest",
        actor=HARVEST_ACTOR,
        config={
            "db_path": db_path,
            "budget_bytes": int(config.get("outbox_budget_mb", 512)) * 1024 * 1024,
            "min_free_fraction": float(config.get("outbox_min_free_pct", 5.0)) / 100.0,
            "commit_window_s": float(config.get("harvest_commit_window_s", 1.0)),
            "transports": [str(entry.get("name")) for entry in config.get("uploads", [])],
        },
    )
    transports = []
    defaults = {"max_count": int(config.get("upload_batch_max", 1000)), "max_bytes": int(config.get("upload_batch_max_kb", 512)) * 1024}
    # `uploads` holds the settings stored over REST applied; `configured_uploads` the file's own
    configured = {e.get("name"): e for e in config.get("configured_uploads", config.get("uploads", []))}
    for entry in config.get("uploads", []):
        settings = {**defaults, **entry}
        try:
            name = TransportConfig.from_dict(settings).name
        except ValueError:
            # Wrong in the configuration file itself: a configuration error naming it. Made wrong
            # by settings stored over REST: that transport alone fails to start and is parked as
            # failed (named in /api/health) while the gateway runs on.
            file_entry = configured.get(entry.get("name"))
            if file_entry is None or file_entry == entry:
                raise
            TransportConfig.from_dict({**defaults, **file_entry})
            name = str(entry["name"])
        transports.append(
            ChildSpec(
                name=name,
                actor=TRANSPORT_ACTOR,
                config={"db_path": db_path, "data_dir": str(data_dir), "gateway_id": config.get("gateway_id"), "transport": settings},
            )
        )
    return [harvest, supervisor_child("transports", SupervisorSpec(children=tuple(transports)))]


def config_problems(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, problem) for every upload endpoint: names, key names, value types, the URL, then `TransportConfig.from_dict`."""
    kinds = {field.name: {"str": (str,), "int": (int,), "float": (int, float)}[str(field.type)] for field in dataclasses.fields(TransportConfig)}
    errors: list[tuple[str, str]] = []
    names: set[str] = set()
    for index, entry in enumerate(values["uploads"]):
        where = f"uploads[{index}]"
        problems = []
        for key in sorted(set(entry) - set(kinds)):
            close = difflib.get_close_matches(key, list(kinds), n=1, cutoff=0.6)
            problems.append(f"{where}.{key}: unknown setting ({f'did you mean {close[0]}?' if close else 'known: ' + ', '.join(kinds)})")
        for key in ("name", "url"):
            if key not in entry:
                problems.append(f"{where}.{key}: required")
        for key, value in entry.items():
            kind = kinds.get(key)
            if kind and (isinstance(value, bool) or not isinstance(value, kind)):
                expected = {str: "a string", int: "an integer"}.get(kind[0], "a number") if len(kind) == 1 else "a number"
                problems.append(f"{where}.{key}: expected {expected}, got {value!r}")
        name = entry.get("name")
        if isinstance(name, str):
            if not name:
                problems.append(f"{where}.name: must not be empty")
            elif name in names:
                problems.append(f"{where}.name: duplicate {name!r}")
            names.add(name)
        if isinstance(entry.get("url"), str):
            check = mqtt_url_problem if entry.get("kind") == "mqtt" else url_problem
            problem = check(entry["url"], shown=repr(redact_url(entry["url"])))  # quoted without its password or query values
            if problem:
                problems.append(f"{where}.url: {problem}")
        if not problems:  # the transport's own checks, on the settings the tree hands it
            settings = {"max_count": values["upload_batch_max"], "max_bytes": values["upload_batch_max_kb"] * 1024, **entry}
            try:
                TransportConfig.from_dict(settings)
            except (ValueError, TypeError) as exc:
                problems.append(f"{where}: {exc}")
            gateway_id = values.get("gateway_id")
            if not problems and entry.get("kind") == "mqtt" and isinstance(gateway_id, str) and gateway_id and gateway_topic_problem(gateway_id):
                problems.append(f"{where}: gateway_id: {gateway_topic_problem(gateway_id)}")
        errors += [("uploads", problem) for problem in problems]
    return errors
