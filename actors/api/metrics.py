"""`/metrics`: the gateway's state as Prometheus metrics, rendered by `prometheus_client`.

On each scrape the API gathers what its handlers already have -- the actor tree (restarts
per actor), the devices' published counters (polls, errors, latency) and their latest
readings (`egw_device_power_watts`, `egw_device_energy_watt_hours_total`, ... in base
units, one family per quantity with the phase as a label), the outbox and transport
state (sizes, uploads), the chargers' OCPP message counts, and the API's own request
counters -- and `render()` hands that one snapshot to a `GatewayCollector`, a custom
collector yielding `GaugeMetricFamily`/`CounterMetricFamily`, in a `CollectorRegistry` of
its own (never the library's global one, so nothing of the process's own or of another
app leaks in), and `prometheus_client.generate_latest` writes the text format 0.0.4.
Nothing is sampled in the background, so a scrape costs only the reads it makes and
metrics never drift from what `/api/*` shows.

Every counter ends in `_total`, as prometheus_client requires of a counter's samples.
The library writes each sample's labels sorted by name (`{action="...",charger="..."}`)
and values as floats (`100.0`, `1.234567e+06`): the same series and values as before,
for any Prometheus parser, though no longer the same bytes for a `grep`.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any

from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

Sample = tuple[dict[str, str], float]


def family(name: str, kind: str, help_text: str, samples: Iterable[Sample], labelnames: Sequence[str] = ()) -> Metric:
    """One metric family of `kind` ("gauge" or "counter"); every sample has exactly `labelnames`."""
    made = CounterMetricFamily(name, help_text, labels=labelnames) if kind == "counter" else GaugeMetricFamily(name, help_text, labels=labelnames)
    for labels, value in samples:
        made.add_metric([str(labels[key]) for key in labelnames], value)
    return made


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


def reading_families(devices: Iterable[dict[str, Any]]) -> Iterator[Metric]:
    """The devices' latest readings, one family per metric name (phases share one family); families without a sample are left out."""
    grouped: dict[str, tuple[str, str, list[str], list[Sample]]] = {}
    for name, kind, help_text, labels, _scale in READING_FAMILIES.values():
        grouped.setdefault(name, (kind, help_text, ["device", *labels], []))
    for device in devices:
        values = device.get("values") or {}
        for quantity, (name, _kind, _help, labels, scale) in READING_FAMILIES.items():
            value = _number(values.get(quantity))
            if value is not None and math.isfinite(value):  # a flagged non-finite reading is stored as null, never exported
                grouped[name][3].append(({"device": str(device["id"]), **labels}, value * scale))
    for name, (kind, help_text, labelnames, samples) in grouped.items():
        if samples:
            yield family(name, kind, help_text, samples, labelnames)


