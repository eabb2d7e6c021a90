"""Device settings -> validated, normalised settings -> supervisor child specs.

A device's settings use the same names everywhere (config file, REST, CLI): `id`,
`profile` (or `sunspec = true`), `host`, `port`, `unit_id`, `poll_interval`, `timeout`,
and for Modbus RTU `serial_port`, `baudrate`, `parity`, `stopbits`; optionally
`backoff_cap` (seconds, default 60) and `raw_interval` (seconds, default 300: how often a
reading also carries the raw registers it was decoded from; 0 = every reading).

Devices behind one endpoint (same host:port, or same serial port) share one connection:
loggers and dongles often accept a single client, and a serial bus carries one request at
a time. So each endpoint gets one actor polling all its unit ids in turn. An endpoint with
one device gets an actor named after the device; a shared endpoint gets one named after
all its devices joined with "+", and publishes each device's state under `devices`.
"""

from __future__ import annotations

import re
from typing import Any

from actors.device.profile import Profile, ProfileError, load_profile, profile_names
from supervisor.spec import ChildSpec, SupervisorSpec, supervisor_child

DEVICE_ACTOR = "actors.device.actor.DeviceActor"
# Raw registers double the bytes a reading costs on flash; values are what counts, the raw
# words are for diagnosis: every few minutes, on the first reading and on any flagged one.
DEFAULT_RAW_INTERVAL_S = 300.0
KNOWN_KEYS = {"id", "profile", "sunspec", "host", "port", "unit_id", "poll_interval", "timeout", "serial_port", "baudrate", "parity", "stopbits", "backoff_cap", "raw_interval"}
MAX_TIMEOUT = 3.0  # one request (plus the 1 s run budget) must fit well inside the heartbeat timeout (10 s by default)
# One rule for every way a device is added: the config file (here) and REST (actors/api/schemas.py
# builds the DeviceSettings schema from these, so the two cannot disagree).
# 1-64 letters, digits, "_", "." or "-", starting with a letter or digit; no ":" and no "+" ("+"
# joins the ids of a shared endpoint's actor). (?!\n) because "$" also matches before a final
# newline, in Python's re as in jsonschema's pattern check: "inv1\n" is not an id.
ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}(?!\n)$"
_ID = re.compile(ID_PATTERN)
ID_MAX_LENGTH = 64
# setting -> (lowest, highest, default) inclusive; unit_id's default is the profile's
NUMBERS: dict[str, tuple[float, float, float | None]] = {
    "unit_id": (0, 255, None),
    # Sub-second intervals suit meters on a fast LAN (and benchmarks); 1 ms is the floor.
    "poll_interval": (0.001, 86400, 10.0),
    "timeout": (0.05, MAX_TIMEOUT, 1.0),
    "backoff_cap": (0.1, 3600, 60.0),
    "raw_interval": (0, 86400, DEFAULT_RAW_INTERVAL_S),
    "port": (1, 65535, 502),
}
INTEGERS = ("unit_id", "port")
BAUDRATES = (1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)
PARITIES = ("N", "E", "O")
STOPBITS = (1, 2)


class DeviceConfigError(ValueError):
    """A device's settings are invalid; the message names the device and the setting."""


