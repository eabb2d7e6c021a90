"""Prometheus text exposition (format 0.0.4) of the gateway's state.

Rendered on each scrape from what the handlers already have: the actor tree (restarts
per actor), the devices' published counters (polls, errors, latency), the outbox and
transport state (sizes, uploads), the chargers' OCPP message counts, and the API's own
request counters. Nothing is sampled in the background, so a scrape costs only the
reads it makes and metrics never drift from what `/api/*` shows.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator
from typing import Any

Sample = tuple[dict[str, str], float]


def escape_label(value: str) -> str:
    return value.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')


def _format_value(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if float(value).is_integer() and abs(value) < 1e15:
        return str(int(value))
    return repr(float(value))


def family(name: str, kind: str, help_text: str, samples: Iterable[Sample]) -> list[str]:
    """One metric family: HELP, TYPE and its samples, label values escaped."""
    lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]
    for labels, value in samples:
        label_text = ",".join(f'{key}="{escape_label(str(val))}"' for key, val in labels.items())
        lines.append(f"{name}{{{label_text}}} {_format_value(value)}" if label_text else f"{name} {_format_value(value)}")
    return lines


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value)


def walk_tree(records: Iterable[dict[str, Any]], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, record) for every actor in a tree, depth first."""
    for record in records:
        path = record.get("path") or (f"{prefix}/{record.get('name')}" if prefix else str(record.get("name")))
        yield path, record
        yield from walk_tree(record.get("children") or (), path)


def render(*, tree: list[dict[str, Any]], devices: list[dict[str, Any]], outbox: dict[str, Any],
           chargers: list[dict[str, Any]], requests: Counter, uptime_s: float) -> str:
    """The whole exposition as one text body."""
    lines: list[str] = []
    lines += family("egw_uptime_seconds", "gauge", "Seconds since the gateway started.", [({}, uptime_s)])
    lines += family("egw_actor_restarts_total", "counter", "Restarts of each actor by its supervisor.",
                    [({"actor": path}, float(rec.get("restarts") or 0)) for path, rec in walk_tree(tree)])
    lines += family("egw_actor_up", "gauge", "1 when the actor is running, else 0.",
                    [({"actor": path}, 1.0 if rec.get("state") not in ("restarting", "stopped", "failed", "starting") else 0.0) for path, rec in walk_tree(tree)])
    per_device = [
        ("egw_device_polls_total", "counter", "Polls of each device.", "polls"),
        ("egw_device_poll_errors_total", "counter", "Failed polls of each device.", "errors"),
        ("egw_device_gaps_total", "counter", "Gap records written for each device.", "gaps"),
    ]
    for name, kind, help_text, key in per_device:
        lines += family(name, kind, help_text, [({"device": d["id"]}, v) for d in devices if (v := _number(d.get(key))) is not None])
    lines += family("egw_device_poll_latency_seconds", "gauge", "Duration of each device's last poll.",
                    [({"device": d["id"]}, v / 1000.0) for d in devices if (v := _number(d.get("poll_latency_ms"))) is not None])
    lines += family("egw_device_online", "gauge", "1 when the device answered its last poll.", [({"device": d["id"]}, 1.0 if d.get("online") else 0.0) for d in devices])
    outbox_gauges = [
        ("egw_outbox_pending_readings", "Readings committed but not yet acknowledged by a receiver.", "pending_readings"),
        ("egw_outbox_bytes", "Bytes the outbox occupies.", "bytes"),
        ("egw_outbox_budget_used_ratio", "Fraction of the outbox byte budget in use.", "budget_used"),
        ("egw_outbox_gaps", "Gap records in the outbox.", "gaps"),
    ]
    for name, help_text, key in outbox_gauges:
        value = _number(outbox.get(key))
        lines += family(name, "gauge", help_text, [({}, value)] if value is not None else [])
    transports = outbox.get("transports") or []
    per_transport = [
        ("egw_transport_uploaded_readings_total", "counter", "Readings acknowledged by each transport's receiver.", "uploaded_readings"),
        ("egw_transport_uploaded_batches_total", "counter", "Batches acknowledged by each transport's receiver.", "uploaded_batches"),
        ("egw_transport_upload_errors_total", "counter", "Failed upload attempts per transport.", "upload_errors"),
        ("egw_transport_dead_letters", "gauge", "Batches parked after a permanent rejection.", "dead_letters"),
        ("egw_transport_backoff_seconds", "gauge", "Current retry backoff per transport.", "backoff_s"),
    ]
    for name, kind, help_text, key in per_transport:
        lines += family(name, kind, help_text, [({"transport": t["name"]}, v) for t in transports if (v := _number(t.get(key))) is not None])
    lines += family("egw_ocpp_messages_total", "counter", "OCPP messages handled per charger and action.",
                    [({"charger": c["id"], "action": str(action)}, v) for c in chargers for action, count in sorted((c.get("messages") or {}).items()) if (v := _number(count)) is not None])
    lines += family("egw_charger_connected", "gauge", "1 while the charger's websocket is connected.", [({"charger": c["id"]}, 1.0 if c.get("connected") else 0.0) for c in chargers])
    lines += family("egw_api_requests_total", "counter", "HTTP requests answered by the API, by route and status.",
                    [({"method": m, "route": r, "status": str(s)}, float(n)) for (m, r, s), n in sorted(requests.items())])
    return "\n".join(lines) + "\n"
