"""Regression checks: fresh results against the stored ones, metric by metric.

A stored result set is a folder (`results/stored/<preset>/`) with `results.csv` (the long
table of `bench.tables.gather`) and `provenance.json` (the grid, the suite and library
versions and the machine that produced it). `compare` pairs every stored number with the
fresh one of the same (data set, model, f, seed, metric) and judges the difference against
the metric's tolerance: worse than the stored number by more than the tolerance is a
regression; a missing fresh number is one too; better by more than the tolerance is reported
(refresh the stored numbers with `--update` when the change is intended).

Why the tolerances are not zero: on one machine a config and seed reproduce every number
exactly, but another CPU, BLAS build, thread count or torch version changes the last bits of
the arithmetic, and a short training run amplifies them. The defaults below allow for that
and no more; they are stated per metric.
"""

from __future__ import annotations

import json
import platform
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch

from bench import __version__
from bench.errors import BenchError
from bench.files import atomic_write_text
from bench.tables import METRICS, RESULT_COLUMNS

CELL = ["dataset", "model", "f", "seed", "metric"]


@dataclass(frozen=True)
class Tolerance:
    """|fresh − stored| ≤ max(absolute, relative·|stored|); or, with `factor`, a ratio within ×/÷ factor."""

    absolute: float
    relative: float = 0.0
    factor: float | None = None

    def allowed(self, stored: float) -> float:
        """The largest allowed |difference| (for a factor: upwards, the larger side)."""
        if self.factor is not None:
            return abs(stored) * (self.factor - 1)
        return max(self.absolute, self.relative * abs(stored))

    def within(self, stored: float, fresh: float) -> bool:
        if self.factor is not None:
            return stored > 0 and fresh > 0 and max(fresh / stored, stored / fresh) <= self.factor
        return abs(fresh - stored) <= self.allowed(stored)

    def scaled(self, scale: float) -> Tolerance:
        factor = None if self.factor is None else self.factor**scale
        return Tolerance(self.absolute * scale, self.relative * scale, factor)


TOLERANCES = {
    # accuracies on 1,000–2,000 test images: a few images' worth of noise in a short run
    "test_accuracy": Tolerance(0.03),
    "classification.accuracy": Tolerance(0.03),
    "conditional.accuracy": Tolerance(0.05),  # judged on generated images, noisier
    "majority_accuracy": Tolerance(1e-6),  # a property of the data: any change means the data changed
    "swap.score": Tolerance(0.05, 0.15),
    "fid.fid": Tolerance(1.0, 0.05),
    # measured: a float-level change of the training arithmetic (channels-last convolutions, the
    # same losses to 1e-5) moved the smoke grid's oracle Fréchet distances by up to 30 %
    "fid.oracle_frechet": Tolerance(1.0, 0.35),
    "mutual_info.generated": Tolerance(0.01, 0.25),
    "mutual_info.real": Tolerance(0.01, 0.25),
    # the smallest singular value of a briefly trained model's intervention matrix is noise: the same
    # float-level change moved smoke condition numbers by factors up to 10.4, so only gross changes count
    "interventions.condition_number": Tolerance(1.0, factor=15.0),
    "ground_truth.capture": Tolerance(0.05),
    "ground_truth.leakage_r2": Tolerance(0.05),
}


def tolerances_with(overrides: dict[str, float] | None = None, scale: float | None = None) -> dict[str, Tolerance]:
    """The defaults, all scaled by `scale`, then single metrics given absolute tolerances."""
    chosen = {name: tolerance.scaled(scale or 1) for name, tolerance in TOLERANCES.items()}
    for name, absolute in (overrides or {}).items():
        if name not in TOLERANCES:
            raise BenchError(f"unknown metric '{name}' in --tolerance; choose from {', '.join(TOLERANCES)}")
        chosen[name] = Tolerance(absolute)
    return chosen


