"""The `egw` command line.

    egw run --config gateway.toml      run the gateway on real devices
    egw demo                           run it on simulated inverters, a charger and an ingest endpoint
    egw config [--table]               show the effective configuration and where each value came from
    egw sim inverter|charger|ingest    run one simulator on its own (for installers checking a site)
    egw devices scan HOST[:PORT]       find Modbus devices and their profiles
    egw status | token | watch TOPIC   ask a running gateway

Settings come from built-in defaults, then the TOML file, then EGW_* environment
variables, then flags; `egw config` shows the result.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from collections.abc import Sequence

from supervisor.clihelp import HelpFormatter, examples, use_help_formatter
from supervisor.config import SETTINGS, ConfigError, GatewayConfig, error_text, load_config, settings_table
from supervisor.tree import check_config

# Subcommands that live with the part of the gateway they talk to: (name, module, help).
# Each module offers add_arguments(parser) and run(args) -> int.
PLUGGED_COMMANDS: tuple[tuple[str, str, str], ...] = (
    ("status", "actors.api.cli", "show a running gateway's actors, devices, outbox and chargers"),
    ("token", "actors.api.token_cli", "print the API token for write requests (created on first start)"),
    ("ble", "actors.ble.cli", "print the BLE setup code for the gateway's label; show, open or close the provisioning window"),
    ("devices", "actors.device.scan", "find Modbus devices on the network and their profiles"),
    ("outbox", "actors.api.outbox_cli", "list the batches a receiver refused for good, and send them again"),
    ("chargers", "actors.api.charger_cli", "add, key, accept, block and remove chargers; manage and sync the local idTag list"),
    ("watch", "actors.live.cli", "print a live feed: transaction/<id>, charger/<id>, device/<id>, loadpoint/<id> or gateway"),
    ("sim", "simulators.cli", "run one simulator on its own: inverter, charger or ingest"),
    ("ingest", "fleet.cli", "the fleet receiver: serve workers (HTTP, MQTT) into PostgreSQL, register gateway keys, migrate, status"),
)


# One or more example command lines per subcommand, shown at the end of its --help.
EXAMPLES: dict[str, tuple[str, ...]] = {
    "run": ("egw run --config /etc/egw/gateway.toml", "EGW_DATA_DIR=/data egw run --api-port 8081"),
    "demo": ("egw demo", "egw demo --data-dir /tmp/egw-demo --api-port 8081"),
    "config": ("egw config --config gateway.toml", "egw config --check gateway.toml", "egw config --table"),
    "status": ("egw status", "egw status --json --url http://192.168.1.10:8080"),
    "token": ("egw token --config /etc/egw/gateway.toml", 'curl -H "Authorization: Bearer $(egw token)" -X POST http://127.0.0.1:8080/api/...'),
    "ble": ("egw ble code", "egw ble window open --minutes 15"),
    "devices": ("egw devices scan 192.168.1.40", "egw devices scan 192.168.1.0/24 --units 1,2"),
    "outbox": ("egw outbox dead-letters", "egw outbox resend fleet"),
    "chargers": ("egw chargers list", "egw chargers add CP1 --key-stdin", "egw chargers list --json"),
    "watch": ("egw watch device/pv-roof", "egw watch charger/DEMO-CP1 --json"),
    "ingest": ("egw ingest migrate --db postgresql://ingest@db/fleet", "egw ingest register --db postgresql://ingest@db/fleet gateway_key.pub.pem", "egw ingest serve --db postgresql://ingest@db/fleet --mqtt mqtt://broker:1883"),
    "sim": ("egw sim inverter --profile sunspec --port 1502", "egw sim charger --url ws://127.0.0.1:9000/ocpp/CP1 --scenario normal", "egw sim ingest --port 8088 --db /tmp/ingest.db"),
}


def _default(key: str) -> str:
    return str(next(s.default for s in SETTINGS if s.key == key))


def _common_flags(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", metavar="FILE", help="TOML configuration file (default: none; every key is optional)")
    parser.add_argument("--data-dir", metavar="DIR", help=f"data directory (env EGW_DATA_DIR; default: {_default('data_dir')})")
    parser.add_argument("--api-port", type=int, metavar="PORT", help=f"REST API port (env EGW_API_PORT; default: {_default('api_port')})")
    parser.add_argument("--ocpp-port", type=int, metavar="PORT", help=f"OCPP websocket port (env EGW_OCPP_PORT; default: {_default('ocpp_port')})")
    parser.add_argument("--actor-port", type=int, metavar="PORT", help=f"loopback port of the actor system's admin (env EGW_ACTOR_PORT; default: {_default('actor_port')})")
    parser.add_argument("--log-level", metavar="LEVEL", help=f"DEBUG, INFO, WARNING or ERROR (env EGW_LOG_LEVEL; default: {_default('log_level')})")


def _overrides(args: argparse.Namespace) -> dict:
    return {key: getattr(args, key, None) for key in ("data_dir", "api_port", "ocpp_port", "actor_port", "log_level")}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="egw", description=__doc__, formatter_class=HelpFormatter)
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    run = commands.add_parser("run", help="run the gateway", epilog=examples(*EXAMPLES["run"]), description="Run the gateway until SIGTERM/SIGINT (exit 0) or until its root supervisor gives up (exit 1).")
    _common_flags(run)
    demo = commands.add_parser("demo", help="run the gateway on simulated devices", epilog=examples(*EXAMPLES["demo"]), description="Run the gateway with simulated inverters, a simulated charger and a local ingest endpoint, so data flows without hardware.")
    _common_flags(demo)
    show = commands.add_parser("config", help="show the effective configuration", epilog=examples(*EXAMPLES["config"]), description="Print the effective configuration as JSON (secrets redacted) with the source of each value.")
    _common_flags(show)
    show.add_argument("--table", action="store_true", help="print the table of EGW_* variables instead")
    show.add_argument("--check", metavar="FILE", help="validate FILE (and the EGW_* variables) without starting: exit 0 and a one-line summary, or 2 and every error")

    for name, module, help_text in PLUGGED_COMMANDS:
        sub = commands.add_parser(name, help=help_text, description=help_text, epilog=examples(*EXAMPLES.get(name, ())) if name in EXAMPLES else None)
        importlib.import_module(module).add_arguments(sub)
        sub.set_defaults(plugged=module)
    use_help_formatter(parser)
    return parser


def summary(config: GatewayConfig) -> str:
    """The one line `egw config --check` prints for a usable configuration."""
    tls = "wss" if config.ocpp_tls_cert else "ws"
    return (
        f"ok: {len(config.devices)} device(s), {len(config.uploads)} upload endpoint(s), "
        f"API on {config.api_host}:{config.api_port}, OCPP on {tls}://{config.ocpp_host}:{config.ocpp_port}, data dir {config.data_dir}"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if getattr(args, "plugged", None):
        return int(importlib.import_module(args.plugged).run(args) or 0)
    if args.command == "config" and args.table:
        print(settings_table())
        return 0
    if args.command == "config" and args.check:
        args.config = args.check
    try:
        if args.command == "demo":
            from supervisor.demo import demo_config

            config = demo_config(args.config, _overrides(args))
        else:
            config = load_config(args.config, overrides=_overrides(args))
        for warning in config.warnings:
            print(f"egw: warning: {warning}", file=sys.stderr)
        check_config(config)
    except ConfigError as exc:
        print(error_text(exc), file=sys.stderr)
        return 2
    if args.command == "config":
        if args.check:
            print(f"{args.check}: {summary(config)}")
        else:
            print(json.dumps({"values": config.redacted(), "sources": dict(config.sources)}, indent=2))
        return 0
    from supervisor.launcher import Launcher

    environment = None
    if args.command == "demo":
        from supervisor.demo import DemoEnvironment

        environment = DemoEnvironment(config)
    return Launcher(config, environment=environment).run()


if __name__ == "__main__":
    sys.exit(main())
