"""Regression checks: fresh results against the stored ones, metric by metric, with a measured false-alarm rate.

A stored result set is a folder (`results/stored/<preset>/`) with `results.csv` (the long table of
`bench.results.gather`) and `provenance.json` (the grid, the suite, the library versions and the machine that
produced it). `check` pairs every stored number with the fresh one of the same (data set, model, f, seed, metric),
each at its preset's evaluation seed (evaluations at other evaluation seeds are stored but not compared), and
judges it by the rule of `bench.regression` (its docstring is the specification: moderated per-cell noise, a
prediction bound per number, a test per model over its rates, each at the level the measured tail of honest seeds
gives). The tails are fitted to the stored sets' seeds, each left out and checked against the others (`calibrate`,
written to `results/stored/calibration.csv` by `bench check --calibrate`); docs/CHECK.md has the false-alarm rate
this gives in and out of sample and under simulated noise. A cell without a spread is judged by its
metric's declared tolerance (`bench.metrics.Metric.tolerance`, with its reason). A missing fresh number is a
regression too; better by more than the allowance is reported (refresh the stored numbers with `--update` when the
change is intended). A fresh number equal to the stored one of its seed is "same": on one machine a config and
seed reproduce exactly.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from pathlib import Path

import pandas as pd

from bench import regression, rundir
from bench.calibration import calibrate
from bench.errors import BenchError, Regression
from bench.files import atomic_write_text
from bench.metrics import Tolerance
from bench.regression import FALSE_ALARM, VERDICTS, Calibration, Scales, Tail, Tails
from bench.results import NOTES, all_notes, at_preset_seed, gather, read_results
from bench.stored import (
    environment_differences,
    gallery_of,
    read_stored,
    run_environments,
    store,
    store_gallery,
    stored_environments,
    stored_sets,
)
from evaluators import all_metrics

CALIBRATION = "calibration.csv"
"""The tails of honest seeds' p-values (`bench.calibration.calibrate`), beside the stored sets they were fitted on."""


def scales() -> Scales:
    """How the declared metrics are judged (directions, log scales, printed digits)."""
    return Scales(all_metrics())


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


def read_calibration(stored_dir: Path) -> tuple[Calibration, Path | None]:
    """The calibrated tails stored beside `stored_dir` (its parent's calibration.csv), and that file; Student's t
    (uncalibrated) where there is no such file."""
    path = stored_dir.parent / CALIBRATION
    if not path.is_file():
        return regression.UNCALIBRATED, None
    tails: dict[str, dict] = {"numbers": {}, "models": {}}
    for row in pd.read_csv(path, keep_default_na=False).itertuples():
        tails[row.test][row.metric] = Tail(float(row.a), float(row.b), float(row.x0), int(row.below), int(row.of))
    return Calibration(*(Tails(mine.pop(POOLED, Tail()), mine) for mine in (tails["numbers"], tails["models"]))), path


POOLED = "(pooled)"
"""calibration.csv's name for a test's tail over every metric."""


def calibration_table(calibration: Calibration, sets: list[str]) -> pd.DataFrame:
    rows = [{"test": test, "metric": metric, **asdict(tail), "from": "+".join(sets)}
            for test, tails in (("numbers", calibration.numbers), ("models", calibration.models))
            for metric, tail in ((POOLED, tails.pooled), *sorted(tails.metrics.items()))]
    return pd.DataFrame(rows, columns=["test", "metric", "a", "b", "x0", "below", "of", "from"])


def write_calibration(root: Path) -> str:
    """`bench check --calibrate`: fit the tails on every stored set under `root`, write calibration.csv."""
    sets = stored_sets(root)
    if not sets:
        raise BenchError(f"no stored sets under {root}; store one with `bench check --update` first")
    found = calibrate(list(sets.values()), default_tolerances(), scales())
    atomic_write_text(root / CALIBRATION, calibration_table(found, list(sets)).to_csv(index=False))
    words = [f"{test}: P(p < x) = {tails.pooled.a:.3g} x^{tails.pooled.b:.3g} over every metric, from "
             f"{tails.pooled.below} of {tails.pooled.of} left-out p-values, and per metric"
             for test, tails in (("numbers", found.numbers), ("models", found.models))]
    return f"calibrated on {', '.join(sets)}: " + "; ".join(words) + f"; wrote {root / CALIBRATION}"