def read_stored(stored: Path) -> pd.DataFrame:
    path = stored / "results.csv"
    if not path.is_file():
        raise BenchError(f"no stored results at {path}; store a result set with `python -m bench check --update`")
    frame = pd.read_csv(path)
    if list(frame.columns) != RESULT_COLUMNS:
        raise BenchError(f"{path} must have the columns {', '.join(RESULT_COLUMNS)}")
    return frame


def verdict(metric: str, stored: float, fresh: float, tolerance: Tolerance) -> str:
    """'same', 'ok' (within tolerance), 'better' or 'WORSE' (beyond it); 'missing' where fresh is NaN."""
    if pd.isna(fresh):
        return "missing"
    difference = fresh - stored
    if difference == 0:
        return "same"
    if tolerance.within(stored, fresh):
        return "ok"
    direction = METRICS[metric].higher_is_better if metric in METRICS else None
    if direction is None:
        return "WORSE"  # a reference number moved: the setup changed
    return "better" if (difference > 0) == direction else "WORSE"


def compare(stored: pd.DataFrame, fresh: pd.DataFrame, tolerances: dict[str, Tolerance]) -> pd.DataFrame:
    """One row per stored number of a cell that was run fresh: stored, fresh, difference, allowed, verdict."""
    fresh_cells = fresh[["dataset", "model", "f", "seed"]].drop_duplicates()
    stored = stored.merge(fresh_cells, on=["dataset", "model", "f", "seed"])  # cells run fresh only
    if stored.empty:
        raise BenchError("the fresh runs share no cell with the stored results; run the stored grid "
                         "(see provenance.json beside them) or choose other --stored results")
    paired = stored.merge(fresh[[*CELL, "value"]], on=CELL, how="left", suffixes=("_stored", "_fresh"))
    paired = paired.rename(columns={"value_stored": "stored", "value_fresh": "fresh"})
    paired["difference"] = paired.fresh - paired.stored
    paired["allowed"] = [tolerances.get(metric, Tolerance(0.0)).allowed(value)
                         for metric, value in zip(paired.metric, paired.stored, strict=True)]
    paired["verdict"] = [verdict(row.metric, row.stored, row.fresh, tolerances.get(row.metric, Tolerance(0.0)))
                         for row in paired.itertuples()]
    return paired[[*CELL, "stored", "fresh", "difference", "allowed", "verdict"]]


def report(comparison: pd.DataFrame, not_run: int) -> str:
    """Every difference, then the counts."""
    from tabulate import tabulate

    moved = comparison[comparison.verdict != "same"]
    counts = comparison.verdict.value_counts()
    lines = []
    if not moved.empty:
        lines.append(tabulate(moved.to_numpy(), headers=list(moved.columns), tablefmt="simple", floatfmt=".4g"))
    summary = ", ".join(f"{counts.get(name, 0)} {name}" for name in ("same", "ok", "better", "WORSE", "missing"))
    lines.append(f"{len(comparison)} numbers compared: {summary}"
                 + (f"; {not_run} stored cells not run fresh" if not_run else ""))
    return "\n".join(lines)


def regressions(comparison: pd.DataFrame) -> pd.DataFrame:
    return comparison[comparison.verdict.isin(["WORSE", "missing"])]


def store(fresh: pd.DataFrame, runs_root: Path, stored: Path) -> None:
    """Write `fresh` as the stored result set with the configs of its runs (atomically, file by file)."""
    from bench.tables import run_directories

    finished = [path for path in run_directories(runs_root) if (path / "metrics.json").is_file()]
    configs = [json.loads((path / "config.json").read_text()) for path in finished]
    provenance = {"runs": str(runs_root), "presets": sorted(set(fresh.preset)), "cells": len(configs)}
    atomic_write_text(stored / "results.csv", fresh.to_csv(index=False))
    atomic_write_text(stored / "configs.json", json.dumps(configs, indent=1, sort_keys=True) + "\n")
    record = {**provenance, "suite_version": __version__, "torch": torch.__version__,
              "machine": f"{platform.machine()} {platform.processor() or platform.platform()}",
              "cpu_threads": torch.get_num_threads()}
    atomic_write_text(stored / "provenance.json", json.dumps(record, indent=2, default=str) + "\n")
