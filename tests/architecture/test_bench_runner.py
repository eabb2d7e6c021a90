"""`make bench` runs every benchmark in one process: one benchmark must not break the next."""

from __future__ import annotations

import inspect
import importlib
import subprocess
import sys

from bench.__main__ import available, split_arguments
from tests.conftest import ROOT


def test_every_benchmark_takes_its_options_as_an_argument_not_from_sys_argv():
    for name in available():
        main = importlib.import_module(f"bench.{name}").main
        assert list(inspect.signature(main).parameters) == ["argv"], f"bench.{name}.main"


def test_names_come_first_and_options_go_to_the_one_benchmark_named():
    assert split_arguments([]) == ([], [])
    assert split_arguments(["ocpp", "live"]) == (["ocpp", "live"], [])
    assert split_arguments(["ocpp", "--chargers", "50", "200"]) == (["ocpp"], ["--chargers", "50", "200"])


def _bench(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "bench", *args], cwd=ROOT, capture_output=True, text=True, timeout=120)


def test_an_unknown_benchmark_is_refused_with_the_list_of_known_ones():
    done = _bench("nosuch")
    assert done.returncode == 2
    assert "unknown benchmark(s): nosuch; available: " in done.stderr and "ocpp" in done.stderr


def test_options_for_two_benchmarks_at_once_are_refused():
    done = _bench("ocpp", "live", "--seconds", "1")
    assert done.returncode == 2 and "one benchmark at a time" in done.stderr


def test_the_ocpp_benchmark_runs_after_another_one_in_the_same_process():
    # each sets the multiprocessing start method; the second used to fail with
    # RuntimeError('context has already been set')
    script = ("import bench.live, bench.ocpp\n"
              "bench.live.main(['--subscribers', '1', '--events', '3'])\n"
              "raise SystemExit(bench.ocpp.main(['--chargers', '2', '--seconds', '0.5', '--throughput-chargers', '2', '--systems', 'egw-local']))\n")
    done = subprocess.run([sys.executable, "-c", script], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "max calls/s (2 chargers, closed loop) egw-local" in done.stdout
    assert "WARNING" not in done.stderr, "a benchmark prints figures, not the actors' warnings"
