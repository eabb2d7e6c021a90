"""`python -m simulators.charger --url ws://127.0.0.1:9000/ocpp/CP1 --scenario normal`

Runs one scenario (or repeats it with `--repeat`) and prints each step as a JSON line.
Exit status 0 when the scenario completed, 1 when it failed (refused handshake, a
timeout waiting for the central system, an unexpected reply).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys

import aiohttp

from simulators.charger.scenarios import SCENARIOS, Options, run_scenario
from supervisor.clihelp import HelpFormatter, examples


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="egw sim charger", formatter_class=HelpFormatter, epilog=examples("egw sim charger --url ws://127.0.0.1:9000/ocpp/CP1 --scenario normal"), description="A scriptable OCPP 1.6-J charge point.")
    parser.add_argument("--url", required=True, help="central system URL ending in the chargePointId, e.g. ws://127.0.0.1:9000/ocpp/CP1")
    parser.add_argument("--scenario", choices=sorted(SCENARIOS), default="normal")
    parser.add_argument("--auth-key", help="AuthorizationKey for HTTP Basic (security profile 1)")
    parser.add_argument("--id-tag", default="DEMO-TAG")
    parser.add_argument("--samples", type=int, default=3, help="meter values per session")
    parser.add_argument("--interval", type=float, default=1.0, help="seconds between meter values")
    parser.add_argument("--power", type=float, default=7400.0, help="charging power in W")
    parser.add_argument("--wait", type=float, default=60.0, help="seconds to wait for the central system's requests")
    parser.add_argument("--offline-age", type=float, default=3 * 3600.0, help="age in seconds of the offline session's timestamps")
    parser.add_argument("--repeat", type=int, default=1, help="run the scenario this many times (0: forever)")
    parser.add_argument("--car-max-a", type=float, default=16.0, help="car scenario: the car's own maximum current, A")
    parser.add_argument("--car-phases", type=int, choices=(1, 3), default=3, help="car scenario: phases the car charges on")
    parser.add_argument("--reject-profile", action="append", choices=("zero", "level0_only", "watts_only"), default=[],
                        help="refuse charging profiles like some real chargers: a 0 A limit, a stack level above 0, a limit in A (repeatable)")
    return parser


async def _main(args: argparse.Namespace) -> int:
    options = Options(url=args.url, auth_key=args.auth_key, id_tag=args.id_tag, samples=args.samples, interval=args.interval,
                      power_w=args.power, wait=args.wait, offline_age=args.offline_age, car_max_a=args.car_max_a, car_phases=args.car_phases,
                      reject_profiles=tuple(args.reject_profile))
    run = 0
    while args.repeat == 0 or run < args.repeat:
        run += 1
        try:
            result = await run_scenario(args.scenario, options)
        except aiohttp.WSServerHandshakeError as exc:
            print(json.dumps({"scenario": args.scenario, "error": f"handshake refused: HTTP {exc.status}"}), flush=True)
            return 1
        except (OSError, TimeoutError, asyncio.TimeoutError, ConnectionError) as exc:
            print(json.dumps({"scenario": args.scenario, "error": f"{type(exc).__name__}: {exc}"}), flush=True)
            return 1
        for step in result.steps:
            print(json.dumps({"scenario": result.scenario, "charger": result.charge_point_id, "step": step}), flush=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(_main(build_parser().parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
