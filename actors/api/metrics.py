"""Prometheus text exposition (format 0.0.4) of the gateway's state.

Rendered on each scrape from what the handlers already have: the actor tree (restarts
per actor), the devices' published counters (polls, errors, latency) and their latest
readings (`egw_device_power_watts`, `egw_device_energy_watt_hours_total`, ... in base
units, one family per quantity with the phase as a label), the outbox and
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


# Normalized quantity (actors.device.quantities) -> (family, type, help, labels, scale to the base unit).
# Names follow Prometheus conventions: base units (watts, volts, amperes, hertz, watt-hours
# as the meters count them), `_total` for monotonic counters, a ratio (0..1) for percentages.
READING_FAMILIES: dict[str, tuple[str, str, str, dict[str, str], float]] = {
    "ac_power_w": ("egw_device_power_watts", "gauge", "AC power the device reported last (inverter output), watts.", {}, 1.0),
    "pv_power_w": ("egw_device_pv_power_watts", "gauge", "PV (DC) power the device reported last, watts.", {}, 1.0),
    "energy_total_wh": ("egw_device_energy_watt_hours_total", "counter", "Lifetime energy the device reported last, watt-hours.", {}, 1.0),
    "meter_power_w": ("egw_device_meter_power_watts", "gauge", "Power through the meter reported last (positive: import), watts.", {}, 1.0),
    "meter_import_wh": ("egw_device_meter_import_watt_hours_total", "counter", "Energy imported through the meter, watt-hours.", {}, 1.0),
    "meter_export_wh": ("egw_device_meter_export_watt_hours_total", "counter", "Energy exported through the meter, watt-hours.", {}, 1.0),
    "grid_frequency_hz": ("egw_device_grid_frequency_hertz", "gauge", "Grid frequency the device reported last, hertz.", {}, 1.0),
    "voltage_l1_v": ("egw_device_voltage_volts", "gauge", "Phase voltage the device reported last, volts.", {"phase": "L1"}, 1.0),
    "voltage_l2_v": ("egw_device_voltage_volts", "gauge", "Phase voltage the device reported last, volts.", {"phase": "L2"}, 1.0),
    "voltage_l3_v": ("egw_device_voltage_volts", "gauge", "Phase voltage the device reported last, volts.", {"phase": "L3"}, 1.0),
    "current_l1_a": ("egw_device_current_amperes", "gauge", "Phase current the device reported last, amperes.", {"phase": "L1"}, 1.0),
    "current_l2_a": ("egw_device_current_amperes", "gauge", "Phase current the device reported last, amperes.", {"phase": "L2"}, 1.0),
    "current_l3_a": ("egw_device_current_amperes", "gauge", "Phase current the device reported last, amperes.", {"phase": "L3"}, 1.0),
    "battery_soc_pct": ("egw_device_battery_state_of_charge_ratio", "gauge", "Battery state of charge the device reported last, 0 to 1.", {}, 0.01),
}


def reading_families(devices: Iterable[dict[str, Any]]) -> list[str]:
    """The devices' latest readings, one family per metric name (phases share one family)."""
    grouped: dict[str, tuple[str, str, list[Sample]]] = {}
    for name, kind, help_text, _labels, _scale in READING_FAMILIES.values():
        grouped.setdefault(name, (kind, help_text, []))
    for device in devices:
        values = device.get("values") or {}
        for quantity, (name, _kind, _help, labels, scale) in READING_FAMILIES.items():
            value = _number(values.get(quantity))
            if value is not None and math.isfinite(value):  # a flagged non-finite reading is stored as null, never exported
                grouped[name][2].append(({"device": str(device["id"]), **labels}, value * scale))
    lines: list[str] = []
    for name, (kind, help_text, samples) in grouped.items():
        if samples:
            lines += family(name, kind, help_text, samples)
    return lines


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
    lines += reading_families(devices)
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
