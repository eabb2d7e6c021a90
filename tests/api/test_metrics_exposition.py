"""`/metrics` as Prometheus reads it: the devices' readings in base units, in valid text format 0.0.4 (written by prometheus_client)."""

from __future__ import annotations

import math
import re
from collections import Counter

from prometheus_client.parser import text_string_to_metric_families

from actors.api import metrics

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\\\|\\"|\\n)*"'
VALUE = r"(?:[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?|NaN|[+-]Inf)"
SAMPLE = re.compile(rf"^(?P<name>{NAME})(?:\{{(?P<labels>{LABEL}(?:,{LABEL})*)?\}})? (?P<value>{VALUE})(?: -?\d+)?$")
HELP = re.compile(rf"^# HELP (?P<name>{NAME}) .*$")
TYPE = re.compile(rf"^# TYPE (?P<name>{NAME}) (?P<kind>counter|gauge|histogram|summary|untyped)$")


def parse_exposition(text: str) -> dict[str, tuple[str, list[tuple[dict[str, str], float]]]]:
    """A strict reader of the text format 0.0.4: {family: (type, [(labels, value)])}; fails on any deviation."""
    assert text.endswith("\n"), "the body ends with a line feed"
    families: dict[str, tuple[str, list]] = {}
    current = None
    for number, line in enumerate(text[:-1].split("\n"), 1):
        assert line, f"line {number}: empty line"
        if line.startswith("# HELP "):
            assert HELP.match(line), f"line {number}: bad HELP: {line!r}"
            continue
        if line.startswith("# TYPE "):
            match = TYPE.match(line)
            assert match, f"line {number}: bad TYPE: {line!r}"
            current = match["name"]
            assert current not in families, f"line {number}: family {current} declared twice"
            families[current] = (match["kind"], [])
            continue
        match = SAMPLE.match(line)
        assert match, f"line {number}: not a sample: {line!r}"
        assert match["name"] == current, f"line {number}: sample {match['name']} outside its family {current}"
        labels = dict(re.findall(r'([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"', match["labels"] or ""))
        value = float(match["value"].replace("Inf", "inf"))
        families[current][1].append((labels, value))
    for name, (kind, samples) in families.items():
        assert kind != "counter" or name.endswith("_total"), f"counter {name} must end in _total"
        keys = [tuple(sorted(labels.items())) for labels, _ in samples]
        assert len(keys) == len(set(keys)), f"{name}: duplicate label set"
    return families


DEVICES = [
    {"id": "pv-roof", "online": True, "polls": 10, "values": {"ac_power_w": 4321.5, "pv_power_w": 4500, "energy_total_wh": 1234567, "grid_frequency_hz": 50.01,
                                                               "voltage_l1_v": 230.1, "voltage_l2_v": 229.8, "current_l1_a": 6.2, "battery_soc_pct": 87, "status": "running"}},
    {"id": "grid-meter", "online": True, "values": {"meter_power_w": -812.0, "meter_import_wh": 5000, "meter_export_wh": 7000, "voltage_l1_v": 231.0, "ac_power_w": None}},
    {"id": 'odd"name', "online": False, "values": {}},
]


def render() -> str:
    tree = [{"name": "devices", "path": "devices", "state": "running", "restarts": 1, "children": [{"name": "pv-roof", "path": "devices/pv-roof", "state": "online", "restarts": 0}]}]
    outbox = {"pending_items": 12, "bytes": 4096, "transports": [{"name": "fleet", "uploaded_readings": 41, "upload_errors": 0, "dead_letters": 0, "backoff_s": 0}]}
    chargers = [{"id": "CP-1", "connected": True, "messages": {"MeterValues": 4}}]
    return metrics.render(tree=tree, devices=DEVICES, outbox=outbox, chargers=chargers, requests=Counter({("GET", "/metrics", 200): 3}), uptime_s=12.5)


def test_the_exposition_is_valid_text_format_0_0_4():
    families = parse_exposition(render())
    assert families["egw_device_polls_total"] == ("counter", [({"device": "pv-roof"}, 10.0)])
    assert families["egw_device_online"][1][2] == ({"device": 'odd\\"name'}, 0.0)  # escaped, as the format requires
    assert {"egw_device_power_watts", "egw_device_energy_watt_hours_total", "egw_device_voltage_volts"} <= set(families)  # the readings too


