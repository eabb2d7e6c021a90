"""Gateway configuration: built-in defaults < TOML file < EGW_* environment < command-line flags.

Every setting is declared once in `SETTINGS` with its type, default and meaning; the
file keys, the environment variable names (`EGW_` + upper-case key, which is how
balena hands device and fleet variables to the container) and the README's table all
come from that one list. Errors name the source and the key, e.g.
`config.toml: api_port: expected an integer, got 'eighty'` or
`gateway.toml: devices[2] (meter).port: must be an integer in 1..65535, got 'x'`.

A configuration error is something only a person can fix, so the gateway exits 2 with
every error it found, never with a traceback and exit 1 (which means "restart me" and
would turn a typo into a restart loop). `load_config` checks the settings themselves;
`check_config` also runs the validators of the parts that read them (devices, upload
endpoints, OCPP TLS, the data dir), so `egw run` and `egw config --check` refuse the
same files.
"""

from __future__ import annotations

import difflib
import json
import os
import tempfile
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from supervisor.redaction import REDACTED, redact

ENV_PREFIX = "EGW_"
# A schema-valid StopTransaction with 12 h of transactionData is ~174 KB: never below 1 MiB.
# Above 8 MiB one frame would outgrow what a connection may hold while its actor starts.
MIN_OCPP_FRAME_BYTES = 1024 * 1024
MAX_OCPP_FRAME_BYTES = 8 * 1024 * 1024


class ConfigError(ValueError):
    """Configuration values are missing, malformed or out of range; each message says where.

    Carries every error found (one per line in str()), so a user fixes a file in one go
    instead of one error per start.
    """

    def __init__(self, *errors: str) -> None:
        self.errors: tuple[str, ...] = errors
        super().__init__("\n".join(errors))


@dataclass(frozen=True)
class Setting:
    key: str
    type: type
    default: Any
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("gateway_name", str, "egw", "Name shown in status and advertised over BLE"),
    Setting("data_dir", str, "data", "Directory for the database, device key, API token and logs (a volume in containers: /data)"),
    Setting("log_level", str, "INFO", "Logging level: DEBUG, INFO, WARNING or ERROR"),
    Setting("actor_port", int, 19000, "Loopback-only TCP port of the actor system's admin (never exposed)"),
    Setting("api_host", str, "0.0.0.0", "Address the REST API listens on"),
    Setting("api_port", int, 8080, "REST API port"),
    Setting("api_max_body_kb", int, 64, "Largest accepted REST request body, in KiB (413 above)"),
    Setting("ocpp_host", str, "0.0.0.0", "Address the OCPP central system listens on"),
    Setting("ocpp_port", int, 9000, "OCPP 1.6-J websocket port (ws://host:port/ocpp/{chargePointId})"),
    Setting("ocpp_unknown_chargers", str, "reject", "Unknown chargers: 'reject' or 'accept' (accept and register)"),
    Setting("ocpp_heartbeat_interval", int, 300, "Heartbeat interval given to chargers in BootNotification, seconds"),
    Setting("ocpp_register_as", str, "Accepted", "Registration status given to auto-registered chargers: Accepted or Pending"),
    Setting("ocpp_unknown_id_tags", str, "accept", "idTags not in the local list: 'accept' or 'reject'"),
    Setting("ocpp_ping_interval", float, 30.0, "Websocket ping interval towards chargers, seconds"),
    Setting("ocpp_max_frame_bytes", int, 1048576, "Largest accepted OCPP frame, bytes (1 MiB to 8 MiB); a larger one closes the connection with 1009"),
    Setting("ocpp_handshake_timeout", float, 10.0, "Seconds a new OCPP connection has to complete its websocket handshake before it is closed"),
    Setting("ocpp_startup_hold_frames", int, 1000, "Frames held per connection while its charger actor starts; past it each CALL is answered 'try again' (GenericError)"),
    Setting("ocpp_boot_retry_interval", int, 60, "Retry interval given to chargers whose boot is Pending/Rejected, seconds"),
    Setting("ocpp_call_timeout", float, 30.0, "Seconds to wait for a charger's answer to a central-initiated call"),
    Setting("ocpp_call_queue_limit", int, 16, "Central-initiated calls queued per charger before new ones are refused"),
    Setting("ocpp_tls_cert", str, "", "PEM certificate for OCPP over TLS (security profile 2); empty: plain ws"),
    Setting("ocpp_tls_key", str, "", "PEM private key for OCPP over TLS", secret=True),
    Setting("live_metrics_db_interval", float, 10.0, "Seconds between live-session database updates from MeterValues"),
    Setting("gateway_id", str, "", "Identity in uploads; empty: the serial derived from the device key"),
    Setting("devices", list, [], "Inverters and meters: list of {id, profile|sunspec, host, port, unit_id, poll_interval, ...} (JSON in the environment)"),
    Setting("uploads", list, [], "Upload endpoints: list of {name, url} (JSON in the environment)"),
    Setting("loadpoints", list, [], "Solar-surplus charging: list of {id, charger, connector, grid_meter, battery, pv, loads, min_current, max_current, phases, mode} (docs/energy.md; JSON in the environment)"),
    Setting("energy_interval", float, 10.0, "Seconds between the energy manager's decisions (limits sent to chargers)"),
    Setting("energy_main_fuse_a", float, 0.0, "The site's main fuse per phase, A: chargers are never given more than it leaves (0: no limit)"),
    Setting("upload_batch_max", int, 1000, "Most readings in one upload batch"),
    Setting("upload_batch_max_kb", int, 512, "Largest upload batch, KiB"),
    Setting("outbox_budget_mb", int, 512, "Outbox byte budget before old data is downsampled, then dropped"),
    Setting("outbox_min_free_pct", float, 5.0, "Free-disk watermark (percent) that triggers the same degradation"),
    Setting("harvest_commit_window_s", float, 1.0, "Group commit: readings arriving within this many seconds share one SQLite commit (one fsync)"),
    Setting("ble_enabled", bool, True, "Run the BLE provisioning service (reports 'unavailable' without an adapter)"),
    Setting("wifi_backend", str, "networkmanager", "Wi-Fi provisioning: networkmanager (system D-Bus), fake (in memory, for demos) or none"),
    Setting("wifi_dbus_address", str, "", "D-Bus address of NetworkManager's bus; empty: the system bus"),
    Setting("ble_adapter", str, "hci0", "Bluetooth adapter to serve on"),
    Setting("ble_mtu", int, 185, "ATT MTU assumed for paging tunnel responses"),
    Setting("ble_dbus_address", str, "", "D-Bus address of BlueZ's bus; empty: the system bus"),
    Setting("ble_window_minutes", int, 15, "Minutes the BLE provisioning window stays open once opened (first start without Wi-Fi, or a trigger with the API token)"),
    Setting("restart_max", int, 5, "Root supervisor: at most this many restarts ..."),
    Setting("restart_period", float, 60.0, "... within this many seconds, else the gateway exits non-zero"),
    Setting("heartbeat_interval", float, 3.0, "Seconds between supervisor heartbeats to each actor (each costs every actor two messages)"),
    Setting("heartbeat_timeout", float, 10.0, "An actor silent this long is killed and restarted"),
    Setting("extra_children", list, [], "Additional actors under the root supervisor: list of {name, actor, config} (plugins, diagnostics)"),
)
_BY_KEY = {s.key: s for s in SETTINGS}
_SIMULATION_KEYS = {"demo"}  # sections some files carry for `egw demo`; not settings


