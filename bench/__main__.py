"""Run the benchmarks: `python -m bench` (all) or `python -m bench restart outbox ...`.

Each benchmark is a module `bench.<name>` with a `main()`; every figure is printed next
to a baseline measured in the same run, as a ratio, because machines are noisy and
only same-run comparisons mean anything.
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


def main(argv: list[str]) -> int:
    names = argv or available()
    unknown = [n for n in names if n not in available()]
    if unknown:
        print(f"unknown benchmark(s): {', '.join(unknown)}; available: {', '.join(available())}", file=sys.stderr)
        return 2
    failed = []
    for name in names:
        print(f"\n=== bench.{name}", flush=True)
        started = time.monotonic()
        try:
            importlib.import_module(f"bench.{name}").main()
        except Exception as exc:  # noqa: BLE001 - report and go on with the others
            failed.append(name)
            print(f"bench.{name} failed: {exc!r}", flush=True)
        print(f"(bench.{name}: {time.monotonic() - started:.1f} s)", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