def test_device_readings_are_exported_in_base_units_with_prometheus_names():
    families = parse_exposition(render())
    assert families["egw_device_power_watts"] == ("gauge", [({"device": "pv-roof"}, 4321.5)])  # grid-meter's null is left out
    assert families["egw_device_pv_power_watts"] == ("gauge", [({"device": "pv-roof"}, 4500.0)])
    assert families["egw_device_energy_watt_hours_total"] == ("counter", [({"device": "pv-roof"}, 1234567.0)])
    assert families["egw_device_grid_frequency_hertz"] == ("gauge", [({"device": "pv-roof"}, 50.01)])
    assert families["egw_device_voltage_volts"] == ("gauge", [({"device": "pv-roof", "phase": "L1"}, 230.1), ({"device": "pv-roof", "phase": "L2"}, 229.8), ({"device": "grid-meter", "phase": "L1"}, 231.0)])
    assert families["egw_device_current_amperes"] == ("gauge", [({"device": "pv-roof", "phase": "L1"}, 6.2)])
    assert families["egw_device_battery_state_of_charge_ratio"] == ("gauge", [({"device": "pv-roof"}, 0.87)])
    assert families["egw_device_meter_power_watts"] == ("gauge", [({"device": "grid-meter"}, -812.0)])
    assert families["egw_device_meter_import_watt_hours_total"] == ("counter", [({"device": "grid-meter"}, 5000.0)])
    assert families["egw_device_meter_export_watt_hours_total"] == ("counter", [({"device": "grid-meter"}, 7000.0)])
    assert not any("status" in name for name in families)


def test_non_finite_readings_are_never_exported():
    devices = [{"id": "inv", "values": {"ac_power_w": math.nan, "energy_total_wh": math.inf, "grid_frequency_hz": 49.9}}]
    families = parse_exposition(metrics.render(tree=[], devices=devices, outbox={}, chargers=[], requests=Counter(), uptime_s=0))
    assert "egw_device_power_watts" not in families and "egw_device_energy_watt_hours_total" not in families
    assert families["egw_device_grid_frequency_hertz"] == ("gauge", [({"device": "inv"}, 49.9)])


def test_prometheus_client_reads_back_what_a_user_looks_at():
    """Parsed by prometheus_client's own parser: the figures an operator graphs or alerts on."""
    families = {f.name: f for f in text_string_to_metric_families(render())}
    samples = {(s.name, tuple(sorted(s.labels.items()))): s.value for f in families.values() for s in f.samples}
    assert samples[("egw_device_power_watts", (("device", "pv-roof"),))] == 4321.5
    assert samples[("egw_device_energy_watt_hours_total", (("device", "pv-roof"),))] == 1234567  # exact, not rounded by the 1.234567e+06 notation
    assert samples[("egw_device_battery_state_of_charge_ratio", (("device", "pv-roof"),))] == 0.87
    assert samples[("egw_device_meter_export_watt_hours_total", (("device", "grid-meter"),))] == 7000
    assert samples[("egw_device_online", (("device", 'odd"name'),))] == 0  # the label value round-trips unescaped
    assert samples[("egw_actor_restarts_total", (("actor", "devices"),))] == 1
    assert samples[("egw_actor_up", (("actor", "devices/pv-roof"),))] == 1
    assert samples[("egw_outbox_pending_items", ())] == 12
    assert samples[("egw_transport_uploaded_readings_total", (("transport", "fleet"),))] == 41
    assert samples[("egw_ocpp_messages_total", (("action", "MeterValues"), ("charger", "CP-1")))] == 4
    assert samples[("egw_api_requests_total", (("method", "GET"), ("route", "/metrics"), ("status", "200")))] == 3
    assert samples[("egw_uptime_seconds", ())] == 12.5
    # counters are counters (the parser drops the _total suffix from the family name, as OpenMetrics does), gauges gauges
    assert families["egw_device_polls"].type == "counter" and families["egw_device_polls"].documentation == "Polls of each device."
    assert families["egw_outbox_bytes"].type == "gauge"
    # only the gateway's own families: the collector has a registry of its own, not the library's global one
    assert all(name.startswith("egw_") for name in families), sorted(families)

