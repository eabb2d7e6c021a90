"""SunSpec: find the model chain on a device and turn it into a concrete register map.

A SunSpec device marks its map with "SunS" (0x5375 0x6E53) at one of a few base addresses
(40000, 0, 50000), followed by a chain of models: each starts with its id and length and
ends with id 0xFFFF. The point layout of every model comes from pysunspec2's JSON model
definitions, so the gateway decodes any model pysunspec2 knows without hand-written maps;
`profiles/sunspec.toml` only says which points provide which normalized quantity.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

import sunspec2

from actors.device.profile import Point, Profile, SunSpecFamily, load_profile
from actors.device.quantities import UNITS, unit_factor

SUNS = (0x5375, 0x6E53)
END_ID = 0xFFFF
MODEL_DIR = Path(sunspec2.__file__).parent / "models" / "json"
MAX_MODELS = 64  # a bound on the chain walk: a corrupt chain must not loop forever

# pysunspec2 point type -> (codec type, registers, raw values meaning "not implemented")
_TYPES: dict[str, tuple[str, int, tuple[int, ...]]] = {
    "uint16": ("U16", 1, ()),
    "enum16": ("U16", 1, ()),
    "bitfield16": ("U16", 1, ()),
    "count": ("U16", 1, ()),
    "acc16": ("U16", 1, (0,)),
    "int16": ("S16", 1, ()),
    "sunssf": ("S16", 1, ()),
    "uint32": ("U32", 2, ()),
    "enum32": ("U32", 2, ()),
    "bitfield32": ("U32", 2, ()),
    "ipaddr": ("U32", 2, ()),
    "acc32": ("U32", 2, (0,)),
    "int32": ("S32", 2, ()),
    "uint64": ("U64", 4, ()),
    "acc64": ("U64", 4, (0,)),
    "int64": ("S64", 4, ()),
    "float32": ("F32", 2, ()),
}


class SunSpecError(Exception):
    """No SunSpec map found, or its model chain is malformed."""


@dataclass(frozen=True)
class ModelRef:
    id: int
    address: int  # address of the model's ID register
    length: int  # registers after the ID and L registers


@dataclass(frozen=True)
class SunSpecMap:
    base: int
    models: tuple[ModelRef, ...]


ReadFn = Callable[[int, int], list[int]]  # (address, count) -> holding registers; raises on failure


@lru_cache(maxsize=None)
def model_definition(model_id: int) -> dict | None:
    path = MODEL_DIR / f"model_{model_id}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def family() -> SunSpecFamily:
    fam = load_profile("sunspec")
    assert isinstance(fam, SunSpecFamily)
    return fam


def discover(read: ReadFn, bases: tuple[int, ...] | None = None, not_here: tuple[type[BaseException], ...] = (Exception,)) -> SunSpecMap:
    """Find "SunS" at the first base address that has it and walk the model chain.

    A read raising one of `not_here` (e.g. an illegal-address exception response) means
    "no map at this base"; anything else (the connection broke) propagates.
    """
    bases = bases or family().base_addresses
    errors = []
    for base in bases:
        try:
            marker = read(base, 2)
        except not_here as exc:
            errors.append(f"{base}: {exc}")
            continue
        if tuple(marker) != SUNS:
            errors.append(f"{base}: no SunS marker")
            continue
        return SunSpecMap(base, tuple(_walk(read, base + 2)))
    raise SunSpecError("no SunSpec map (" + "; ".join(errors) + ")")


def _walk(read: ReadFn, address: int) -> list[ModelRef]:
    models: list[ModelRef] = []
    for _ in range(MAX_MODELS):
        header = read(address, 2)
        model_id, length = header[0], header[1]
        if model_id == END_ID:
            return models
        if address + 2 + length > 65536:
            raise SunSpecError(f"model {model_id} at {address} runs past the register space")
        models.append(ModelRef(model_id, address, length))
        address += 2 + length
    raise SunSpecError(f"more than {MAX_MODELS} models: chain end marker missing")


def model_points(ref: ModelRef, quantities: dict[str, str] | None = None) -> list[Point]:
    """The fixed part of one model as Points named "m<id>.<point>" at absolute addresses.

    Repeating groups (e.g. model 160's modules) are not expanded; points beyond the
    model's advertised length are left out (older devices ship shorter models).
    """
    definition = model_definition(ref.id)
    if definition is None:
        return []
    by_point = {name: q for q, name in (quantities or {}).items()}
    points: list[Point] = []
    offset = 0
    for raw in definition["group"].get("points", []):
        size = int(raw.get("size", 1))
        typ = raw["type"]
        if offset >= ref.length + 2:
            break
        name = f"m{ref.id}.{raw['name']}"
        quantity = by_point.get(raw["name"])
        unit = raw.get("units", "") if raw.get("units", "") in UNITS else ""
        if quantity and unit_factor(quantity, unit) is None:
            quantity = None
        if typ == "string":
            points.append(Point(name, ref.address + offset, "STR", size, 3))
        elif typ in _TYPES and offset + size <= ref.length + 2:
            codec_type, count, na = _TYPES[typ]
            sf = raw.get("sf")
            points.append(
                Point(
                    name=name,
                    address=ref.address + offset,
                    type=codec_type,
                    count=count,
                    function=3,
                    sf=f"m{ref.id}.{sf}" if isinstance(sf, str) else None,
                    unit=unit,
                    quantity=quantity,
                    na=na,
                    na_default=True,
                )
            )
        offset += size
    names = {p.name for p in points}
    # A scale factor given as a number, or pointing outside the fixed part, is dropped.
    return [p if p.sf is None or p.sf in names else Point(**{**p.__dict__, "sf": None, "quantity": None}) for p in points]


def build_profile(found: SunSpecMap, fam: SunSpecFamily | None = None) -> Profile:
    """A concrete Profile for a discovered device: every known model's fixed points."""
    fam = fam or family()
    points: list[Point] = []
    taken: set[str] = set()
    for ref in found.models:
        mapping = {q: p for q, p in fam.models.get(ref.id, {}).items() if q not in taken}
        model = model_points(ref, mapping)
        taken |= {p.quantity for p in model if p.quantity}
        if ref.id == 1 or ref.id in fam.models:
            points.extend(model)
    ids = "+".join(str(m.id) for m in found.models)
    return Profile(
        name="sunspec",
        kind="sunspec",
        manufacturer="",
        document=fam.document,
        document_version=fam.document_version,
        points=tuple(points),
        max_gap=125,  # a model chain is contiguous and readable end to end
        serial=f"m1.{fam.identity['serial']}" if any(m.id == 1 for m in found.models) else None,
        model=f"m1.{fam.identity['model']}" if any(m.id == 1 for m in found.models) else None,
        match={"models": ids},
    )


def image_layout(model_ids: list[int], base: int = 40000) -> tuple[SunSpecMap, dict[int, int]]:
    """The layout of a synthetic device serving `model_ids` (the simulator's SunSpec image).

    Returns the map and the fixed registers: the SunS marker, each model's ID and L, and
    the end marker. Model lengths are the definitions' fixed lengths.
    """
    fixed = {base: SUNS[0], base + 1: SUNS[1]}
    address = base + 2
    refs = []
    for model_id in model_ids:
        definition = model_definition(model_id)
        if definition is None:
            raise SunSpecError(f"pysunspec2 has no definition for model {model_id}")
        length = sum(int(p.get("size", 1)) for p in definition["group"]["points"]) - 2
        refs.append(ModelRef(model_id, address, length))
        fixed[address], fixed[address + 1] = model_id, length
        address += 2 + length
    fixed[address], fixed[address + 1] = END_ID, 0
    return SunSpecMap(base, tuple(refs)), fixed
