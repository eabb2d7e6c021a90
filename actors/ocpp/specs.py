"""The OCPP family's place in the supervision tree, built from the gateway configuration.

    chargers   a supervisor with no static children: one ChargerActor per connected
               charger is added by the listener (StartChild) and removed on disconnect
    ocpp       the ListenerActor (websocket front-end)

`chargers` comes first so that it is running when the listener accepts connections.
"""

from __future__ import annotations

import ssl
from pathlib import Path
from typing import Any

import actors.ocpp.charger  # noqa: F401 - imported in the launcher so forked charger actors share it (copy-on-write)
import actors.ocpp.listener  # noqa: F401
from actors.ocpp import frames
from actors.ocpp.policy import OcppPolicy
from actors.ocpp.server import MAX_FRAME_BYTES
from supervisor.spec import Backoff, ChildSpec, Heartbeat, Intensity, SupervisorSpec, supervisor_child

LISTENER_ACTOR = "actors.ocpp.listener.ListenerActor"
DB_FILE = "egw.db"  # shared with the harvest family (actors.harvest.specs.DB_FILE)


def ocpp_config(config: dict[str, Any]) -> dict[str, Any]:
    """The listener actor's config from the flat gateway settings.

    Reads: data_dir (db file data_dir/egw.db, or outbox_db), ocpp_host, ocpp_port,
    ocpp_unknown_chargers ("reject" | "accept"), ocpp_register_as (registration status of
    auto-registered chargers, default "Accepted"), ocpp_tls_cert, ocpp_tls_key,
    ocpp_ping_interval, ocpp_max_frame_bytes, ocpp_handshake_timeout,
    ocpp_startup_hold_frames, ocpp_heartbeat_interval,
    ocpp_boot_retry_interval, ocpp_unknown_id_tags ("accept" | "reject"),
    ocpp_call_timeout, ocpp_call_queue_limit, live_metrics_db_interval.
    """
    db_path = str(config.get("outbox_db") or Path(config.get("data_dir", "data")) / DB_FILE)
    listener = {
        "host": config.get("ocpp_host", "0.0.0.0"),
        "port": int(config.get("ocpp_port", 9000)),
        "unknown_chargers": config.get("ocpp_unknown_chargers", "reject"),
        "register_as": config.get("ocpp_register_as", "Accepted"),
        "tls_cert": config.get("ocpp_tls_cert") or None,
        "tls_key": config.get("ocpp_tls_key") or None,
        "ping_interval": float(config.get("ocpp_ping_interval", 30.0)),
        "max_frame_bytes": int(config.get("ocpp_max_frame_bytes", MAX_FRAME_BYTES)),
        "handshake_timeout": float(config.get("ocpp_handshake_timeout", 10.0)),
        "hold_frames": int(config.get("ocpp_startup_hold_frames", 1000)),
    }
    policy = {
        "heartbeat_interval": int(config.get("ocpp_heartbeat_interval", 300)),
        "boot_retry_interval": int(config.get("ocpp_boot_retry_interval", 60)),
        "unknown_id_tags": config.get("ocpp_unknown_id_tags", "accept"),
        "live_metrics_db_interval": float(config.get("live_metrics_db_interval", 10.0)),
        "call_timeout": float(config.get("ocpp_call_timeout", 30.0)),
        "call_queue_limit": int(config.get("ocpp_call_queue_limit", 16)),
    }
    OcppPolicy.from_config(policy)  # fail at start-up, naming the key, rather than in every charger actor
    problems = tls_errors(config)
    if problems:
        raise ValueError("; ".join(f"{key}: {problem}" for key, problem in problems))
    return {"db_path": db_path, "listener": listener, "charger": {"db_path": db_path, "policy": policy}}


def config_problems(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, problem) for `egw config --check`: the TLS settings (see `tls_errors`)."""
    return tls_errors(values)


def tls_errors(config: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, problem) for OCPP TLS settings the listener could not serve wss:// with.

    Only one of the two given would otherwise mean plain ws:// with the charger's
    credentials in clear text, while the installer believes TLS is on; so it is refused,
    as is a file that does not exist or does not load as a PEM certificate and key.
    """
    cert, key = config.get("ocpp_tls_cert") or "", config.get("ocpp_tls_key") or ""
    if not cert and not key:
        return []
    if not key:
        return [("ocpp_tls_key", f"missing: ocpp_tls_cert is set ({cert}) but TLS also needs the private key (ocpp_tls_key / EGW_OCPP_TLS_KEY)")]
    if not cert:
        return [("ocpp_tls_cert", "missing: ocpp_tls_key is set but TLS also needs the certificate (ocpp_tls_cert / EGW_OCPP_TLS_CERT)")]
    problems = [(name, f"no such file: {path}") for name, path in (("ocpp_tls_cert", cert), ("ocpp_tls_key", key)) if not Path(path).is_file()]
    if problems:
        return problems
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(cert, key)
    except (ssl.SSLError, OSError) as exc:
        return [("ocpp_tls_cert", f"{cert} with key {key} does not load as a PEM certificate and its private key: {exc}")]
    return []


def ocpp_child_specs(config: dict[str, Any]) -> list[ChildSpec]:
    """[chargers supervisor, ocpp listener] for the root supervisor.

    Called in the launcher before the actor system forks: the 1.6 schema validators are
    built here once, so a new charger actor (one per connecting charger) starts in
    milliseconds instead of re-reading and compiling the schemas.
    """
    frames.preload()
    listener_config = ocpp_config(config)
    chargers = supervisor_child(
        "chargers",
        SupervisorSpec(
            children=(),
            intensity=Intensity(max_restarts=50, period=60.0),
            backoff=Backoff(min_delay=0.05, max_delay=5.0),
            # one ping per charger actor every 5 s: with 200 chargers a 1 s heartbeat costs the
            # supervisor a quarter of a core; a hung charger actor is still caught within 30 s
            heartbeat=Heartbeat(interval=5.0, timeout=30.0),
        ),
    )
    return [chargers, ChildSpec(name="ocpp", actor=LISTENER_ACTOR, config=listener_config)]