def walk_tree(records: Iterable[dict[str, Any]], prefix: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """(path, record) for every actor in a tree, depth first."""
    for record in records:
        path = record.get("path") or (f"{prefix}/{record.get('name')}" if prefix else str(record.get("name")))
        yield path, record
        yield from walk_tree(record.get("children") or (), path)


@dataclass(frozen=True)
class GatewayState:
    """One scrape's snapshot of what the API's handlers gathered from the actors."""

    tree: list[dict[str, Any]]
    devices: list[dict[str, Any]]
    outbox: dict[str, Any]
    chargers: list[dict[str, Any]]
    requests: Counter
    uptime_s: float


DOWN_STATES = ("restarting", "stopped", "failed", "starting")
PER_DEVICE = [
    ("egw_device_polls_total", "counter", "Polls of each device.", "polls"),
    ("egw_device_poll_errors_total", "counter", "Failed polls of each device.", "errors"),
    ("egw_device_gaps_total", "counter", "Gap records written for each device.", "gaps"),
]
OUTBOX_GAUGES = [
    ("egw_outbox_pending_items", "Items (readings, gaps, events, charging sessions) committed but not yet acknowledged by a receiver.", "pending_items"),
    ("egw_outbox_bytes", "Bytes the outbox occupies.", "bytes"),
    ("egw_outbox_budget_used_ratio", "Fraction of the outbox byte budget in use.", "budget_used"),
    ("egw_outbox_gaps", "Gap records in the outbox.", "gaps"),
]
PER_TRANSPORT = [
    ("egw_transport_uploaded_readings_total", "counter", "Readings acknowledged by each transport's receiver.", "uploaded_readings"),
    ("egw_transport_uploaded_batches_total", "counter", "Batches acknowledged by each transport's receiver.", "uploaded_batches"),
    ("egw_transport_upload_errors_total", "counter", "Failed upload attempts per transport.", "upload_errors"),
    ("egw_transport_dead_letters", "gauge", "Batches parked after a permanent rejection.", "dead_letters"),
    ("egw_transport_backoff_seconds", "gauge", "Current retry backoff per transport.", "backoff_s"),
]


class GatewayCollector(Collector):
    """A custom collector over one `GatewayState`: every family, in a fixed order, from that state alone."""

    def __init__(self, state: GatewayState) -> None:
        self.state = state

    def collect(self) -> Iterator[Metric]:
        st = self.state
        yield family("egw_uptime_seconds", "gauge", "Seconds since the gateway started.", [({}, st.uptime_s)])
        actors = list(walk_tree(st.tree))
        yield family("egw_actor_restarts_total", "counter", "Restarts of each actor by its supervisor.",
                     [({"actor": path}, float(rec.get("restarts") or 0)) for path, rec in actors], ["actor"])
        yield family("egw_actor_up", "gauge", "1 when the actor is running, else 0.",
                     [({"actor": path}, 0.0 if rec.get("state") in DOWN_STATES else 1.0) for path, rec in actors], ["actor"])
        devices = st.devices
        for name, kind, help_text, key in PER_DEVICE:
            yield family(name, kind, help_text, [({"device": d["id"]}, v) for d in devices if (v := _number(d.get(key))) is not None], ["device"])
        yield family("egw_device_poll_latency_seconds", "gauge", "Duration of each device's last poll.",
                     [({"device": d["id"]}, v / 1000.0) for d in devices if (v := _number(d.get("poll_latency_ms"))) is not None], ["device"])
        yield family("egw_device_online", "gauge", "1 when the device answered its last poll.",
                     [({"device": d["id"]}, 1.0 if d.get("online") else 0.0) for d in devices], ["device"])
        yield from reading_families(devices)
        for name, help_text, key in OUTBOX_GAUGES:
            value = _number(st.outbox.get(key))
            yield family(name, "gauge", help_text, [({}, value)] if value is not None else [])
        transports = st.outbox.get("transports") or []
        for name, kind, help_text, key in PER_TRANSPORT:
            yield family(name, kind, help_text, [({"transport": t["name"]}, v) for t in transports if (v := _number(t.get(key))) is not None], ["transport"])
        yield family("egw_ocpp_messages_total", "counter", "OCPP messages handled per charger and action.",
                     [({"charger": c["id"], "action": action}, v) for c in st.chargers
                      for action, count in sorted((c.get("messages") or {}).items()) if (v := _number(count)) is not None], ["charger", "action"])
        yield family("egw_charger_connected", "gauge", "1 while the charger's websocket is connected.",
                     [({"charger": c["id"]}, 1.0 if c.get("connected") else 0.0) for c in st.chargers], ["charger"])
        yield family("egw_api_requests_total", "counter", "HTTP requests answered by the API, by route and status.",
                     [({"method": m, "route": r, "status": s}, float(n)) for (m, r, s), n in sorted(st.requests.items())], ["method", "route", "status"])


def registry_for(state: GatewayState) -> CollectorRegistry:
    """A registry of its own holding only the gateway's collector (no process or platform metrics)."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(GatewayCollector(state))
    return registry


def render(*, tree: list[dict[str, Any]], devices: list[dict[str, Any]], outbox: dict[str, Any],
           chargers: list[dict[str, Any]], requests: Counter, uptime_s: float) -> str:
    """The whole exposition (text format 0.0.4) of one snapshot, as one text body.

    One registry per scrape: two scrapes at once never see each other's snapshot.
    """
    state = GatewayState(tree=tree, devices=devices, outbox=outbox, chargers=chargers, requests=requests, uptime_s=uptime_s)
    return generate_latest(registry_for(state)).decode("utf-8")
