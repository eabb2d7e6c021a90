"""The normalized quantities every device maps to, with their units and sanity ranges.

Profiles speak their vendor's language (kW with gain 1000, 0.1 kWh, ...); the rest of the
gateway sees only these names in these units. A value outside its sanity range is kept
for diagnosis but flagged, so it is never uploaded as truth.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Quantity:
    name: str
    unit: str
    low: float | None = None  # sanity range, inclusive; None = unbounded
    high: float | None = None
    counter: bool = False  # a cumulative counter: checked for monotonicity


QUANTITIES: dict[str, Quantity] = {
    q.name: q
    for q in (
        Quantity("ac_power_w", "W", -1e6, 1e6),
        Quantity("pv_power_w", "W", -1e3, 1e6),
        Quantity("energy_total_wh", "Wh", 0, 1e13, counter=True),
        Quantity("grid_frequency_hz", "Hz", 40.0, 70.0),
        Quantity("voltage_l1_v", "V", 0, 1000),
        Quantity("voltage_l2_v", "V", 0, 1000),
        Quantity("voltage_l3_v", "V", 0, 1000),
        Quantity("current_l1_a", "A", -2000, 2000),
        Quantity("current_l2_a", "A", -2000, 2000),
        Quantity("current_l3_a", "A", -2000, 2000),
        Quantity("battery_soc_pct", "%", 0, 100),
        Quantity("meter_power_w", "W", -1e6, 1e6),
        Quantity("meter_import_wh", "Wh", 0, 1e13, counter=True),
        Quantity("meter_export_wh", "Wh", 0, 1e13, counter=True),
        Quantity("status", ""),
    )
}

# Multiply a value in the document's unit by this to get the quantity's unit.
UNIT_FACTORS: dict[tuple[str, str], float] = {
    ("W", "W"): 1.0,
    ("kW", "W"): 1e3,
    ("Wh", "Wh"): 1.0,
    ("kWh", "Wh"): 1e3,
    ("MWh", "Wh"): 1e6,
    ("Hz", "Hz"): 1.0,
    ("V", "V"): 1.0,
    ("A", "A"): 1.0,
    ("%", "%"): 1.0,
    ("", ""): 1.0,
}

UNITS = sorted({u for pair in UNIT_FACTORS for u in pair} | {"C", "VA", "var", "Pct", "s"})


def unit_factor(quantity: str, unit: str) -> float | None:
    """Factor from `unit` to the quantity's unit, or None when they are incompatible."""
    return UNIT_FACTORS.get((unit, QUANTITIES[quantity].unit))


def out_of_range(quantity: str, value: float) -> bool:
    q = QUANTITIES.get(quantity)
    if q is None or not isinstance(value, (int, float)):
        return False
    return (q.low is not None and value < q.low) or (q.high is not None and value > q.high)
