"""`python -m simulators.inverter --profile NAME --port N`: serve a simulated device until Ctrl-C.

Prints one JSON line with where it listens, so scripts (and the demo) can read the port
when `--port 0` lets the system pick one.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading

from actors.device.profile import ProfileError, profile_names
from simulators.inverter.server import InverterSimulator, describe
from supervisor.clihelp import HelpFormatter, examples


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="egw sim inverter", formatter_class=HelpFormatter, epilog=examples("egw sim inverter --profile sunspec --port 1502", "egw sim inverter --profile huawei_sun2000 --port 1503 --units 1,2"), description="Modbus TCP inverter/meter simulator")
    add_arguments(parser)
    return parser.parse_args(argv)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--profile", required=True, help=f"one of: {', '.join(profile_names())}")
    parser.add_argument("--port", type=int, default=5020, help="TCP port (0: pick a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default loopback)")
    parser.add_argument("--serial-port", help="serve Modbus RTU on this serial device instead of TCP")
    parser.add_argument("--baudrate", type=int, default=19200, help="RTU baud rate (default 19200)")
    parser.add_argument("--units", default="", help="comma-separated unit ids (default: the profile's)")
    parser.add_argument("--peak-w", type=float, default=5000.0, help="PV peak power of the first unit")
    parser.add_argument("--delay", type=float, default=0.0, help="fault: answer every request this many seconds late")
    parser.add_argument("--exception-code", type=int, default=0, help="fault: answer every request with this Modbus exception code")
    parser.add_argument("--garbage", type=int, default=0, help="fault: replace the first N responses with random bytes")


def run(args: argparse.Namespace) -> int:
    units = tuple(int(u) for u in args.units.split(",") if u.strip()) or None
    try:
        sim = InverterSimulator(args.profile, port=args.port, units=units, host=args.host, peak_w=args.peak_w, serial_port=args.serial_port, baudrate=args.baudrate)
    except ProfileError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    sim.faults.delay_s, sim.faults.exception_code, sim.faults.garbage = args.delay, args.exception_code, args.garbage
    try:
        sim.start()
    except OSError as exc:
        print(f"error: cannot listen on {args.serial_port or f'{args.host}:{args.port}'}: {exc}", file=sys.stderr)
        return 1
    print(json.dumps({"listening": describe(sim)}), flush=True)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    stop.wait()
    sim.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    return run(parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
