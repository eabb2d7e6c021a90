"""Device profiles: register maps as data files, validated when loaded.

One TOML file per device family lives in `actors/device/profiles/`. A register-map file
(every vendor profile) has this shape; addresses are 0-based protocol (PDU) addresses:

    schema = 1
    [profile]
    name = "huawei_sun2000"        # must equal the file name without .toml
    kind = "inverter"              # inverter | meter | hybrid
    manufacturer = "Huawei"
    document = "SUN2000 ... MODBUS Interface Definitions"   # where the addresses come from
    document_version = "V3.0"
    function = 3                   # default function code: 3 holding, 4 input registers
    word_order = "big"             # default for 32/64-bit values: big (high word first) | little
    max_gap = 0                    # unused registers the planner may read across
    unit_id = 1                    # the vendor's default unit id
    na_markers = false             # treat SunSpec-style markers (0x8000, 0xFFFF, ...) as None

    [identity]                     # points that identify a device (scan, status)
    serial = "serial_number"
    model = "model_name"
    match = { point = "model_name", prefix = "SUN2000" }   # optional: how scan recognises it

    [[point]]
    name = "active_power"          # unique within the profile
    address = 32080
    type = "S32"                   # U16 S16 U32 S32 U64 S64 F32 STR
    count = 10                     # STR only: registers
    scale = 0.001                  # raw * scale = value in `unit`
    sf = "W_SF"                    # optional scale-factor point: value *= 10 ** sf
    unit = "kW"
    quantity = "ac_power_w"        # optional: the normalized quantity it provides
    function / word_order / na / min / max   # optional per-point overrides

    [[sum]]                        # a quantity no single register holds (no total-PV register)
    quantity = "pv_power_w"
    points = ["pv1_power", "pv2_power"]   # numeric points without a quantity of their own

The SunSpec file (`kind = "sunspec"`) instead names base addresses and, per model id, which
model points provide which quantity; the points themselves come from pysunspec2's models.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from actors.device.quantities import QUANTITIES, UNITS, unit_factor

PROFILE_DIR = Path(__file__).parent / "profiles"
TYPES = {"U16": 1, "S16": 1, "U32": 2, "S32": 2, "U64": 4, "S64": 4, "F32": 2, "STR": None}
KINDS = ("inverter", "meter", "hybrid")


class ProfileError(ValueError):
    """A profile file is invalid; the message names the file and the field."""

    def __init__(self, file: str, field_path: str, problem: str) -> None:
        super().__init__(f"{file}: {field_path}: {problem}")
        self.file, self.field, self.problem = file, field_path, problem


@dataclass(frozen=True)
class Point:
    name: str
    address: int
    type: str
    count: int  # registers
    function: int = 3
    word_order: str = "big"
    scale: float = 1.0
    sf: str | None = None
    unit: str = ""
    quantity: str | None = None
    na: tuple[int, ...] = ()  # raw values meaning "not available"
    na_default: bool = False  # also apply the type's SunSpec marker
    low: float | None = None
    high: float | None = None

    @property
    def end(self) -> int:
        return self.address + self.count


@dataclass(frozen=True)
class Sum:
    """A quantity that no single register holds: the sum of several points (e.g. PV power
    of each string, where the inverter has no total register)."""

    quantity: str
    points: tuple[str, ...]


@dataclass(frozen=True)
class Profile:
    """A concrete register map: what to read and how to decode it."""

    name: str
    kind: str
    manufacturer: str
    document: str
    document_version: str
    points: tuple[Point, ...]
    unit_id: int = 1
    max_gap: int = 0
    serial: str | None = None
    model: str | None = None
    match: dict[str, str] = field(default_factory=dict)
    sums: tuple[Sum, ...] = ()

    def point(self, name: str) -> Point:
        for p in self.points:
            if p.name == name:
                return p
        raise KeyError(name)

    def quantity_points(self) -> dict[str, Point]:
        """Quantities read from one point each."""
        return {p.quantity: p for p in self.points if p.quantity}

    def quantities(self) -> list[str]:
        """Every quantity the profile provides: from single points and from sums."""
        return list(self.quantity_points()) + [s.quantity for s in self.sums]


@dataclass(frozen=True)
class SunSpecFamily:
    """The SunSpec profile file: where to look, and model point -> quantity per model id."""

    name: str
    document: str
    document_version: str
    base_addresses: tuple[int, ...]
    models: dict[int, dict[str, str]]  # model id -> {quantity: point name}
    identity: dict[str, str]  # manufacturer/model/serial -> model-1 point names


def profile_names() -> list[str]:
    return sorted(p.stem for p in PROFILE_DIR.glob("*.toml"))


def load_profile(name: str) -> Profile | SunSpecFamily:
    """Load and validate `profiles/<name>.toml` (or a path), raising ProfileError on any problem."""
    path = Path(name) if name.endswith(".toml") else PROFILE_DIR / f"{name}.toml"
    if not path.is_file():
        raise ProfileError(path.name, "profile", f"no such profile (known: {', '.join(profile_names())})")
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as exc:
        raise ProfileError(path.name, "syntax", str(exc)) from exc
    return parse_profile(data, path.name)


def parse_profile(data: dict[str, Any], file: str) -> Profile | SunSpecFamily:
    v = _Validator(file)
    if data.get("schema") != 1:
        raise ProfileError(file, "schema", f"must be 1, got {data.get('schema')!r}")
    head = v.table(data, "profile")
    name = v.string(head, "profile.name")
    if file.endswith(".toml") and Path(file).stem != name:
        raise ProfileError(file, "profile.name", f"{name!r} must equal the file name {Path(file).stem!r}")
    kind = v.string(head, "profile.kind")
    document = v.string(head, "profile.document")
    version = v.string(head, "profile.document_version")
    if kind == "sunspec":
        return _parse_sunspec(v, data, head, name, document, version)
    if kind not in KINDS:
        raise ProfileError(file, "profile.kind", f"{kind!r} is not one of {', '.join(KINDS + ('sunspec',))}")
    defaults = {
        "function": v.choice(head, "profile.function", (3, 4), 3),
        "word_order": v.choice(head, "profile.word_order", ("big", "little"), "big"),
        "na_default": v.boolean(head, "profile.na_markers", False),
    }
    raw_points = data.get("point")
    if not isinstance(raw_points, list) or not raw_points:
        raise ProfileError(file, "point", "at least one [[point]] table is required")
    points = tuple(_parse_point(v, raw, f"point[{i}]", defaults) for i, raw in enumerate(raw_points))
    names = [p.name for p in points]
    for i, p in enumerate(points):
        if names.index(p.name) != i:
            raise ProfileError(file, f"point[{i}].name", f"duplicate point name {p.name!r}")
        if p.sf is not None:
            if p.sf not in names:
                raise ProfileError(file, f"point[{i}].sf", f"no point named {p.sf!r}")
            if points[names.index(p.sf)].type != "S16":
                raise ProfileError(file, f"point[{i}].sf", f"scale-factor point {p.sf!r} must be S16")
    sums = _parse_sums(v, data.get("sum", []), points)
    quantities = [p.quantity for p in points if p.quantity] + [s.quantity for s in sums]
    for q in quantities:
        if quantities.count(q) > 1:
            raise ProfileError(file, "point", f"quantity {q!r} is provided by more than one point or sum")
    identity = data.get("identity", {})
    if not isinstance(identity, dict):
        raise ProfileError(file, "identity", "must be a table")
    for key in ("serial", "model"):
        if key in identity and identity[key] not in names:
            raise ProfileError(file, f"identity.{key}", f"no point named {identity[key]!r}")
    match = identity.get("match", {})
    if match and (not isinstance(match, dict) or match.get("point") not in names or not isinstance(match.get("prefix", ""), str)):
        raise ProfileError(file, "identity.match", "needs point = <existing point name> and prefix = <string>")
    return Profile(
        name=name,
        kind=kind,
        manufacturer=v.string(head, "profile.manufacturer"),
        document=document,
        document_version=version,
        points=points,
        unit_id=v.integer(head, "profile.unit_id", 0, 255, 1),
        max_gap=v.integer(head, "profile.max_gap", 0, 100, 0),
        serial=identity.get("serial"),
        model=identity.get("model"),
        match=dict(match),
        sums=sums,
    )


def _parse_sums(v: _Validator, raw_sums: Any, points: tuple[Point, ...]) -> tuple[Sum, ...]:
    if not isinstance(raw_sums, list):
        raise ProfileError(v.file, "sum", "must be an array of [[sum]] tables")
    by_name = {p.name: p for p in points}
    sums = []
    for i, raw in enumerate(raw_sums):
        where = f"sum[{i}]"
        if not isinstance(raw, dict) or set(raw) - {"quantity", "points", "note"}:
            raise ProfileError(v.file, where, "must be a table with quantity, points (and an optional note)")
        quantity = raw.get("quantity")
        if quantity not in QUANTITIES:
            raise ProfileError(v.file, f"{where}.quantity", f"{quantity!r} is not one of {', '.join(QUANTITIES)}")
        names = raw.get("points")
        if not isinstance(names, list) or len(names) < 2 or not all(isinstance(n, str) for n in names):
            raise ProfileError(v.file, f"{where}.points", "must list at least two point names")
        for name in names:
            point = by_name.get(name)
            if point is None:
                raise ProfileError(v.file, f"{where}.points", f"no point named {name!r}")
            if point.type == "STR" or point.quantity:
                raise ProfileError(v.file, f"{where}.points", f"{name!r} must be a numeric point without a quantity of its own")
            if unit_factor(quantity, point.unit) is None:
                raise ProfileError(v.file, f"{where}.points", f"{name!r} has unit {point.unit!r}, which cannot be converted to {quantity} ({QUANTITIES[quantity].unit})")
        sums.append(Sum(quantity, tuple(names)))
    return tuple(sums)


def _parse_point(v: _Validator, raw: Any, where: str, defaults: dict[str, Any]) -> Point:
    if not isinstance(raw, dict):
        raise ProfileError(v.file, where, "must be a table")
    known = {"name", "address", "type", "count", "function", "word_order", "scale", "sf", "unit", "quantity", "na", "min", "max", "note"}
    for key in raw:
        if key not in known:
            raise ProfileError(v.file, f"{where}.{key}", f"unknown field (known: {', '.join(sorted(known))})")
    typ = v.choice(raw, f"{where}.type", tuple(TYPES))
    if typ == "STR":
        count = v.integer(raw, f"{where}.count", 1, 125)
    else:
        count = TYPES[typ]
        if "count" in raw and raw["count"] != count:
            raise ProfileError(v.file, f"{where}.count", f"{typ} is always {count} register(s)")
    address = v.integer(raw, f"{where}.address", 0, 65535)
    if address + count > 65536:
        raise ProfileError(v.file, f"{where}.address", "point runs past register 65535")
    unit = raw.get("unit", "")
    if unit not in UNITS:
        raise ProfileError(v.file, f"{where}.unit", f"{unit!r} is not one of {', '.join(repr(u) for u in UNITS)}")
    quantity = raw.get("quantity")
    if quantity is not None:
        if quantity not in QUANTITIES:
            raise ProfileError(v.file, f"{where}.quantity", f"{quantity!r} is not one of {', '.join(QUANTITIES)}")
        if unit_factor(quantity, unit) is None:
            raise ProfileError(v.file, f"{where}.unit", f"{unit!r} cannot be converted to {quantity} ({QUANTITIES[quantity].unit})")
        if typ == "STR":
            raise ProfileError(v.file, f"{where}.quantity", "a string point cannot provide a numeric quantity")
    scale = raw.get("scale", 1.0)
    if isinstance(scale, bool) or not isinstance(scale, (int, float)) or scale == 0:
        raise ProfileError(v.file, f"{where}.scale", f"must be a non-zero number, got {scale!r}")
    na = raw.get("na", [])
    if not isinstance(na, list) or not all(isinstance(x, int) and not isinstance(x, bool) for x in na):
        raise ProfileError(v.file, f"{where}.na", "must be a list of integers (raw register values)")
    sf = raw.get("sf")
    if sf is not None and not isinstance(sf, str):
        raise ProfileError(v.file, f"{where}.sf", "must be the name of a scale-factor point")
    low, high = raw.get("min"), raw.get("max")
    for key, val in (("min", low), ("max", high)):
        if val is not None and (isinstance(val, bool) or not isinstance(val, (int, float))):
            raise ProfileError(v.file, f"{where}.{key}", "must be a number")
    return Point(
        name=v.string(raw, f"{where}.name"),
        address=address,
        type=typ,
        count=count,
        function=v.choice(raw, f"{where}.function", (3, 4), defaults["function"]),
        word_order=v.choice(raw, f"{where}.word_order", ("big", "little"), defaults["word_order"]),
        scale=float(scale),
        sf=sf,
        unit=unit,
        quantity=quantity,
        na=tuple(na),
        na_default=defaults["na_default"],
        low=low,
        high=high,
    )


def _parse_sunspec(v: _Validator, data: dict, head: dict, name: str, document: str, version: str) -> SunSpecFamily:
    bases = head.get("base_addresses")
    if not isinstance(bases, list) or not bases or not all(isinstance(b, int) and 0 <= b <= 65535 for b in bases):
        raise ProfileError(v.file, "profile.base_addresses", "must be a non-empty list of register addresses")
    identity = v.table(data, "identity")
    for key in ("manufacturer", "model", "serial"):
        v.string(identity, f"identity.{key}")
    models_raw = v.table(data, "models")
    models: dict[int, dict[str, str]] = {}
    for key, mapping in models_raw.items():
        if not key.isdigit():
            raise ProfileError(v.file, f"models.{key}", "model keys must be SunSpec model ids")
        if not isinstance(mapping, dict):
            raise ProfileError(v.file, f"models.{key}", "must be a table of quantity = point name")
        for quantity, point in mapping.items():
            if quantity not in QUANTITIES:
                raise ProfileError(v.file, f"models.{key}.{quantity}", f"unknown quantity (known: {', '.join(QUANTITIES)})")
            if not isinstance(point, str):
                raise ProfileError(v.file, f"models.{key}.{quantity}", "must be a model point name")
        models[int(key)] = dict(mapping)
    return SunSpecFamily(name, document, version, tuple(bases), models, dict(identity))


class _Validator:
    """Small typed getters that raise ProfileError naming the file and the field."""

    def __init__(self, file: str) -> None:
        self.file = file

    def _get(self, table: dict, path: str, default: Any) -> Any:
        key = path.rsplit(".", 1)[-1]
        if key not in table:
            if default is _REQUIRED:
                raise ProfileError(self.file, path, "is required")
            return default
        return table[key]

    def table(self, table: dict, path: str) -> dict:
        val = self._get(table, path, _REQUIRED)
        if not isinstance(val, dict):
            raise ProfileError(self.file, path, "must be a table")
        return val

    def string(self, table: dict, path: str) -> str:
        val = self._get(table, path, _REQUIRED)
        if not isinstance(val, str) or not val:
            raise ProfileError(self.file, path, f"must be a non-empty string, got {val!r}")
        return val

    def integer(self, table: dict, path: str, low: int, high: int, default: Any = None) -> int:
        val = self._get(table, path, _REQUIRED if default is None else default)
        if isinstance(val, bool) or not isinstance(val, int) or not low <= val <= high:
            raise ProfileError(self.file, path, f"must be an integer in {low}..{high}, got {val!r}")
        return val

    def boolean(self, table: dict, path: str, default: bool) -> bool:
        val = self._get(table, path, default)
        if not isinstance(val, bool):
            raise ProfileError(self.file, path, f"must be true or false, got {val!r}")
        return val

    def choice(self, table: dict, path: str, options: tuple, default: Any = None) -> Any:
        val = self._get(table, path, _REQUIRED if default is None else default)
        if val not in options or isinstance(val, bool):
            raise ProfileError(self.file, path, f"{val!r} is not one of {', '.join(map(str, options))}")
        return val


_REQUIRED = object()
