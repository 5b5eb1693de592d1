"""Regression checks: fresh results against the stored ones, metric by metric.

A stored result set is a folder (`results/stored/<preset>/`) with `results.csv` (the long
table of `bench.tables.gather`) and `provenance.json` (the grid, the suite and library
versions and the machine that produced it). `compare` pairs every stored number with the
fresh one of the same (data set, model, f, seed, metric), each at its preset's evaluation seed
(evaluations at other evaluation seeds are stored but not compared), and judges the fresh number against
the stored distribution of its cell (data set, model, f, metric) over the stored seeds:

    seed spread (n ≥ 2 stored seeds)  a regression is a fresh value worse than the stored mean by
                                      more than k of the cell's seed standard deviations plus a
                                      floor of one unit of the tables' last printed digit; the
                                      report says how many standard deviations it is. k is the
                                      one-sided Student-t prediction bound for one new draw from
                                      the cell's seeds, k = t(1 − α/m; n − 1) · √(1 + 1/n), with a
                                      false-alarm rate α = 5 % for the whole check, split over its
                                      m judged numbers (Bonferroni): 9.2 sd for five stored seeds
                                      and 92 numbers, 35 sd for three. `--sds K` fixes k instead.
                                      Metrics with a ratio tolerance (the condition number) are
                                      compared on a log scale.
    declared tolerance (n = 1)        a single stored seed, or seeds that agree exactly, give no
                                      spread: the metric's declared tolerance
                                      (`bench.metrics.Metric.tolerance`, with its reason) around the
                                      stored value.

A missing fresh number is a regression too; better by more than the allowance is reported
(refresh the stored numbers with `--update` when the change is intended). A fresh number equal
to the stored one of its seed is "same": on one machine a config and seed reproduce exactly.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from scipy import stats

from bench import __version__
from bench.errors import BenchError, Regression
from bench.files import atomic_write_text
from bench.metrics import Tolerance
from bench.tables import RESULT_COLUMNS, at_preset_seed, gather, run_directories
from evaluators import all_metrics

CELL = ["dataset", "model", "f", "seed", "metric"]
SEEDS_OF = ["dataset", "model", "f", "metric"]  # a cell's numbers over seeds
VERDICTS = ("same", "ok", "better", "WORSE", "missing")
FALSE_ALARM = 0.05
"""The chance that a check of fresh runs drawn like the stored seeds reports any regression (Bonferroni)."""


def seed_allowance(stored_n: int, judged: int, false_alarm: float = FALSE_ALARM) -> float:
    """How many seed standard deviations below the mean of `stored_n` seeds one fresh seed may fall: the one-sided
    Student-t prediction bound t(1 − α/m; n − 1) · √(1 + 1/n), α = `false_alarm` split over `judged` numbers."""
    return float(stats.t.ppf(1 - false_alarm / max(judged, 1), stored_n - 1) * math.sqrt(1 + 1 / stored_n))


def default_tolerances() -> dict[str, Tolerance]:
    """Each declared metric's tolerance (`bench.metrics.Metric.tolerance`, with its reason beside it)."""
    return {name: metric.tolerance for name, metric in all_metrics().items()}


def tolerances_with(overrides: dict[str, float] | None = None, scale: float | None = None) -> dict[str, Tolerance]:
    """The defaults, all scaled by `scale`, then single metrics given absolute tolerances."""
    defaults = default_tolerances()
    chosen = {name: tolerance.scaled(scale or 1) for name, tolerance in defaults.items()}
    for name, absolute in (overrides or {}).items():
        if name not in defaults:
            raise BenchError(f"unknown metric '{name}' in --tolerance; choose from {', '.join(defaults)}")
        chosen[name] = Tolerance(absolute)
    return chosen


def parse_tolerances(values: list[str] | None) -> dict[str, Tolerance]:
    """`--tolerance` values: a bare number scales every default, METRIC=NUMBER sets one absolute tolerance."""
    scale, overrides = None, {}
    for value in values or []:
        name, sep, number = value.rpartition("=") if "=" in value else ("", "", value)
        try:
            parsed = float(number)
        except ValueError:
            raise BenchError(f"--tolerance '{value}' must be a number or METRIC=NUMBER") from None
        if sep:
            overrides[name] = parsed
        else:
            scale = parsed
    return tolerances_with(overrides, scale)


