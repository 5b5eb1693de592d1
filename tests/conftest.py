"""Shared fixtures: the CI grid (preset `ci`) is trained and evaluated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[1]
CI_GRID = ["--datasets", "synthfaces", "--fs", "0.06", "--preset", "ci"]  # the grid of results/stored/ci


@pytest.fixture(scope="session")
def ci_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("ci-cache")


@pytest.fixture(scope="session")
def ci_runs(tmp_path_factory, ci_cache) -> Path:
    """Every registered model on synthfaces at f = 0.06, ci preset, trained and evaluated by `bench run`."""
    runs = tmp_path_factory.mktemp("ci-runs")
    code = main(["run", *CI_GRID, "--runs", str(runs), "--cache-dir", str(ci_cache),
                 "--out", str(runs / "results")])
    assert code == 0
    return runs


def pytest_collection_modifyitems(items) -> None:
    """A test that needs the trained CI grid is slow by construction: mark it so, so that it cannot be forgotten."""
    for item in items:
        if "ci_runs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
