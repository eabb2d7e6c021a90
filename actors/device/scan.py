"""`egw devices scan HOST[:PORT] | CIDR`: find Modbus devices and say which profile fits.

For every host (a small CIDR range at most 256 addresses) and unit id, the scan first
looks for a SunSpec map (40000, 0, 50000), then reads each vendor profile's identity
registers. A profile with a match rule (e.g. the model string starts with "SUN2000")
is reported as a match; a profile without one as a candidate when its serial-number
registers read back non-empty. Hosts are scanned in parallel (bounded), the unit ids of
one host one after another over one connection, every request with a timeout.

Some gateways and loggers answer every address, so every vendor profile reads back
"something" there. Each candidate is therefore scored on evidence, and the evidence is
printed: text identity registers that hold readable text, and measurements that decode
to plausible values (a grid frequency of 45-65 Hz, phase voltages of 90-280 V). For every
unit id the profiles are listed best first; a SunSpec map or a profile's own identity
rule (`match`) outranks any amount of plausibility.

Wire into the CLI: `PLUGGED_COMMANDS += (("devices", "actors.device.scan", "..."),)`;
this module offers `add_arguments(parser)` and `run(args)`.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import sys
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

from actors.device.decode import decode_identity, decode_points, decode_values, poll_plan
from actors.device.link import DeviceError, LinkDownError, LinkError, ModbusLink
from actors.device.planner import Block
from actors.device.profile import Profile, load_profile, profile_names
from actors.device.sunspec import SunSpecError, build_profile, discover

MAX_HOSTS = 256
DEFAULT_UNITS = (1, 2, 3, 100, 126, 247)


@dataclass(frozen=True)
class Found:
    host: str
    port: int
    unit_id: int
    profile: str
    confidence: str  # "sunspec", "match" (identity rule) or "candidate" (identity registers readable)
    manufacturer: str | None = None
    model: str | None = None
    serial: str | None = None
    score: int = 0  # higher is likelier; only comparable among the profiles of one unit id
    evidence: tuple[str, ...] = ()  # which registers decided, and how


#: Measurements whose decoded value says whether a profile's map is really there.
PLAUSIBLE = {
    "grid_frequency_hz": (45.0, 65.0, 30),
    "voltage_l1_v": (90.0, 280.0, 10),
    "voltage_l2_v": (90.0, 280.0, 10),
    "voltage_l3_v": (90.0, 280.0, 10),
}
RANK_BASE = {"sunspec": 1000, "match": 500, "candidate": 0}


def parse_target(target: str, default_port: int = 502) -> tuple[list[str], int]:
    """HOST, HOST:PORT or a CIDR range (at most MAX_HOSTS addresses) -> hosts and port."""
    host, port = target, default_port
    if target.count(":") == 1:
        host, _, port_text = target.partition(":")
        if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
            raise ValueError(f"bad port in {target!r}")
        port = int(port_text)
    if "/" in host:
        try:
            network = ipaddress.ip_network(host, strict=False)
        except ValueError as exc:
            raise ValueError(f"bad CIDR range {host!r}: {exc}") from exc
        if network.num_addresses > MAX_HOSTS:
            raise ValueError(f"{host} has {network.num_addresses} addresses; scan at most {MAX_HOSTS} at a time (e.g. a /24)")
        hosts = [str(a) for a in (network.hosts() if network.num_addresses > 2 else network)]
        return hosts, port
    if not host:
        raise ValueError("no host given")
    return [host], port


def vendor_profiles() -> list[Profile]:
    out = []
    for name in profile_names():
        profile = load_profile(name)
        if isinstance(profile, Profile):
            out.append(profile)
    return out


def scan_host(host: str, port: int, units: tuple[int, ...], timeout: float) -> list[Found]:
    """Every device answering on host:port, over one connection; [] when nothing listens."""
    link = ModbusLink({"host": host, "port": port, "timeout": timeout})
    try:
        link.connect()
    except LinkError:
        return []
    found: list[Found] = []
    try:
        for unit in units:
            found.extend(_scan_unit(link, host, port, unit))
    finally:
        link.close()
    return found


def _reconnecting_read(link: ModbusLink, unit: int, function: int, start: int, count: int) -> list[int]:
    if not link.connected:
        link.connect()
    return link.read(unit, function, start, count)


def _scan_unit(link: ModbusLink, host: str, port: int, unit: int) -> list[Found]:
    found: list[Found] = []
    try:
        sunspec = discover(lambda a, c: _reconnecting_read(link, unit, 3, a, c), not_here=(DeviceError,))
        profile = build_profile(sunspec)
        names = {"m1.Mn", "m1.Md", "m1.SN"}
        model1 = next((m for m in sunspec.models if m.id == 1), None)
        ident: dict[str, Any] = {}
        if model1 is not None:
            regs = _reconnecting_read(link, unit, 3, model1.address, model1.length + 2)

            ident = decode_points(profile, (Block(3, model1.address, model1.length + 2),), [regs], names)
        found.append(Found(host, port, unit, "sunspec", "sunspec", ident.get("m1.Mn"), ident.get("m1.Md"), ident.get("m1.SN"),
                           score=RANK_BASE["sunspec"], evidence=(f"SunSpec marker 'SunS' at {sunspec.base}",)))
    except SunSpecError:
        pass
    except LinkDownError:
        return found
    except LinkError:
        return found  # no valid answer from this unit id: nothing there
    for profile in vendor_profiles():
        plan = poll_plan(profile)
        if not plan.identity_blocks:
            continue
        try:
            data = [_reconnecting_read(link, unit, b.function, b.start, b.count) for b in plan.identity_blocks]
        except DeviceError:
            continue
        except LinkError:
            continue
        ident = decode_identity(plan, data)
        if profile.match:
            if str(ident.get("match", "")).startswith(profile.match.get("prefix", "")) and ident.get("match"):
                point = next((p for p in profile.points if p.name == profile.match.get("point")), None)
                rule = f"{profile.match['point']} at {point.address if point else '?'} starts with {profile.match.get('prefix', '')!r}"
                found.append(_scored(link, unit, profile, Found(host, port, unit, profile.name, "match", profile.manufacturer, ident.get("model"), ident.get("serial")), [rule]))
        elif ident.get("serial") and ident.get("serial") != "0":
            found.append(_scored(link, unit, profile, Found(host, port, unit, profile.name, "candidate", profile.manufacturer, ident.get("model"), ident.get("serial")), []))
    return sorted(found, key=lambda f: -f.score)


def _scored(link: ModbusLink, unit: int, profile: Profile, found: Found, evidence: list[str]) -> Found:
    """`found` with its score and the registers that decided it."""
    score = RANK_BASE[found.confidence]
    for name in ("serial", "model"):
        value = getattr(found, name)
        if value is None or not isinstance(value, str) or value.isdigit():
            continue  # a number reads as a number whatever the register holds: no evidence either way
        if _is_text(value):
            score += 20
            evidence.append(f"{name} {value!r} is readable text")
        else:
            score -= 20
            evidence.append(f"{name} is not text")
    plan = poll_plan(profile)
    data: list[list[int] | None] = []
    for block in plan.blocks:
        try:
            data.append(_reconnecting_read(link, unit, block.function, block.start, block.count))
        except LinkError:
            data.append(None)
    values = decode_values(plan, data).values
    for quantity, (low, high, weight) in PLAUSIBLE.items():
        value, point = values.get(quantity), plan.quantities.get(quantity)
        if value is None or point is None:
            continue
        if low <= value <= high:
            score += weight
            evidence.append(f"{quantity} at {point.address} = {value:g}, plausible")
        else:
            score -= weight
            evidence.append(f"{quantity} at {point.address} = {value:g}, outside {low:g}..{high:g}")
    return replace(found, score=score, evidence=tuple(evidence))


def _shown(value: str | None) -> str:
    """A register's text for a terminal: what is not printable becomes '?'."""
    return "?" if not value else "".join(c if " " <= c <= "~" else "?" for c in value)


