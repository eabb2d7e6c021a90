"""Run the benchmarks: `python -m bench` (all), `python -m bench ocpp live` (a subset), or
`python -m bench ocpp --chargers 50` (one, with its own options; `python -m bench.ocpp --help`).

Each benchmark is a module `bench.<name>` with `main(argv: list[str] | None = None)`; every
figure is printed next to a baseline measured in the same run, as a ratio, because machines
are noisy and only same-run comparisons mean anything. Modules named `*_support` hold the
helpers their benchmark runs in child processes and are not benchmarks themselves.
"""

from __future__ import annotations

import importlib
import pkgutil
import sys
import time
from pathlib import Path


def available() -> list[str]:
    here = Path(__file__).parent
    return sorted(m.name for m in pkgutil.iter_modules([str(here)]) if not m.name.startswith("_") and not m.name.endswith("_support"))


def split_arguments(argv: list[str]) -> tuple[list[str], list[str]]:
    """Benchmark names, then the options for a single one (everything from the first '-')."""
    first_option = next((i for i, a in enumerate(argv) if a.startswith("-")), len(argv))
    return argv[:first_option], argv[first_option:]


def main(argv: list[str]) -> int:
    if argv[:1] in (["-h"], ["--help"]):
        print(__doc__.strip() + "\n\navailable: " + ", ".join(available()))
        return 0
    names, options = split_arguments(argv)
    names = names or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    if options and len(names) != 1:
        print("options go to one benchmark at a time: python -m bench NAME --option ...", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n=== bench.{name}", flush=True)
        started = time.monotonic()
        try:
            code = importlib.import_module(f"bench.{name}").main(list(options))
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            code = exc
            print(f"bench.{name} failed: {exc!r}", flush=True)
        if code not in (None, 0):
            failed.append(name)
        print(f"(bench.{name}: {time.monotonic() - started:.1f} s)", flush=True)
    if failed:
        print(f"\nfailed: {', '.join(failed)}", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
