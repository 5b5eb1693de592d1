"""Shared fixtures: the CI grid (preset `ci`) is trained and evaluated once per test session.

The grid is the suite's longest piece of work (~4½ minutes of both cores). Where the session needs it, it is
started in a background process (`bench run`, as a user runs it) when the first test starts, and the tests that
need it, or the ci oracle it builds, run last: the others run meanwhile, on one thread (two threads per process
beside the grid's two workers would oversubscribe the cores: OpenMP's waiting threads spin), and the tests that
wait for the grid get every thread back.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
CI_GRID = ["--datasets", "synthfaces", "--fs", "0.06", "--preset", "ci"]  # the grid of results/stored/ci
NEEDS_THE_GRID = ("ci_runs", "ci_data")  # fixtures whose tests wait for the grid (or its oracle): run them last


@pytest.fixture(scope="session")
def ci_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ci-cache")


@pytest.fixture(scope="session", autouse=True)
def ci_grid(request, tmp_path_factory, ci_cache):
    """Start training the CI grid in the background where a selected test needs it; end it with the session."""
    if not any("ci_runs" in item.fixturenames for item in request.session.items):
        yield None
        return
    runs = tmp_path_factory.mktemp("ci-runs")
    log = runs.parent / "ci-grid.log"
    command = [sys.executable, "-m", "bench", "run", *CI_GRID, "--runs", str(runs), "--cache-dir", str(ci_cache),
               "--out", str(runs / "results")]
    with log.open("w") as output:
        grid = subprocess.Popen(command, cwd=ROOT, stdout=output, stderr=subprocess.STDOUT, start_new_session=True)
    threads, omp = torch.get_num_threads(), os.environ.get("OMP_NUM_THREADS")
    torch.set_num_threads(1)
    os.environ["OMP_NUM_THREADS"] = "1"  # and for the processes the tests start
    yield grid, runs, log, lambda: restore_threads(threads, omp)
    if grid.poll() is None:  # the session ended early (-x, Ctrl-C): stop the grid and its workers
        os.killpg(grid.pid, signal.SIGINT)
        try:
            grid.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(grid.pid, signal.SIGKILL)
            grid.wait()


def restore_threads(threads: int, omp: str | None) -> None:
    torch.set_num_threads(threads)
    if omp is None:
        os.environ.pop("OMP_NUM_THREADS", None)
    else:
        os.environ["OMP_NUM_THREADS"] = omp


@pytest.fixture(scope="session")
def ci_runs(ci_grid) -> Path:
    """Every registered model on synthfaces at f = 0.06, ci preset, trained and evaluated by `bench run`."""
    grid, runs, log, restore = ci_grid
    code = grid.wait()
    restore()
    assert code == 0, f"the CI grid failed (exit {code}); its output ends:\n{log.read_text()[-4000:]}"
    return runs


def pytest_collection_modifyitems(items) -> None:
    """A test that needs the trained CI grid is slow by construction: mark it so, so that it cannot be forgotten.
    Tests that wait for the grid run last, in their order, so that the others run while it trains."""
    waiting = [item for item in items if any(name in getattr(item, "fixturenames", ()) for name in NEEDS_THE_GRID)]
    for item in waiting:
        if "ci_runs" in item.fixturenames:
            item.add_marker(pytest.mark.slow)
    items[:] = [item for item in items if item not in waiting] + waiting