def _is_text(value: str) -> bool:
    """Printable ASCII with a few letters or digits, as serial numbers and model names are."""
    return all(" " <= c <= "~" for c in value) and sum(c.isalnum() for c in value) >= 3


def scan(target: str, units: tuple[int, ...] = DEFAULT_UNITS, timeout: float = 1.0, concurrency: int = 16, default_port: int = 502) -> list[Found]:
    hosts, port = parse_target(target, default_port)
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(hosts)))) as pool:
        results = pool.map(lambda h: scan_host(h, port, units, timeout), hosts)
        return [f for per_host in results for f in per_host]


# ---------------------------------------------------------------------- CLI
def add_arguments(parser: argparse.ArgumentParser) -> None:
    """`devices` command: its `scan` subcommand."""
    sub = parser.add_subparsers(dest="devices_command", metavar="SUBCOMMAND", required=True)
    p = sub.add_parser("scan", help="find Modbus devices and their profiles", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("target", help="HOST, HOST:PORT or a CIDR range such as 192.168.1.0/24 (at most 256 addresses)")
    p.add_argument("--port", type=int, default=502, help="port when TARGET has none (default 502)")
    p.add_argument("--units", default=",".join(map(str, DEFAULT_UNITS)), help="comma-separated unit ids to try")
    p.add_argument("--timeout", type=float, default=1.0, help="seconds per request (default 1)")
    p.add_argument("--concurrency", type=int, default=16, help="hosts scanned at once (default 16)")
    p.add_argument("--json", action="store_true", help="print one JSON object per device")


def run(args: argparse.Namespace) -> int:
    try:
        units = tuple(int(u) for u in args.units.split(",") if u.strip())
        if not units or not all(0 <= u <= 255 for u in units):
            raise ValueError("unit ids must be 0..255")
        if not 0.05 <= args.timeout <= 30:
            raise ValueError("--timeout must be within 0.05..30 s")
        if not 1 <= args.concurrency <= 64:
            raise ValueError("--concurrency must be within 1..64")
        found = scan(args.target, units, args.timeout, args.concurrency, args.port)
    except ValueError as exc:
        print(f"egw devices scan: {exc}", file=sys.stderr)
        return 2
    best: set[tuple[str, int, int]] = set()
    for f in found:
        first = (f.host, f.port, f.unit_id) not in best
        best.add((f.host, f.port, f.unit_id))
        if args.json:
            print(json.dumps({**asdict(f), "best": first}))
        else:
            marker = "best" if first else "also"
            print(f"{f.host}:{f.port} unit {f.unit_id}: {marker} {f.profile} ({f.confidence}, score {f.score})"
                  f" manufacturer={_shown(f.manufacturer)} model={_shown(f.model)} serial={_shown(f.serial)}")
            for why in f.evidence:
                print(f"    {why}")
    if not found and not args.json:
        print("no devices found")
    return 0 if found else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="egw devices")
    add_arguments(parser)
    return run(parser.parse_args(argv))

if __name__ == "__main__":
    sys.exit(main())