def numbers_report(comparison: pd.DataFrame, not_run: int) -> str:
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


def power_report(stored: pd.DataFrame, where: Path) -> str:
    """`bench check --power`: the table of `bench.regression.power`, with how to read it."""
    from tabulate import tabulate

    calibration, source = read_calibration(where)
    table = regression.power(at_preset_seed(stored), scales(), calibration)
    if table.empty:
        return f"{where}: no cell has two or more seeds that differ; its numbers are judged by declared tolerances"
    return (f"{where}: the worsening `bench check` flags with {regression.DETECTED:.0%} probability for one fresh "
            f"seed of every stored cell, at a {FALSE_ALARM:.0%} false-alarm rate over the whole check, "
            + (f"limits calibrated by {source}" if source else "limits not calibrated (no calibration.csv)")
            + " (medians over cells; log-scale metrics as a factor):\n"
            + tabulate(table.to_numpy(), headers=list(table.columns), tablefmt="simple", floatfmt=".3g")
            + "\none_number: one number alone; every_rate: the same worsening of one model's metric at every rate")


def models_report(models: pd.DataFrame) -> str:
    """The models whose metric moved beyond its limit over the rates, then the counts."""
    from tabulate import tabulate

    moved = models[models.verdict != "ok"]
    lines = [tabulate(moved.to_numpy(), headers=list(moved.columns), tablefmt="simple", floatfmt=".3g")] \
        if not moved.empty else []
    counts = models.verdict.value_counts()
    lines.append(f"{len(models)} models' metrics over their rates compared: "
                 + ", ".join(f"{counts.get(name, 0)} {name}" for name in ("ok", "better", "WORSE")))
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


def check(runs_root: Path | None, stored_dir: Path, tolerances: dict[str, Tolerance],
          metrics: tuple[str, ...] | None = None, sds: float | None = None, results: Path | None = None) -> Checked:
    """Compare the finished runs under `runs_root` (or the results file `results`, a results.csv written
    elsewhere) with the stored set `stored_dir` (only `metrics`, if given): every number, then every model's sum
    over rates; where anything regressed, the environment fields that differ from the stored set's."""
    stored = read_stored(stored_dir)  # first: a wrong --stored is the error to report, whatever the runs
    if results is not None:
        fresh, where = read_results(results), results
        beside = results.parent / "provenance.json"
        fresh_envs = stored_environments(json.loads(beside.read_text())) if beside.is_file() else []
    else:
        fresh, where = gather(runs_root), runs_root
        fresh_envs = run_environments([path for path in rundir.run_directories(runs_root) if rundir.finished(path)])
    same_experiment(fresh, stored, stored_dir, runs_root if results is None else None)
    fresh, stored = at_preset_seed(fresh), at_preset_seed(stored)
    if metrics:
        fresh, stored = fresh[fresh.metric.isin(metrics)], stored[stored.metric.isin(metrics)]
    calibration, source = read_calibration(stored_dir)
    comparison = regression.judge_numbers(stored, fresh, tolerances, scales(), sds, calibration)
    models = regression.judge_models(stored, fresh, scales(), calibration)
    text = (f"{where} against {stored_dir} ("
            + (f"limits calibrated by {source}" if source else "limits not calibrated: no calibration.csv") + "):\n"
            f"{numbers_report(comparison, cells_not_run(stored, fresh))}\n{models_report(models)}")
    failing = [f"{row.dataset}/{row.model}/f={row.f:g} {row.metric}" + (f" ({row.sds:+.1f} sd)"
                                                                       if not pd.isna(row.sds) else "")
               for row in regressions(comparison).itertuples()]
    failing += [f"{row.dataset}/{row.model} {row.metric} "
                f"at every rate (mean worsening {row.z:+.3g}; T {row.t:.1f} > {row.limit:.1f})"
                for row in models[models.verdict == "WORSE"].itertuples()]
    if failing:
        provenance = stored_dir / "provenance.json"
        differences = environment_differences(fresh_envs, stored_environments(json.loads(provenance.read_text()))) \
            if provenance.is_file() and fresh_envs else []
        if not fresh_envs:
            text += "\nthe fresh numbers carry no record of where they were measured (no environment to compare)"
        elif differences:
            text += ("\nwhere the fresh numbers were measured differs from the stored set's (a machine difference "
                     "moves last digits, not means by many sds):\n" + "\n".join(differences))
        else:
            text += "\nthe fresh and the stored environments do not differ in any recorded field"
    return Checked(text, tuple(failing))


