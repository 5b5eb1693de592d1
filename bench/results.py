"""Run directories -> one long results frame: the numbers every table, check, claim and report reads.

`gather(runs_root)` reads every finished run (config.json, metrics.json, eval/*.json) and every control row into a
DataFrame with one row per (data set, model, f, seed, evaluation seed, metric): `RESULT_COLUMNS`, the format of
`results.csv`. The layout it reads is `bench.rundir`'s; the metrics it keeps are the registries' (the trainer's
and each evaluator's declared metrics). It also collects why an evaluator gave no number (`unavailable_notes`).
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import pandas as pd

from bench import rundir
from bench.errors import BenchError
from bench.metrics import TRAINER_METRICS
from bench.models import MODELS
from bench.presets import preset
from evaluators import EVALUATORS, all_metrics
from evaluators.controls import ROWS as CONTROL_ROWS

RESULT_COLUMNS = ["dataset", "model", "f", "seed", "eval_seed", "preset", "metric", "value"]


def read_results(path: Path) -> pd.DataFrame:
    """A results.csv written by `bench run` or `bench tables` (exactly `RESULT_COLUMNS`), for `claims --results` and
    `check --results`; one line naming the problem for a missing file or other columns."""
    if not path.is_file():
        raise BenchError(f"{path} does not exist; give --results a results.csv written by `python -m bench run` or "
                         "`tables` (e.g. results/stored/quick/results.csv)")
    frame = pd.read_csv(path)
    missing = [column for column in RESULT_COLUMNS if column not in frame.columns]
    if missing:
        raise BenchError(f"{path} lacks the column(s) {', '.join(missing)}; a results.csv has "
                         f"{', '.join(RESULT_COLUMNS)}")
    if list(frame.columns) != RESULT_COLUMNS:
        raise BenchError(f"{path} must have the columns {', '.join(RESULT_COLUMNS)} (a results.csv of this suite)")
    return frame


def run_rows(run_dir: Path) -> list[dict]:
    """The numbers of one finished run as long-format rows (an unfinished run has none)."""
    if not rundir.finished(run_dir):
        return []
    config = rundir.read_identity(run_dir)
    metrics = json.loads((run_dir / rundir.METRICS).read_text())
    if "labelled_fraction" not in metrics and {"n_labelled", "n_unlabelled"} <= set(metrics):  # an older run's
        metrics["labelled_fraction"] = metrics["n_labelled"] / (metrics["n_labelled"] + metrics["n_unlabelled"])
    model = config.model + (rundir.EVALUATED_ONLY if metrics.get("evaluated_only") else "")  # `bench eval --model`
    cell = {"dataset": config.dataset, "model": model, "f": config.f, "seed": config.seed, "preset": config.preset}
    trained = {metric.key: metrics[metric.key] for metric in TRAINER_METRICS if metric.key in metrics}
    rows = []
    for eval_seed, directory in rundir.evaluation_dirs(run_dir / rundir.EVAL, preset(config.preset).evaluation.seed):
        values = (trained if directory == run_dir / rundir.EVAL else {}) | evaluated(directory)
        rows += [{**cell, "eval_seed": eval_seed, "metric": name, "value": float(value)}
                 for name, value in values.items()]
    return rows


def evaluated(eval_dir: Path) -> dict[str, float]:
    """The declared metrics in a directory of evaluator results, by results.csv name (missing ones left out)."""
    values = {}
    for path in sorted(eval_dir.glob("*.json")):
        if path.stem not in EVALUATORS:
            continue  # an evaluator that is no longer registered
        result = json.loads(path.read_text())
        for metric in EVALUATORS[path.stem].metrics:
            if isinstance(result.get(metric.key), (int, float)):
                values[f"{path.stem}.{metric.key}"] = float(result[metric.key])
    return values


def control_rows(runs_root: Path) -> list[dict]:
    """The controls' numbers (`bench.evaluate.evaluate_controls`) as long-format rows with f = NaN: a control
    does not depend on the supervision rate, and the tables show its number in every f column."""
    rows = []
    for path in rundir.control_records(runs_root):
        record = json.loads(path.read_text())
        cell = {"dataset": record["dataset"], "model": record["row"], "f": math.nan, "preset": record["preset"]}
        for eval_seed, directory in rundir.evaluation_dirs(path.parent / rundir.EVAL,
                                                           preset(record["preset"]).evaluation.seed):
            rows += [{**cell, "seed": eval_seed, "eval_seed": eval_seed, "metric": name, "value": value}
                     for name, value in evaluated(directory).items()]
    return rows


def at_preset_seed(results: pd.DataFrame) -> pd.DataFrame:
    """The rows evaluated at their preset's own evaluation seed (what `bench check` compares)."""
    own = results.preset.map(lambda name: preset(name).evaluation.seed)
    return results[results.eval_seed == own]


