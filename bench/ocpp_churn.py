"""OCPP churn and fleet memory: `python -m bench.ocpp_churn [--chargers 200]`.

Measured in the same run, for the gateway's OCPP family as it ships (listener actor, the
`chargers` supervisor, one charger actor per charger, the harvest actor; see bench.ocpp)
and for the bare aiohttp + `ocpp` central system of bench.ocpp as the baseline:

  first connect      N chargers open their websocket and send BootNotification at once
                     (a gateway restart): seconds until the slowest is answered
  turnover           all N hang up, N new ids connect right after: the slowest answer,
                     and how many were not served at all
  memory             PSS of every process of the central system (/proc/PID/smaps_rollup)
                     with N chargers connected
  supervisors        whether `chargers` or `ocpp` was restarted during the run (egw only)

Aims (issue 14): every BootNotification answered within 10 s, no supervisor restarted,
N=200 connected in <= 600 MiB PSS for the whole gateway.
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing
import os
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.dataplane_support import sample_pid  # noqa: E402
from bench.ocpp import _serve_baseline, process_server  # noqa: E402
from simulators.fleet import close_fleet, connect_fleet  # noqa: E402
from supervisor.embedded import free_port  # noqa: E402
from supervisor.procs import descendants  # noqa: E402


def family_pss_mib(pids: list[int]) -> float:
    samples = [sample_pid(pid, pss=True) for pid in pids]
    return sum(s.pss_kb or 0 for s in samples if s) / 1024


async def churn(url: str, n: int, family: callable) -> dict:
    first = await connect_fleet(url, [f"A{i}" for i in range(n)])
    pss = family_pss_mib(family())
    await close_fleet(first)
    second = await connect_fleet(url, [f"B{i}" for i in range(n)])
    await close_fleet(second)
    return {"first_s": first.slowest_boot(), "first_failed": len(first.failed), "turnover_s": second.slowest_boot(),
            "turnover_failed": len(second.failed), "pss_mib": pss}


def run_baseline(n: int) -> dict:
    port = free_port()
    with process_server(_serve_baseline, port):
        return asyncio.run(churn(f"ws://127.0.0.1:{port}/ocpp", n, lambda: descendants(os.getpid())))


def run_gateway(n: int) -> dict:
    from actors.harvest.specs import harvest_child_specs
    from actors.ocpp.specs import ocpp_child_specs
    from bench.ocpp import wait_for_running
    from supervisor.embedded import private_actor_system, start_root
    from supervisor.launcher import preimport_heavy_libraries
    from supervisor.logs import log_definitions
    from supervisor.messages import GetTree, Tree
    from supervisor.spec import Heartbeat, SupervisorSpec

    def restarts(asys, root) -> dict[str, tuple[int, int]]:
        reply = asys.ask(root, GetTree(), 10)
        return {r["name"]: (r["pid"], r["restarts"]) for r in reply.records if r["name"] in ("chargers", "ocpp")} if isinstance(reply, Tree) else {}

    preimport_heavy_libraries()
    with tempfile.TemporaryDirectory() as tmp:
        port = free_port()
        values = {"data_dir": tmp, "uploads": [], "ocpp_host": "127.0.0.1", "ocpp_port": port, "ocpp_unknown_chargers": "accept"}
        spec = SupervisorSpec(children=tuple(harvest_child_specs(values) + ocpp_child_specs(values)), heartbeat=Heartbeat(3.0, 10.0))
        with private_actor_system(log_definitions(os.environ.get("BENCH_LOG_LEVEL", "ERROR"))) as asys:
            root = start_root(asys, spec)
            wait_for_running(asys, root, ("ocpp", "chargers", "harvest"))
            before = restarts(asys, root)
            result = asyncio.run(churn(f"ws://127.0.0.1:{port}/ocpp", n, lambda: descendants(os.getpid())))
            result["supervisors_restarted"] = restarts(asys, root) != before
            return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.ocpp_churn", description=__doc__.split("\n\n")[0])
    parser.add_argument("--chargers", type=int, default=200, help="fleet size (default 200)")
    args = parser.parse_args(argv if argv is not None else [])
    multiprocessing.set_start_method("fork", force=True)  # also when another benchmark ran first in this process
    base = run_baseline(args.chargers)
    egw = run_gateway(args.chargers)
    n = args.chargers
    print(f"OCPP churn, {n} chargers, loopback, {os.cpu_count()} CPUs")
    print(f"{'figure':44} {'egw':>10} {'baseline':>10} {'ratio':>7}")
    for key, label in (("first_s", f"{n} first connects: slowest answer s"), ("turnover_s", f"{n} new ids after {n} left: slowest s"), ("pss_mib", f"PSS with {n} connected, MiB")):
        ratio = egw[key] / base[key] if base[key] else float("inf")
        print(f"{label:44} {egw[key]:10.2f} {base[key]:10.2f} {ratio:7.2f}")
    print(f"{'not served (first connects / turnover)':44} {egw['first_failed']:>4} / {egw['turnover_failed']:<3} {base['first_failed']:>4} / {base['turnover_failed']:<3}")
    print(f"{'chargers or ocpp supervisor restarted':44} {str(egw['supervisors_restarted']):>10}")
    print("ratio = egw/baseline (lower is better); aims: every answer within 10 s, none restarted, PSS <= 600 MiB at 200")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
