"""Shared fixtures: the CI smoke grid is trained and evaluated once per test session."""

from __future__ import annotations

from pathlib import Path

import pytest

from bench.cli import main

ROOT = Path(__file__).resolve().parents[1]
SMOKE_GRID = ["--datasets", "synthfaces", "--fs", "0.06", "--preset", "smoke"]  # the grid of results/stored/smoke


@pytest.fixture(scope="session")
def smoke_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("smoke-cache")


@pytest.fixture(scope="session")
def smoke_runs(tmp_path_factory, smoke_cache) -> Path:
    """Every registered model on synthfaces at f = 0.06, smoke preset, trained and evaluated by `bench run`."""
    runs = tmp_path_factory.mktemp("smoke-runs")
    code = main(["run", *SMOKE_GRID, "--runs", str(runs), "--cache-dir", str(smoke_cache),
                 "--out", str(runs / "results")])
    assert code == 0
    return runs


def pytest_collection_modifyitems(items) -> None:
    """A test that needs the trained smoke grid is slow by construction: mark it so, so that it cannot be forgotten."""
    for item in items:
        if "smoke_runs" in getattr(item, "fixturenames", ()):
            item.add_marker(pytest.mark.slow)
