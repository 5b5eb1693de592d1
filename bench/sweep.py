"""Grid expansion and the inline launcher for `python -m bench run --all`."""

from __future__ import annotations

import itertools
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from tabulate import tabulate

from bench.config import RunConfig, make_config
from bench.data import load
from bench.evaluate import evaluate_run
from bench.train import atomic_write_text, resolve_device, train

DEFAULT_DATASETS = ("synthfaces",)
DEFAULT_MODELS = ("ccvae", "mccvae", "m2", "mvae", "diva", "csvae")
DEFAULT_FS = (0.004, 0.06, 0.2, 1.0)
DEFAULT_SEEDS = (0,)


@dataclass(frozen=True)
class Grid:
    datasets: tuple[str, ...] = DEFAULT_DATASETS
    models: tuple[str, ...] = DEFAULT_MODELS
    fs: tuple[float, ...] = DEFAULT_FS
    seeds: tuple[int, ...] = DEFAULT_SEEDS
    preset: str = "quick"
    epochs: int | None = None  # None: the preset's

    def cells(self) -> list[RunConfig]:
        return [make_config(model, dataset, f, seed, self.preset, self.epochs)
                for dataset, model, f, seed in itertools.product(self.datasets, self.models, self.fs, self.seeds)]


def run_grid(
    grid: Grid, runs_root: Path, data_root: str | None, cache_dir: str | None, device_name: str,
    evaluate: bool = True, fid_weights: str | None = None,
) -> pd.DataFrame:
    """Train and evaluate every cell (skipping finished work); one row of metrics per run."""
    device = resolve_device(device_name)
    cells = grid.cells()  # validates every choice before any work starts
    rows = []
    loaded = {}
    for position, config in enumerate(cells, 1):
        key = (config.dataset, tuple(sorted(config.dataset_options.items())))
        if key not in loaded:
            loaded = {key: load(config.dataset, data_root, cache_dir, config.dataset_options)}
        print(f"[{position}/{len(cells)}] {config.model} on {config.dataset}, f={config.f:g}, seed={config.seed}",
              file=sys.stderr)
        metrics = train(config, loaded[key], config.run_dir(runs_root), device)
        if evaluate:
            evaluate_run(config.run_dir(runs_root), device, data_root=data_root, cache=cache_dir,
                         fid_weights=fid_weights, skip_done=True, data=loaded[key])
        rows.append({"dataset": config.dataset, "model": config.model, "f": config.f, "seed": config.seed, **metrics})
    return pd.DataFrame(rows)


def accuracy_table(results: pd.DataFrame) -> pd.DataFrame:
    """Test accuracy, rows = models (+ the majority baseline), columns = (data set, f); seed mean."""
    means = results.groupby(["dataset", "model", "f"])["test_accuracy"].mean().unstack(["dataset", "f"])
    majority = results.groupby(["dataset", "f"])["majority_accuracy"].mean().rename("majority")
    return pd.concat([means, majority.to_frame().T])


def print_summary(results: pd.DataFrame, runs_root: Path) -> str:
    table = accuracy_table(results)
    headers = [f"{dataset} f={f:g}" for dataset, f in table.columns]
    text = tabulate(table.to_numpy(), headers=headers, showindex=list(table.index), floatfmt=".3f")
    path = runs_root / "summary.csv"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_text(path, results.to_csv(index=False))
    print("\nTest accuracy (mean over seeds) beside the majority-class baseline:\n" + text)
    print(f"\nper-run metrics: {path}{os.linesep}")
    return text
