"""`egw sim inverter|charger|ingest ...`: run one simulator on its own.

Installers use these to check a site's wiring and the gateway's configuration before
real hardware is connected; every simulator also runs inside `egw demo`.
"""

from __future__ import annotations

import argparse
import importlib

SIMULATORS = {
    "inverter": "a Modbus TCP inverter or meter serving any shipped profile, with fault injection",
    "charger": "a scriptable OCPP 1.6-J charge point (normal session, reservation, offline replay, ...)",
    "ingest": "an upload endpoint that verifies signed batches and de-duplicates readings",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("simulator", choices=sorted(SIMULATORS), help="; ".join(f"{k}: {v}" for k, v in SIMULATORS.items()))
    parser.add_argument("options", nargs=argparse.REMAINDER, help="the simulator's own options (egw sim NAME --help)")


def run(args: argparse.Namespace) -> int:
    module = importlib.import_module(f"simulators.{args.simulator}.__main__")
    return int(module.main(args.options) or 0)