def read_stored(stored: Path) -> pd.DataFrame:
    path = stored / "results.csv"
    if not path.is_file():
        raise BenchError(f"no stored results at {path}; store a result set with `python -m bench check --update`")
    frame = pd.read_csv(path)
    if list(frame.columns) != RESULT_COLUMNS:
        raise BenchError(f"{path} must have the columns {', '.join(RESULT_COLUMNS)} (a set stored by an older "
                         "version of the suite: store it again with `bench check --update`)")
    return frame


def verdict(metric: str, stored: float, fresh: float, tolerance: Tolerance) -> str:
    """The declared-tolerance verdict (one stored seed): 'same', 'ok' (within tolerance), 'better' or 'WORSE'
    (beyond it); 'missing' where fresh is NaN."""
    if pd.isna(fresh):
        return "missing"
    if fresh == stored:
        return "same"
    if tolerance.within(stored, fresh):
        return "ok"
    return _direction(metric, fresh - stored)


def _direction(metric: str, difference: float) -> str:
    """'better' or 'WORSE' for a move beyond the allowance (any move of a reference number is 'WORSE')."""
    metrics = all_metrics()
    direction = metrics[metric].higher_is_better if metric in metrics else None
    if direction is None:
        return "WORSE"  # a reference number moved: the setup changed
    return "better" if (difference > 0) == direction else "WORSE"


def _on_log_scale(metric: str, tolerances: dict[str, Tolerance]) -> bool:
    tolerance = tolerances.get(metric)
    return tolerance is not None and tolerance.factor is not None


def printed_resolution(metric: str, log_scale: bool) -> float:
    """One unit of the tables' last printed digit (a ratio of 1 % on a log scale): the spread rule's floor."""
    metrics = all_metrics()
    digits = metrics[metric].digits if metric in metrics else ".3f"
    if log_scale or not digits.endswith("f"):
        return math.log(1.01)
    return 10.0 ** -int(digits.strip(".f"))


def seed_spread(stored: pd.DataFrame, tolerances: dict[str, Tolerance]) -> pd.DataFrame:
    """Per cell (data set, model, f, metric): the stored seeds' mean (`stored_mean`), and their mean, standard
    deviation and n on the scale the check compares on (log for ratio-tolerance metrics)."""
    scaled = stored.assign(scaled=[math.log(value) if _on_log_scale(metric, tolerances) and value > 0 else value
                                   for metric, value in zip(stored.metric, stored.value, strict=True)])
    spread = scaled.groupby(SEEDS_OF).agg(stored_mean=("value", "mean"), scaled_mean=("scaled", "mean"),
                                          stored_sd=("scaled", "std"), stored_n=("scaled", "count"))
    return spread.reset_index()


def compare(stored: pd.DataFrame, fresh: pd.DataFrame, tolerances: dict[str, Tolerance],
            sds: float | None = None) -> pd.DataFrame:
    """One row per (fresh run, metric its cell has stored): the stored value of the same seed (NaN where that
    seed is not stored), the stored mean over seeds, fresh, difference, allowed, how many seed standard
    deviations the fresh number is from the stored mean, the basis of the judgement and the verdict. A fresh
    seed the stored set lacks is judged against its cell's stored seeds. `sds`: a fixed allowance in seed
    standard deviations instead of the prediction bound (`seed_allowance`)."""
    runs = ["dataset", "model", "f"]
    fresh_runs = fresh[[*runs, "seed"]].drop_duplicates()
    expected = stored[SEEDS_OF].drop_duplicates().merge(fresh_runs, on=runs)  # each stored metric, per fresh run
    if expected.empty:
        raise BenchError("the fresh runs share no cell with the stored results; run the stored grid "
                         "(see provenance.json beside them) or choose other --stored results")
    paired = (expected.merge(stored[[*CELL, "value"]].rename(columns={"value": "stored"}), on=CELL, how="left")
              .merge(fresh[[*CELL, "value"]].rename(columns={"value": "fresh"}), on=CELL, how="left")
              .merge(seed_spread(stored, tolerances), on=SEEDS_OF))
    judged_by_spread = sum(_has_spread(row) for row in paired.itertuples())
    rows = [_judged(row, tolerances, sds if sds is not None else seed_allowance(row.stored_n, judged_by_spread),
                    sds is None) for row in paired.itertuples()]
    judged = pd.DataFrame(rows, columns=["difference", "allowed", "sds", "k", "basis", "verdict"], index=paired.index)
    return pd.concat([paired[[*CELL, "stored", "stored_mean", "fresh"]], judged], axis=1)


