"""Solar-surplus charging: egw's controller against evcc's defaults and naive full power, on the same PV days.

Each controller drives the same simulated car (`simulators.charger.car.Car`: follows a
limit in 3 s, pauses below 6 A, 1 or 3 phases) through the same days at 1 s resolution
(`simulators.charger.site`: a sunny day and a cloudy day with fast broken clouds, house
load, the car plugged in 09:00-17:00):

* egw: `actors.energy.control.step`, 10 s loop, a switchable 6-16 A loadpoint in pv mode;
* evcc-defaults reference: 30 s loop, enable after 1 min, disable after 3 min,
  3p->1p after 3 min, 1p->3p after 1 min, 6-16 A, current set straight from the surplus;
* naive: 16 A on three phases while plugged in.

Printed side by side: the share of the car's energy that came from PV, the car's grid
import ("car grid": its energy the PV did not cover; egw and evcc-defaults run in pv
mode, "egw now" in now mode), starts/stops, phase switches and the energy delivered by
17:00; then
the issue's aims, each with its ratio and whether it holds: egw's PV share at least 5
points above the reference on the cloudy day, at most half its starts/stops and phase
switches, and in `now` mode the same energy as naive charging.

    python -m bench energy [--days sunny,cloudy] [--resolution 1.0] [--interval 10]
"""

from __future__ import annotations

import argparse
import time

from actors.energy.control import ControlSettings
from simulators.charger.site import DayResult, Site, egw_controller, evcc_controller, naive_controller, replay_day


def run(days: list[str], resolution: float, interval: float) -> dict[str, dict[str, DayResult]]:
    results: dict[str, dict[str, DayResult]] = {}
    for day in days:
        site = Site(day)
        egw, _ = egw_controller(settings=ControlSettings(interval=interval))
        egw_now, _ = egw_controller(mode="now", settings=ControlSettings(interval=interval))
        evcc, _ = evcc_controller()
        naive, _ = naive_controller()
        results[day] = {
            "egw": replay_day(site, egw, interval, resolution=resolution),
            "evcc-defaults": replay_day(site, evcc, 30.0, resolution=resolution),
            "naive": replay_day(site, naive, interval, resolution=resolution),
            "egw now": replay_day(site, egw_now, interval, resolution=resolution),
        }
    return results


def table(results: dict[str, dict[str, DayResult]]) -> str:
    rows = [f"{'day':<7} {'controller':<14} {'PV share':>9} {'car grid':>10} {'starts/stops':>13} {'phase sw':>9} {'by 17:00':>10}"]
    for day, by_name in results.items():
        for name, r in by_name.items():
            rows.append(f"{day:<7} {name:<14} {r.pv_share:>8.1f}% {r.car_grid_wh / 1000:>7.2f} kWh {r.starts:>6}/{r.stops:<6} {r.phase_switches:>9} "
                        f"{r.energy_by_17_wh / 1000:>6.1f} kWh")
    return "\n".join(rows)


def aims(results: dict[str, dict[str, DayResult]]) -> list[tuple[str, bool]]:
    found = []
    if "cloudy" in results:
        egw, ref = results["cloudy"]["egw"], results["cloudy"]["evcc-defaults"]
        gain = egw.pv_share - ref.pv_share
        found.append((f"cloudy: PV share egw {egw.pv_share:.1f} % vs evcc-defaults {ref.pv_share:.1f} %: +{gain:.1f} points (aim >= +5)", gain >= 5.0))
        for label, mine, theirs in (("starts/stops", egw.starts + egw.stops, ref.starts + ref.stops),
                                    ("phase switches", egw.phase_switches, ref.phase_switches)):
            ratio = mine / theirs if theirs else 0.0
            found.append((f"cloudy: {label} egw {mine} vs evcc-defaults {theirs}: ratio {ratio:.2f} (aim <= 0.5)", mine <= theirs / 2))
    for day, by_name in results.items():
        now, naive = by_name["egw now"].energy_by_17_wh, by_name["naive"].energy_by_17_wh
        ratio = now / naive if naive else 1.0
        found.append((f"{day}: energy by 17:00 in now mode {now / 1000:.2f} kWh vs naive {naive / 1000:.2f} kWh: ratio {ratio:.3f} (aim 1.000)",
                      abs(ratio - 1.0) < 0.005))
    return found


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench energy", description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", default="sunny,cloudy", help="comma-separated: sunny, cloudy (default: both)")
    parser.add_argument("--resolution", type=float, default=1.0, help="simulation step, seconds (default 1.0)")
    parser.add_argument("--interval", type=float, default=10.0, help="egw's loop interval, seconds (default 10)")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    results = run([d.strip() for d in args.days.split(",") if d.strip()], args.resolution, args.interval)
    print("solar-surplus charging: a switchable 6-16 A loadpoint, car plugged in 09:00-17:00, replayed 08:00-18:00")
    print(table(results))
    print("aims:")
    for line, held in aims(results):
        print(f"  {'ok  ' if held else 'MISS'} {line}")
    print(f"({time.perf_counter() - started:.1f} s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