@dataclass(frozen=True)
class GatewayConfig:
    """The effective configuration; `values` holds every setting, `sources` where each came from."""

    values: Mapping[str, Any]
    sources: Mapping[str, str]
    warnings: tuple[str, ...] = ()  # e.g. an EGW_* variable that is not a setting (a typo is silently ignored otherwise)

    def __getattr__(self, key: str) -> Any:
        try:
            return self.values[key]
        except KeyError:
            raise AttributeError(key) from None

    def redacted(self) -> dict[str, Any]:
        """The configuration as `egw config` shows it: secrets replaced by '***' when set.

        Secret settings whole, and inside the others whatever `supervisor.redaction.redact`
        finds: an upload URL's password and query values, a field named like a secret.
        """
        shown = {}
        for setting in SETTINGS:
            value = self.values[setting.key]
            shown[setting.key] = REDACTED if setting.secret and value else redact(value)
        return shown

    def with_values(self, **changes: Any) -> GatewayConfig:
        values = dict(self.values)
        values.update(changes)
        sources = dict(self.sources)
        sources.update({k: "runtime" for k in changes})
        return GatewayConfig(values, sources, self.warnings)


def coerce(setting: Setting, raw: Any, source: str) -> Any:
    """Convert `raw` (from TOML, the environment or a flag) to the setting's type."""
    where = f"{source}: {setting.key}"
    kind = setting.type
    if kind is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.strip().lower() in ("1", "true", "yes", "on"):
            return True
        if isinstance(raw, str) and raw.strip().lower() in ("0", "false", "no", "off"):
            return False
        raise ConfigError(f"{where}: expected true or false, got {raw!r}")
    if kind is int:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected an integer, got {raw!r}")
        try:
            value = int(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected an integer, got {raw!r}") from None
        if isinstance(raw, float) and raw != value:
            raise ConfigError(f"{where}: expected an integer, got {raw!r}")
        if key_is_port(setting.key) and not 0 <= value <= 65535:
            raise ConfigError(f"{where}: port {value} is outside 0-65535")
        return value
    if kind is float:
        if isinstance(raw, bool):
            raise ConfigError(f"{where}: expected a number, got {raw!r}")
        try:
            return float(raw)
        except (TypeError, ValueError):
            raise ConfigError(f"{where}: expected a number, got {raw!r}") from None
    if kind is list:
        if isinstance(raw, str):
            try:
                raw = json.loads(raw)
            except json.JSONDecodeError as exc:
                raise ConfigError(f"{where}: expected a JSON list: {exc}") from None
        if not isinstance(raw, list) or not all(isinstance(item, dict) for item in raw):
            raise ConfigError(f"{where}: expected a list of tables/objects, got {type(raw).__name__}")
        return raw
    if not isinstance(raw, str):
        raise ConfigError(f"{where}: expected a string, got {raw!r}")
    return raw


def key_is_port(key: str) -> bool:
    return key.endswith("_port")


def load_config(
    path: str | Path | None = None,
    env: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
    base: Mapping[str, Any] | None = None,
) -> GatewayConfig:
    """Merge the layers. `base` replaces the built-in defaults (the demo uses it).

    Raises ConfigError with every error of every layer, each naming its source and key.
    """
    env = os.environ if env is None else env
    values: dict[str, Any] = {s.key: s.default for s in SETTINGS}
    sources = {s.key: "default" for s in SETTINGS}
    errors: list[str] = []

    def put(key: str, raw: Any, source: str) -> None:
        try:
            values[key] = coerce(_setting(key, source), raw, source)
        except ConfigError as exc:
            errors.extend(exc.errors)
        else:
            sources[key] = source

    for key, raw in (base or {}).items():
        put(key, raw, "built-in")
    if path is not None:
        name = str(path)
        try:
            document = tomllib.loads(Path(path).read_text())
        except FileNotFoundError:
            raise ConfigError(f"{name}: no such file") from None
        except IsADirectoryError:
            raise ConfigError(f"{name}: is a directory, expected a TOML file") from None
        except PermissionError:
            raise ConfigError(f"{name}: permission denied (run as the gateway's user)") from None
        except UnicodeDecodeError as exc:
            raise ConfigError(f"{name}: not UTF-8 text: {exc.reason} at byte {exc.start}") from None
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{name}: not valid TOML: {exc}") from None
        for key, raw in document.items():
            if key not in _SIMULATION_KEYS:
                put(key, raw, name)
    for setting in SETTINGS:
        var = env_var(setting.key)
        if var in env and env[var] != "":
            put(setting.key, env[var], var)
    for key, raw in (overrides or {}).items():
        if raw is not None:
            put(key, raw, "--" + key.replace("_", "-"))
    errors.extend(_check(values, sources))
    if errors:
        raise ConfigError(*errors)
    return GatewayConfig(values, sources, tuple(unknown_env_warnings(env)))


def env_var(key: str) -> str:
    return ENV_PREFIX + key.upper()


# EGW_* variables that are read outside the settings (tests and benchmarks), never warned about
_OTHER_ENV_VARS = {"EGW_BLE_HARDWARE"}
_OTHER_ENV_PREFIXES = ("EGW_BENCH_",)


def unknown_env_warnings(env: Mapping[str, str]) -> list[str]:
    """A warning per EGW_* variable that is no setting, naming the closest one (difflib).

    An unknown variable is ignored, so a typo such as EGW_API_PROT would otherwise leave
    the default in force without a word.
    """
    known = [env_var(s.key) for s in SETTINGS]
    warnings = []
    for var in sorted(env):
        if not var.startswith(ENV_PREFIX) or var in known or var in _OTHER_ENV_VARS or var.startswith(_OTHER_ENV_PREFIXES):
            continue
        close = difflib.get_close_matches(var, known, n=1, cutoff=0.6)
        hint = f"; did you mean {close[0]}?" if close else f"; see `egw config --table` for the {len(known)} settings"
        warnings.append(f"{var}: not a setting, ignored{hint}")
    return warnings


def _setting(key: str, source: str) -> Setting:
    try:
        return _BY_KEY[key]
    except KeyError:
        close = difflib.get_close_matches(key, list(_BY_KEY), n=3, cutoff=0.6)
        hint = f" (did you mean {' or '.join(close)}?)" if close else " (see `egw config --table`)"
        raise ConfigError(f"{source}: {key}: unknown setting{hint}") from None


def _check(values: Mapping[str, Any], sources: Mapping[str, str]) -> list[str]:
    """Range and choice checks of the merged values; each error names the key's source."""
    errors: list[str] = []

    def bad(key: str, problem: str) -> None:
        errors.append(f"{sources.get(key, 'default')}: {key}: {problem}")

    if values["ocpp_unknown_chargers"] not in ("reject", "accept"):
        bad("ocpp_unknown_chargers", f"must be 'reject' or 'accept', got {values['ocpp_unknown_chargers']!r}")
    if values["wifi_backend"] not in ("networkmanager", "fake", "none"):
        bad("wifi_backend", f"must be 'networkmanager', 'fake' or 'none', got {values['wifi_backend']!r}")
    if values["log_level"].upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        bad("log_level", f"must be DEBUG, INFO, WARNING or ERROR, got {values['log_level']!r}")
    low, high = MIN_OCPP_FRAME_BYTES, MAX_OCPP_FRAME_BYTES
    if not low <= values["ocpp_max_frame_bytes"] <= high:
        bad("ocpp_max_frame_bytes", f"must be between {low} (1 MiB) and {high} (8 MiB), got {values['ocpp_max_frame_bytes']}")
    if values["ocpp_startup_hold_frames"] < 1:
        bad("ocpp_startup_hold_frames", "must be at least 1 (the BootNotification is always held)")
    for key in ("restart_max",):
        if values[key] < 0:
            bad(key, f"must not be negative, got {values[key]}")
    for key in ("restart_period", "heartbeat_interval", "heartbeat_timeout", "live_metrics_db_interval", "ocpp_handshake_timeout"):
        if values[key] <= 0:
            bad(key, f"must be positive, got {values[key]}")
    if not values["data_dir"]:
        bad("data_dir", "must be a directory path, got ''")
    seen: set[str] = set()
    for index, child in enumerate(values["extra_children"]):
        supervisor = child.get("kind") == "supervisor"
        fields = ("name",) if supervisor else ("name", "actor")
        missing = [field for field in fields if not isinstance(child.get(field), str) or not child.get(field)]
        for field in missing:
            bad(f"extra_children[{index}].{field}", "required string")
        if missing:
            continue
        if child["name"] in seen:
            bad(f"extra_children[{index}].name", f"duplicate {child['name']!r}")
        seen.add(child["name"])
        if supervisor:  # a configured subtree: its config is a supervisor spec, checked here
            from supervisor.spec import spec_from_mapping

            try:
                spec_from_mapping(child.get("config") or {}, f"extra_children[{index}].config")
            except ValueError as exc:
                errors.append(f"{sources.get('extra_children', 'default')}: {exc}")
    return errors


def data_dir_problem(path: str | os.PathLike[str], *, create: bool) -> str | None:
    """Why `path` cannot be the data dir (not a directory, cannot be created, not writable); None when usable.

    With `create`, a missing directory is created (0700) as the gateway does at start-up;
    without it, the nearest existing parent must be a writable directory.
    """
    from storage.files import make_private_dir

    target = Path(path)
    if target.exists() and not target.is_dir():
        return f"{target} is not a directory (expected a directory for the database, key and token)"
    if not target.exists():
        if not create:
            parent = next((p for p in target.parents if p.exists()), Path("."))
            if not parent.is_dir():
                return f"cannot create {target}: {parent} is not a directory"
            try:  # os.access() says yes to root even where nothing can be created: write for real
                with tempfile.TemporaryFile(dir=parent):
                    pass
            except OSError as exc:
                return f"cannot create {target}: {parent} is not writable: {exc.strerror or exc}"
            return None
        try:
            make_private_dir(target)
        except OSError as exc:
            return f"cannot create {target}: {exc.strerror or exc}"
    try:
        with tempfile.TemporaryFile(dir=target):
            pass
    except OSError as exc:
        return f"{target} is not writable: {exc.strerror or exc}"
    return None


def prepare_data_dir(config: GatewayConfig) -> None:
    """Create the data dir (0700) and prove it writable, or raise ConfigError naming it and its source."""
    problem = data_dir_problem(config.data_dir, create=True)
    if problem:
        raise ConfigError(f"{config.sources.get('data_dir', 'default')}: data_dir: {problem}")


def error_text(exc: ConfigError, command: str = "egw") -> str:
    """The lines a command prints for a configuration error (one per error, no traceback)."""
    return "\n".join(f"{command}: configuration error: {error}" for error in exc.errors)


def settings_table() -> str:
    """The Markdown table of EGW_* variables (README's 'Settings' section is generated from it)."""
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for s in SETTINGS:
        default = json.dumps(s.default) if isinstance(s.default, list) else str(s.default)
        rows.append(f"| `{ENV_PREFIX}{s.key.upper()}` | `{default}` | {s.help} |")
    return "\n".join(rows)