def _in_sds(deviation: float, sd: float) -> float:
    if sd > 0:
        return deviation / sd
    return math.copysign(math.inf, deviation) if deviation else 0.0


def _has_spread(row) -> bool:
    """Whether a cell's stored seeds give a spread to judge by: two or more that differ. Seeds that agree exactly
    (MVAE at the majority baseline on every seed) say nothing of how far another machine's arithmetic moves it."""
    return row.stored_n >= 2 and row.stored_sd > 0


def _judged(row, tolerances: dict[str, Tolerance], sds: float, bound: bool) -> tuple[float, float, float, float, str,
                                                                                     str]:
    """(difference, allowed, standard deviations, allowance k in sds (NaN: a declared tolerance), basis, verdict) of
    one fresh number against its cell."""
    if not _has_spread(row):  # one seed, or seeds that agree exactly: no spread to judge by
        reference = row.stored if not pd.isna(row.stored) else row.stored_mean
        tolerance = tolerances.get(row.metric, Tolerance(0.0))
        basis = "declared tolerance (n = 1)" if row.stored_n < 2 else f"declared tolerance ({row.stored_n} equal seeds)"
        return (row.fresh - reference, tolerance.allowed(reference), math.nan, math.nan, basis,
                verdict(row.metric, reference, row.fresh, tolerance))
    log_scale = _on_log_scale(row.metric, tolerances)
    basis = (f"{sds:.3g} sd of {row.stored_n} seeds" + (" (t bound)" if bound else "")
             + (" (log scale)" if log_scale else ""))
    if pd.isna(row.fresh):
        return math.nan, math.nan, math.nan, sds, basis, "missing"
    value = math.log(row.fresh) if log_scale and row.fresh > 0 else row.fresh
    deviation = value - row.scaled_mean
    allowed = sds * row.stored_sd + printed_resolution(row.metric, log_scale)
    in_sds = _in_sds(deviation, row.stored_sd)
    if row.fresh == row.stored:
        return deviation, allowed, in_sds, sds, basis, "same"
    if abs(deviation) <= allowed:
        return deviation, allowed, in_sds, sds, basis, "ok"
    return deviation, allowed, in_sds, sds, basis, _direction(row.metric, deviation)


def report(comparison: pd.DataFrame, not_run: int) -> str:
    """Every difference, then the counts."""
    from tabulate import tabulate

    moved = comparison[comparison.verdict != "same"].drop(columns="k")  # the basis names k
    counts = comparison.verdict.value_counts()
    lines = []
    if not moved.empty:
        lines.append(tabulate(moved.to_numpy(), headers=list(moved.columns), tablefmt="simple", floatfmt=".4g"))
    summary = ", ".join(f"{counts.get(name, 0)} {name}" for name in VERDICTS)
    lines.append(f"{len(comparison)} numbers compared: {summary}"
                 + (f"; {not_run} stored cells not run fresh" if not_run else ""))
    return "\n".join(lines)


def regressions(comparison: pd.DataFrame) -> pd.DataFrame:
    return comparison[comparison.verdict.isin(["WORSE", "missing"])]


def cells_not_run(stored: pd.DataFrame, fresh: pd.DataFrame) -> int:
    """How many stored cells (data set, model, f, seed) have no fresh run."""
    cells = ["dataset", "model", "f", "seed"]
    merged = stored[cells].drop_duplicates().merge(fresh[cells].drop_duplicates(), how="left", indicator=True)
    return int((merged["_merge"] == "left_only").sum())


@dataclass(frozen=True)
class Checked:
    """What `check` found: the printed report and the regressions' names."""

    report: str
    regressions: tuple[str, ...]

    def raise_for_regressions(self) -> None:
        if self.regressions:
            raise Regression(f"{len(self.regressions)} regression(s) beyond tolerance: {', '.join(self.regressions)}")