IDENTITY_FIELDS = ("model", "dataset", "f", "seed")  # what tells two runs of one experiment apart


def same_experiment(fresh: pd.DataFrame, stored: pd.DataFrame, stored_dir: Path, runs_root: Path | None) -> None:
    """Refuse, in one line, to compare numbers of different experiments: other presets, or the same preset with a
    different training configuration (a length override, other options) in the runs the two share."""
    ours, theirs = set(fresh.preset), set(stored.preset)
    if not ours & theirs:
        raise BenchError(f"the fresh numbers are of preset {', '.join(sorted(ours))} and {stored_dir} of "
                         f"{', '.join(sorted(theirs))}: different experiments, not comparable; check against "
                         f"results/stored/{sorted(ours)[0]} or run the stored set's preset")
    configs = stored_dir / "configs.json"
    if runs_root is None or not configs.is_file():
        return
    stored_configs = {tuple(config[key] for key in IDENTITY_FIELDS): config for config in
                      json.loads(configs.read_text())}
    differing: set[str] = set()
    for run in rundir.run_directories(runs_root):
        mine = json.loads((run / rundir.CONFIG).read_text())
        other = stored_configs.get(tuple(mine[key] for key in IDENTITY_FIELDS))
        if other is not None:
            differing |= {key for key in set(mine) | set(other) if key not in ("suite_version", *IDENTITY_FIELDS)
                          and mine.get(key) != other.get(key)}
    if differing:
        raise BenchError(f"the fresh runs were trained with other settings than {stored_dir}'s "
                         f"({', '.join(sorted(differing))} differ in configs.json): not comparable; rerun without "
                         "the overrides, or store them as a set of their own")


def update(runs_root: Path, stored: Path, paper_csv: Path, datasets: tuple[str, ...] | None = None) -> str:
    """Store the finished runs under `runs_root` as the result set `stored` (only `datasets`' part of it, if
    given), with its tables to read."""
    from bench.tables import write_tables

    fresh = gather(runs_root)
    if datasets is not None and not set(datasets) <= set(fresh.dataset):
        raise BenchError(f"{runs_root} has no finished runs of {', '.join(sorted(set(datasets) - set(fresh.dataset)))}"
                         "; run them first, or name only the data sets it has")
    stored_numbers = store(fresh, runs_root, stored, datasets)
    notes = all_notes(runs_root, fresh.dataset)
    if datasets is not None and (stored / NOTES).is_file():  # the kept data sets keep their notes
        notes = {**json.loads((stored / NOTES).read_text()), **notes}
    atomic_write_text(stored / NOTES, json.dumps(notes, indent=1, sort_keys=True) + "\n")
    pictures = store_gallery(runs_root, stored, datasets)
    write_tables(stored_numbers, runs_root, stored, paper_csv, figures_from=gallery_of(stored), notes=notes)
    return f"stored {len(stored_numbers)} numbers, their tables and {pictures} runs' figures in {stored}"


def rerender(stored: Path, paper_csv: Path, out: Path | None = None) -> tuple[str, pd.DataFrame, Path]:
    """Write a stored set's tables, REPORT.md, results.csv and claims from its results.csv and notes.json into `out`
    (the stored set itself where `out` is it or None: after a change of how tables are drawn; the numbers are not
    touched). Returns a line saying so, the numbers and where its runs' figures are: its gallery, else the runs
    folder the set was made from."""
    from bench.tables import write_tables

    out = stored if out is None else out
    numbers = read_stored(stored)
    notes = json.loads((stored / NOTES).read_text()) if (stored / NOTES).is_file() else {}
    provenance = json.loads((stored / "provenance.json").read_text()) if (stored / "provenance.json").is_file() else {}
    runs = Path(provenance.get("runs") or provenance.get("parts", [{}])[-1].get("runs", str(stored)))
    write_tables(numbers, runs, out, paper_csv, figures_from=gallery_of(stored), notes=notes)
    line = f"wrote the tables of {stored} ({len(numbers)} stored numbers) into {out}"
    return line, numbers, gallery_of(stored) or runs
