"""The supervision tree as the API shows it: cleaned records, lookups, device views.

The tree comes from the root supervisor (`GetTree`) as plain records that carry what
each actor published (`publish(state, **info)`); these functions turn them into the
JSON the REST API documents. Pure functions over data: no actors, no I/O but /proc.
"""

from __future__ import annotations

import os
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from actors.api import stores
from actors.api.validation import parse_datetime

OK_STATES = frozenset({"running", "online", "ok", "idle", "connected", "serving"})
"""States an actor can be in without the gateway counting as degraded."""

RESTARTING_STATES = frozenset({"starting", "restarting", "stopping", "hung"})
"""States in which an actor will be back soon: a read of it is a 503 with Retry-After."""


def _record_path(prefix: str, record: Mapping[str, Any]) -> str:
    return f"{prefix}/{record.get('name')}" if prefix else str(record.get("name"))


def clean_tree(records: Any, prefix: str = "") -> list[dict[str, Any]]:
    """The tree as JSON-able records with their paths; addresses and other objects left out."""
    cleaned = []
    for record in records or ():
        if not isinstance(record, Mapping):
            continue
        path = _record_path(prefix, record)
        entry = {
            "name": str(record.get("name")),
            "path": path,
            "kind": str(record.get("kind") or "worker"),
            "actor": record.get("actor"),
            "pid": record.get("pid"),
            "state": str(record.get("state") or "unknown"),
            "restarts": int(record.get("restarts") or 0),
            "last_error": record.get("last_error"),
            "since": record.get("since"),
            "info": _jsonable(record.get("info") or {}),
        }
        children = record.get("children")
        if children or entry["kind"] == "supervisor":
            entry["children"] = clean_tree(children, path)
        cleaned.append(entry)
    return cleaned


def _jsonable(value: Any, depth: int = 0) -> Any:
    if depth > 8:
        return str(value)
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v, depth + 1) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v, depth + 1) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return str(value)


def find(records: list[dict[str, Any]], path: str) -> dict[str, Any] | None:
    """The record at `path` ("devices/inv1") in a cleaned tree."""
    for record in records:
        if record["path"] == path:
            return record
        if path.startswith(record["path"] + "/"):
            return find(record.get("children", []), path)
    return None


def walk(records: list[dict[str, Any]]) -> Iterator[dict[str, Any]]:
    for record in records:
        yield record
        yield from walk(record.get("children", []))


def device_records(records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Device id -> its actor's record. An actor polling several devices behind one endpoint
    (named "a+b") publishes each device's state under info["devices"]; those are split out."""
    supervisor = find(records, "devices")
    found: dict[str, dict[str, Any]] = {}
    for record in (supervisor or {}).get("children", []):
        shared = record["info"].get("devices") if isinstance(record["info"], dict) else None
        if isinstance(shared, dict) and shared:
            for device_id, info in shared.items():
                info = info if isinstance(info, dict) else {}
                state = record["state"] if record["state"] in RESTARTING_STATES else str(info.get("state") or record["state"])
                found[str(device_id)] = {**record, "state": state, "info": info, "actor_path": record["path"]}
        else:
            found[record["name"]] = {**record, "actor_path": record["path"]}
    return found


def _epoch_or_iso(value: Any) -> str | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return stores.iso(value)
    if isinstance(value, str):
        try:
            parse_datetime(value)
            return value
        except ValueError:
            return None
    return None


def count(value: Any) -> int | None:
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0 else None


def device_view(device_id: str, record: Mapping[str, Any] | None, configured: Mapping[str, Any] | None) -> dict[str, Any]:
    """One device as the API shows it: configuration plus what its actor last published."""
    configured = configured or {}
    info = (record or {}).get("info") or {}
    state = str(info.get("state") or (record or {}).get("state") or "not running")
    online = info.get("online")
    if not isinstance(online, bool):
        online = state in ("online", "degraded")  # degraded: answering, some registers refused
    connection = info.get("connection") if isinstance(info.get("connection"), Mapping) else {
        k: configured[k] for k in ("host", "port", "unit_id", "serial_port", "baudrate") if k in configured
    }
    values = info.get("values") if isinstance(info.get("values"), Mapping) else {}
    latency = info.get("poll_latency_ms")
    return {
        "id": device_id,
        "profile": info.get("profile") or configured.get("profile") or ("sunspec" if configured.get("sunspec") else None),
        "connection": connection,
        "state": state,
        "online": online,
        "serial": info.get("serial"),
        "model": None if info.get("model") is None else str(info.get("model")),
        "last_poll": _epoch_or_iso(info.get("last_poll")),
        "values": {str(k): v if isinstance(v, (int, float, str, bool)) or v is None else str(v) for k, v in values.items()},
        "polls": count(info.get("polls")),
        "errors": count(info.get("errors", info.get("poll_errors"))),
        "gaps": count(info.get("gaps")),
        "poll_latency_ms": float(latency) if isinstance(latency, (int, float)) and not isinstance(latency, bool) else None,
        "unacknowledged_batches": count(info.get("unacknowledged")),
        "batches_given_up": count(info.get("batches_given_up")),
        "last_error": (record or {}).get("last_error") or info.get("last_error"),
        "restarts": (record or {}).get("restarts"),
    }


def process_age(pid: int) -> float | None:
    """Seconds since process `pid` started (from /proc), or None where that is unknown."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        started_ticks = int(fields[19])
        uptime = float(Path("/proc/uptime").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    return max(0.0, uptime - started_ticks / os.sysconf("SC_CLK_TCK"))