def check(runs_root: Path, stored_dir: Path, tolerances: dict[str, Tolerance],
          metrics: tuple[str, ...] | None = None, sds: float | None = None) -> Checked:
    """Compare the finished runs under `runs_root` with the stored set `stored_dir` (only `metrics`, if given)."""
    fresh, stored = at_preset_seed(gather(runs_root)), at_preset_seed(read_stored(stored_dir))
    if metrics:
        fresh, stored = fresh[fresh.metric.isin(metrics)], stored[stored.metric.isin(metrics)]
    comparison = compare(stored, fresh, tolerances, sds)
    text = f"{runs_root} against {stored_dir}:\n{report(comparison, cells_not_run(stored, fresh))}"
    failing = regressions(comparison).itertuples()
    return Checked(text, tuple(f"{row.dataset}/{row.model}/f={row.f:g} {row.metric}"
                               + (f" ({row.sds:+.1f} sd)" if not pd.isna(row.sds) else "") for row in failing))


def store(fresh: pd.DataFrame, runs_root: Path, stored: Path, datasets: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Write `fresh` as the stored result set with the configs of its runs (atomically, file by file); returns
    what was stored. With `datasets`, only those data sets' numbers and configs are replaced: the stored set's
    others are kept, and its provenance records where each part came from."""
    finished = [path for path in run_directories(runs_root) if (path / "metrics.json").is_file()]
    configs = [json.loads((path / "config.json").read_text()) for path in finished]
    if datasets is not None:
        fresh, configs = fresh[fresh.dataset.isin(datasets)], [c for c in configs if c["dataset"] in datasets]
    record = {"runs": str(runs_root), "presets": sorted(set(fresh.preset)), "cells": len(configs),
              "suite_version": __version__, "torch": torch.__version__,
              "machine": f"{platform.machine()} {platform.processor() or platform.platform()}", "cpu": cpu_name(),
              "cpu_threads": torch.get_num_threads()}
    if datasets is not None:
        kept, kept_configs, kept_parts = _kept_part(stored, datasets)
        record = {"parts": [*kept_parts, {**record, "datasets": sorted(datasets)}]}
        fresh, configs = pd.concat([kept, fresh], ignore_index=True), kept_configs + configs
    atomic_write_text(stored / "results.csv", fresh.to_csv(index=False))
    atomic_write_text(stored / "configs.json", json.dumps(configs, indent=1, sort_keys=True) + "\n")
    atomic_write_text(stored / "provenance.json", json.dumps(record, indent=2, default=str) + "\n")
    return fresh


def _kept_part(stored: Path, replaced: tuple[str, ...]) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """What a partial update keeps of the stored set: the numbers and configs of the data sets not `replaced`, and
    the provenance of each earlier part (a set stored whole is one part), narrowed to those data sets."""
    numbers = read_stored(stored)
    numbers = numbers[~numbers.dataset.isin(replaced)]
    configs = [c for c in json.loads((stored / "configs.json").read_text()) if c["dataset"] not in replaced]
    earlier = json.loads((stored / "provenance.json").read_text())
    parts = []
    for part in earlier.get("parts", [{**earlier, "datasets": sorted(set(numbers.dataset))}]):
        datasets = [name for name in part["datasets"] if name not in replaced]
        if datasets:
            parts.append({**part, "datasets": datasets, "cells": sum(c["dataset"] in datasets for c in configs)})
    return numbers, configs, parts


def cpu_name() -> str:
    """The CPU's model name (Linux's /proc/cpuinfo), else what `platform` knows: another CPU gives other last digits."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def update(runs_root: Path, stored: Path, paper_csv: Path, datasets: tuple[str, ...] | None = None) -> str:
    """Store the finished runs under `runs_root` as the result set `stored` (only `datasets`' part of it, if
    given), with its tables to read."""
    from bench.tables import write_tables

    fresh = gather(runs_root)
    if datasets is not None and not set(datasets) <= set(fresh.dataset):
        raise BenchError(f"{runs_root} has no finished runs of {', '.join(sorted(set(datasets) - set(fresh.dataset)))}"
                         "; run them first, or name only the data sets it has")
    stored_numbers = store(fresh, runs_root, stored, datasets)
    write_tables(stored_numbers, runs_root, stored, paper_csv, figures=False)
    return f"stored {len(stored_numbers)} numbers and their tables in {stored}"