def _number(settings: dict, key: str, where: str, default: float | None = None) -> Any:
    low, high, fallback = NUMBERS[key]
    integer = key in INTEGERS
    value = settings.get(key, fallback if default is None else default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (integer and not isinstance(value, int)) or not low <= value <= high:
        kind = "an integer" if integer else "a number"
        raise DeviceConfigError(f"{where}.{key}: must be {kind} in {low:g}..{high:g}, got {value!r}")
    return value


def validate_device(settings: Any, index: int = 0) -> dict[str, Any]:
    """Check one device's settings and return them with defaults filled in."""
    where = f"devices[{index}]"
    if not isinstance(settings, dict):
        raise DeviceConfigError(f"{where}: must be a table of settings, got {type(settings).__name__}")
    device_id = settings.get("id")
    if not isinstance(device_id, str) or not _ID.match(device_id):
        raise DeviceConfigError(f"{where}.id: must be 1-64 letters, digits, '_', '.', '-' (starting with a letter or digit), got {device_id!r}")
    where = f"{where} ({device_id})"
    unknown = sorted(set(settings) - KNOWN_KEYS)
    if unknown:
        raise DeviceConfigError(f"{where}: unknown setting(s) {', '.join(unknown)} (known: {', '.join(sorted(KNOWN_KEYS))})")
    out: dict[str, Any] = {"id": device_id}
    sunspec = settings.get("sunspec", False)
    if not isinstance(sunspec, bool):
        raise DeviceConfigError(f"{where}.sunspec: must be true or false, got {sunspec!r}")
    profile_name = settings.get("profile")
    default_unit = 1
    if sunspec or profile_name == "sunspec":
        if profile_name not in (None, "sunspec"):
            raise DeviceConfigError(f"{where}: give either profile or sunspec = true, not both")
        out["sunspec"] = True
        out["profile"] = "sunspec"
    else:
        if not isinstance(profile_name, str):
            raise DeviceConfigError(f"{where}.profile: required (one of {', '.join(profile_names())}) unless sunspec = true")
        if profile_name not in profile_names():
            raise DeviceConfigError(f"{where}.profile: unknown profile {profile_name!r} (known: {', '.join(profile_names())})")
        try:
            profile = load_profile(profile_name)
        except ProfileError as exc:
            raise DeviceConfigError(f"{where}.profile: {exc}") from exc
        assert isinstance(profile, Profile)
        default_unit = profile.unit_id
        out["profile"] = profile_name
    out["unit_id"] = _number(settings, "unit_id", where, default_unit)
    for key in ("poll_interval", "timeout", "backoff_cap", "raw_interval"):
        out[key] = float(_number(settings, key, where))
    if settings.get("serial_port") is not None:
        if "host" in settings:
            raise DeviceConfigError(f"{where}: give either host (Modbus TCP) or serial_port (Modbus RTU), not both")
        if not isinstance(settings["serial_port"], str) or not settings["serial_port"]:
            raise DeviceConfigError(f"{where}.serial_port: must be a device path such as /dev/ttyUSB0")
        out["serial_port"] = settings["serial_port"]
        baud = settings.get("baudrate", 9600)
        if baud not in BAUDRATES or isinstance(baud, bool):
            raise DeviceConfigError(f"{where}.baudrate: must be a standard rate (1200..115200), got {baud!r}")
        parity = settings.get("parity", "N")
        if parity not in PARITIES:
            raise DeviceConfigError(f"{where}.parity: must be N, E or O, got {parity!r}")
        stopbits = settings.get("stopbits", 1)
        if stopbits not in STOPBITS or isinstance(stopbits, bool):
            raise DeviceConfigError(f"{where}.stopbits: must be 1 or 2, got {stopbits!r}")
        out.update(baudrate=baud, parity=parity, stopbits=stopbits)
    else:
        host = settings.get("host")
        if not isinstance(host, str) or not host or any(c.isspace() for c in host):
            raise DeviceConfigError(f"{where}.host: required for Modbus TCP (a host name or IP address), got {host!r}")
        for key in ("baudrate", "parity", "stopbits"):
            if key in settings:
                raise DeviceConfigError(f"{where}.{key}: only for Modbus RTU (serial_port)")
        out["host"] = host
        out["port"] = _number(settings, "port", where)
    return out


def endpoint_key(settings: dict[str, Any]) -> tuple:
    if "serial_port" in settings:
        return ("rtu", settings["serial_port"])
    return ("tcp", settings["host"].lower(), settings["port"])


def group_devices(devices: list[Any]) -> list[list[dict[str, Any]]]:
    """Validate every device and group them by endpoint (in configuration order)."""
    if not isinstance(devices, list):
        raise DeviceConfigError(f"devices: must be a list, got {type(devices).__name__}")
    groups: dict[tuple, list[dict[str, Any]]] = {}
    seen: set[str] = set()
    for index, raw in enumerate(devices):
        settings = validate_device(raw, index)
        if settings["id"] in seen:
            raise DeviceConfigError(f"devices[{index}].id: duplicate device id {settings['id']!r}")
        seen.add(settings["id"])
        group = groups.setdefault(endpoint_key(settings), [])
        for other in group:
            if other["unit_id"] == settings["unit_id"]:
                raise DeviceConfigError(f"devices[{index}] ({settings['id']}).unit_id: {settings['unit_id']} is already used by {other['id']!r} on the same endpoint")
            if "serial_port" in settings and any(other[k] != settings[k] for k in ("baudrate", "parity", "stopbits")):
                raise DeviceConfigError(f"devices[{index}] ({settings['id']}): serial settings differ from {other['id']!r} on the same port")
        group.append(settings)
    return list(groups.values())


def device_child_specs(devices: list[dict]) -> list[ChildSpec]:
    """One ChildSpec per endpoint: a single device's settings, or {"devices": [...]} when shared."""
    specs = []
    for group in group_devices(devices):
        if len(group) == 1:
            specs.append(ChildSpec(name=group[0]["id"], actor=DEVICE_ACTOR, config=group[0]))
        else:
            specs.append(ChildSpec(name="+".join(d["id"] for d in group), actor=DEVICE_ACTOR, config={"devices": group}))
    return specs


def devices_part(values: dict[str, Any]) -> list[ChildSpec]:
    """The gateway tree's "devices" supervisor (for `supervisor.tree.PARTS`)."""
    devices = values.get("devices", [])
    try:
        children = device_child_specs(devices)
    except DeviceConfigError:
        if values.get("configured_devices") is None:
            raise
        children = _containing_stored_errors(values["configured_devices"], devices)
    return [supervisor_child("devices", SupervisorSpec(strategy="one_for_one", children=tuple(children)))]


def _containing_stored_errors(configured: list[Any], devices: list[Any]) -> list[ChildSpec]:
    """Child specs when a device added over REST (stored by an older version) is no longer valid.

    The configuration file's devices were checked before the tree is built (an error there
    is a configuration error, exit 2) and keep their actors; each stored device that does
    not fit gets a child of its own, which fails alone and is parked as failed (named in
    /api/health and /api/actors) while every other device and part runs on.
    """
    from_file = {str(d.get("id")) for d in configured if isinstance(d, dict)}
    good = [d for d in devices if isinstance(d, dict) and str(d.get("id")) in from_file]
    broken: list[Any] = []
    for device in devices:
        if isinstance(device, dict) and str(device.get("id")) in from_file:
            continue
        try:
            group_devices([*good, device])
            good.append(device)
        except DeviceConfigError:
            broken.append(device)
    specs = device_child_specs(good)
    names = {spec.name for spec in specs}
    for n, device in enumerate(broken):
        wanted = str(device.get("id")) if isinstance(device, dict) else ""
        name = wanted if wanted and _ID.match(wanted) and wanted not in names else f"stored-device-{n + 1}"
        names.add(name)
        specs.append(ChildSpec(name=name, actor=DEVICE_ACTOR, config=device))
    return specs


def reconcile(old: list[dict], new: list[dict]) -> tuple[list[str], list[ChildSpec]]:
    """What the "devices" supervisor must stop and start to go from `old` to `new` settings.

    For adding or removing devices at run time (StopChild for each name, then StartChild
    for each spec). Actors whose endpoint group is unchanged keep running untouched; a
    device joining or leaving a shared endpoint replaces that endpoint's actor. `new` is
    validated first, so a bad change raises DeviceConfigError and nothing is stopped.
    """
    after = {s.name: s for s in device_child_specs(new)}
    before = {s.name: s for s in device_child_specs(old)}
    stop = [name for name, spec in before.items() if name not in after or after[name].config != spec.config]
    start = [spec for name, spec in after.items() if name not in before or before[name].config != spec.config]
    return stop, start


def config_problems(values: dict[str, Any]) -> list[tuple[str, str]]:
    """(setting, problem) for every device the configuration holds, from `validate_device` (for `egw config --check`)."""
    devices = values["devices"]
    errors: list[tuple[str, str]] = []
    for index, raw in enumerate(devices):
        try:
            validate_device(raw, index)
        except DeviceConfigError as exc:
            errors.append(("devices", str(exc)))
    if not errors:  # duplicate ids and unit ids shared on one endpoint
        try:
            group_devices(devices)
        except DeviceConfigError as exc:
            errors.append(("devices", str(exc)))
    return errors
