"""The layout of a runs directory, in one place.

    <runs>/suite.json                                   which version of the suite wrote it
    <runs>/<data set>/<model>/f=<f>/seed=<seed>/        one run (`run_dir`)
        config.json        the RunConfig (its identity)          labelled.npy     the supervision split
        checkpoint.pt      weights, optimiser and random state   train_log.csv    per epoch: losses, accuracy, speed
        metrics.json       written last: the run has finished    environment.json where it was trained
        external.json      a model trained elsewhere (`bench eval --model`)
        eval/<evaluator>.json, eval/figures/*.png       the evaluations at the preset's evaluation seed
        eval/seed=<S>/<evaluator>.json                  at another evaluation seed (no figures)
    <runs>/<data set>/controls/<row>/control.json, eval/...   the control rows, evaluated like a run

Every module that reads or writes these names takes them from here.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from bench import __version__
from bench.errors import BenchError
from bench.files import atomic_write_text

SUITE = "suite.json"
RUNS_FORMAT = 1  # the layout of a runs directory; bump when it changes incompatibly
CONFIG = "config.json"
METRICS = "metrics.json"
CHECKPOINT = "checkpoint.pt"
LABELLED = "labelled.npy"
TRAIN_LOG = "train_log.csv"
ENVIRONMENT = "environment.json"
EXTERNAL = "external.json"
EVAL = "eval"
FIGURES = "figures"
CONTROLS = "controls"
CONTROL = "control.json"
EVALUATED_ONLY = " (evaluated only)"  # the suffix of an external model's row in the tables
RUN_PATTERN = "*/*/f=*/seed=*"  # <data set>/<model>/f=<f>/seed=<seed>, below a runs directory


@dataclass(frozen=True)
class RunIdentity:
    """What the tables and the report need of a run's config.json (its full form is `bench.config.RunConfig`)."""

    dataset: str
    model: str
    f: float
    seed: int
    preset: str


def read_identity(path: Path) -> RunIdentity:
    fields = json.loads((path / CONFIG).read_text())
    return RunIdentity(fields["dataset"], fields["model"], float(fields["f"]), int(fields["seed"]), fields["preset"])


def run_dir(runs_root: Path, dataset: str, model: str, f: float, seed: int) -> Path:
    return runs_root / dataset / model / f"f={f:g}" / f"seed={seed}"


def run_directories(runs_root: Path) -> list[Path]:
    """Every run directory under `runs_root` (finished or not)."""
    return sorted(path.parent for path in runs_root.glob(f"{RUN_PATTERN}/{CONFIG}"))


def finished(path: Path) -> bool:
    return (path / METRICS).is_file()


def evaluation_dir(eval_root: Path, eval_seed: int | None, own_seed: int) -> Path:
    """Where the evaluations at `eval_seed` go: `eval_root` itself for the preset's own evaluation seed (or None),
    `eval_root/seed=S` for another."""
    if eval_seed is None or eval_seed == own_seed:
        return eval_root
    return eval_root / f"seed={eval_seed}"


def evaluation_dirs(eval_root: Path, own_seed: int) -> list[tuple[int, Path]]:
    """(evaluation seed, directory) of every evaluation seed written under `eval_root`, the preset's own first."""
    others = sorted((int(path.name.removeprefix("seed=")), path) for path in eval_root.glob("seed=*")
                    if path.name.removeprefix("seed=").isdigit())
    return [(own_seed, eval_root), *others]


def controls_dir(runs_root: Path, dataset: str, control: str) -> Path:
    return runs_root / dataset / CONTROLS / control.replace(": ", "-").replace(" ", "_")


def control_records(runs_root: Path, dataset: str = "*") -> list[Path]:
    """The control.json of every control row evaluated under `runs_root` (of one data set, or all)."""
    return sorted(runs_root.glob(f"{dataset}/{CONTROLS}/*/{CONTROL}"))


def mark_runs_root(runs_root: Path) -> None:
    """Mark a runs directory as this suite's; refuse one written by another version."""
    marker = runs_root / SUITE
    expected = {"runs_format": RUNS_FORMAT, "suite_version": __version__}
    if marker.is_file():
        try:
            found = json.loads(marker.read_text())
        except json.JSONDecodeError:
            found = {}
        if found != expected:
            raise BenchError(f"{runs_root} was written by another version of the suite ({found or 'unreadable'}, "
                             f"this is {expected}); use a fresh --runs directory")
        return
    if runs_root.is_dir() and run_directories(runs_root):
        raise BenchError(f"{runs_root} holds runs without a suite.json (an older version of the suite); "
                         "use a fresh --runs directory")
    atomic_write_text(marker, json.dumps(expected) + "\n")