def gather(runs_root: Path) -> pd.DataFrame:
    """Every finished run under `runs_root`, one row per (data set, model, f, seed, metric)."""
    if not runs_root.is_dir():
        raise BenchError(f"runs directory {runs_root} does not exist; train with `python -m bench run` first")
    rows = [row for run_dir in rundir.run_directories(runs_root) for row in run_rows(run_dir)]
    if not rows:
        raise BenchError(f"{runs_root} holds no finished runs; train with `python -m bench run` first")
    return pd.DataFrame(rows + control_rows(runs_root), columns=RESULT_COLUMNS)


def unavailable_notes(runs_root: Path, dataset: str, evaluator: str) -> list[str]:
    """Why an evaluator gave no number for some runs of `dataset` (missing FID weights, a model that cannot
    swap, a singular matrix…), which of the controls' numbers are missing and why, and its warnings: one note per
    reason, naming every row and metric it applies to (FID and KID missing for one reason are one note)."""
    by_reason: dict[str, tuple[set[str], list[str]]] = {}  # reason -> (rows, metrics in declaration order)
    found = [(path.parts[-5], path) for path in runs_root.glob(f"{dataset}/{rundir.RUN_PATTERN.split('/', 1)[1]}/"
                                                                 f"{rundir.EVAL}/{evaluator}.json")]
    for control in rundir.control_records(runs_root, dataset):
        if (control.parent / rundir.EVAL / f"{evaluator}.json").is_file():
            found.append((json.loads(control.read_text())["row"], control.parent / rundir.EVAL / f"{evaluator}.json"))
    for row, path in found:
        result = json.loads(path.read_text())
        for key, reason in result.items():
            if key == "warning" and reason:
                rows, _ = by_reason.setdefault(f"warning: {reason}", (set(), []))
                rows.add(row)
            elif key.endswith("unavailable") and reason and not (key == "unavailable" and row in CONTROL_ROWS):
                rows, metrics = by_reason.setdefault(reason, (set(), []))
                rows.add(row)
                metric = key[: -len("_unavailable")]
                if key != "unavailable" and metric not in metrics:
                    metrics.append(metric)
    return [f"{', '.join(ordered_models(rows))}: {', '.join(metrics) + ': ' if metrics else ''}{reason}"
            for reason, (rows, metrics) in sorted(by_reason.items())]


NOTES = "notes.json"  # in a stored set: each data set's evaluators' notes (why a number is missing), from its runs


def all_notes(runs_root: Path, datasets) -> dict[str, dict[str, list[str]]]:
    """Every data set's notes per evaluator (`unavailable_notes`), as a stored set keeps them (notes.json)."""
    return {dataset: {name: notes for name in EVALUATORS if (notes := unavailable_notes(runs_root, dataset, name))}
            for dataset in sorted(set(datasets))}


def ordered_models(models) -> list[str]:
    """The registry's models in its order, other models alphabetically, then reference rows (the majority
    baseline) and the controls in `evaluators.controls.ROWS` order."""
    models = set(models)
    known = [model for model in MODELS if model in models]
    controls = [row for row in CONTROL_ROWS if row in models]
    references = sorted(models & set(all_metrics()))
    return known + sorted(models - set(known) - set(controls) - set(references)) + references + controls
