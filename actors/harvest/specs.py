"""The harvest family's place in the supervision tree, built from the gateway configuration."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from actors.harvest.uplink import TransportConfig
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
