"""Regression checks: fresh results against the stored ones, metric by metric, with a stated power.

A stored result set is a folder (`results/stored/<preset>/`) with `results.csv` (the long table of
`bench.results.gather`) and `provenance.json` (the grid, the suite, the library versions and the machine that
produced it). `compare` pairs every stored number with the fresh one of the same (data set, model, f, seed,
metric), each at its preset's evaluation seed (evaluations at other evaluation seeds are stored but not
compared), on the metric's scale (`bench.metrics.Metric.scale`: log for the condition number and the Fréchet
distances), and judges it against the stored seeds of its cell (data set, model, f, metric):

    the noise       the seed standard deviation s pooled over the cells (the four rates) of one data set, model
                    and metric, s² = Σ (n_c − 1) s_c² / Σ (n_c − 1): per model, because seeds vary more for some
                    models than others (MCCVAE on Fashion-MNIST); pooled over rates, because three seeds per cell
                    say little about a spread (2 df), twelve over four rates more (8 df). It is then moderated
                    (empirical Bayes, as limma): shrunk towards the other models' pooled variance with at most
                    as much weight as its own degrees of freedom, so that a few seeds that happen to agree
                    closely do not make an ordinary seed look like a regression.
    one number      WORSE when it is worse than its cell's stored mean by more than k · s · √(1 + 1/n_c) plus
                    one unit of the tables' last printed digit, k = t(1 − (α/2)/m; df) (Student's t
                    prediction bound for one new seed, Bonferroni over the m numbers judged this way).
    one model       a defect usually moves a model's metric at every rate together: per (data set, model,
                    metric), the fresh seed's mean worsening over the rates, D = mean_c (y_c − ȳ_c), against
                    the spread of a seed's mean over the rates, s_R = s · √q. A seed sets the initial weights at
                    every rate, so its runs are correlated across rates: q = (1 + (r − 1) ρ) / r, estimated per
                    data set and metric from the stored seeds' mean residuals over the rates (`seed_effects`).
                    WORSE when the one-sided p-value of T = D / (s_R · √(1/k + 1/n)) under t(df) is below
                    (α/2)/m' (Bonferroni over the m' models and metrics).

The false-alarm rate of the whole check is α = 5 %, half for the single numbers and half for the models' sums.
`--sds K` fixes the single numbers' k instead. A cell whose model has no pooled spread (one stored seed per cell,
or seeds that agree exactly: MVAE at the majority baseline on every seed) is judged by the metric's declared
tolerance (`bench.metrics.Metric.tolerance`, with its reason) around the stored value. `power` states, per
metric, the smallest drop the check flags. A missing fresh number is a regression too; better by more than the
allowance is reported (refresh the stored numbers with `--update` when the change is intended). A fresh number
equal to the stored one of its seed is "same": on one machine a config and seed reproduce exactly.
"""

from __future__ import annotations

import json
import math
import platform
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import stats

from bench import __version__, rundir
from bench.errors import BenchError, Regression
from bench.files import atomic_write_text
from bench.metrics import Tolerance
from bench.presets import preset
from bench.results import NOTES, RESULT_COLUMNS, all_notes, at_preset_seed, gather, read_results
from bench.runtime import cpu_name, environment
from evaluators import all_metrics

CELL = ["dataset", "model", "f", "seed", "metric"]
SEEDS_OF = ["dataset", "model", "f", "metric"]  # a cell's numbers over seeds
NOISE_OF = ["dataset", "model", "metric"]  # the cells whose seed variances are pooled
TYPICAL_OF = ["dataset", "metric"]  # the typical seed variance a model's is moderated towards
VERDICTS = ("same", "ok", "better", "WORSE", "missing")
FALSE_ALARM = 0.05
"""The chance that a check of fresh runs drawn like the stored seeds reports any regression (Bonferroni)."""


def seed_allowance(stored_n: int, judged: int, false_alarm: float = FALSE_ALARM, df: int | None = None) -> float:
    """How many seed standard deviations below the mean of `stored_n` seeds one fresh seed may fall: the one-sided
    Student-t prediction bound t(1 − α/m; df) · √(1 + 1/n), α = `false_alarm` split over `judged` numbers, df the
    degrees of freedom of the standard deviation (n − 1 when it is the cell's own)."""
    df = stored_n - 1 if df is None else df
    return float(stats.t.ppf(1 - false_alarm / max(judged, 1), df) * math.sqrt(1 + 1 / stored_n))


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


def _on_log_scale(metric: str) -> bool:
    metrics = all_metrics()
    return metric in metrics and metrics[metric].log_scale


def _scaled(metric: str, value: float) -> float:
    return math.log(value) if _on_log_scale(metric) and value > 0 else value


def _worse_sign(metric: str) -> float:
    """+1 where a larger value is worse, −1 where a smaller one is; 0 for a reference number (either way)."""
    metrics = all_metrics()
    direction = metrics[metric].higher_is_better if metric in metrics else None
    return 0.0 if direction is None else (-1.0 if direction else 1.0)


def printed_resolution(metric: str, log_scale: bool) -> float:
    """One unit of the tables' last printed digit (a ratio of 1 % on a log scale): the spread rule's floor."""
    metrics = all_metrics()
    digits = metrics[metric].digits if metric in metrics else ".3f"
    if log_scale or not digits.endswith("f"):
        return math.log(1.01)
    return 10.0 ** -int(digits.strip(".f"))


def seed_spread(stored: pd.DataFrame) -> pd.DataFrame:
    """Per cell (data set, model, f, metric): the stored seeds' mean (`stored_mean`), their mean, standard deviation
    and n on the metric's scale, and the model's pooled seed standard deviation (`pooled_sd`, `pooled_df`: over the
    cells of its data set and metric whose seeds differ; NaN and 0 where none do)."""
    scaled = stored.assign(scaled=[_scaled(metric, value) for metric, value in zip(stored.metric, stored.value,
                                                                                  strict=True)])
    spread = scaled.groupby(SEEDS_OF).agg(stored_mean=("value", "mean"), scaled_mean=("scaled", "mean"),
                                          stored_sd=("scaled", "std"), stored_n=("scaled", "count")).reset_index()
    varied = spread[(spread.stored_n >= 2) & (spread.stored_sd > 0)]
    varied = varied.assign(ss=(varied.stored_n - 1) * varied.stored_sd**2, dof=varied.stored_n - 1)
    per_model = varied.groupby(NOISE_OF)[["ss", "dof"]].sum().reset_index()
    typical = varied.groupby(TYPICAL_OF)[["ss", "dof"]].sum().reset_index().rename(columns={"ss": "ss0", "dof": "dof0"})
    pooled = per_model.merge(typical, on=TYPICAL_OF)
    # moderated (empirical Bayes, as limma): the model's variance shrunk towards the other models' of its data set and
    # metric, with at most as much weight as the model's own degrees of freedom, so that two or three seeds that
    # happen to agree closely do not make an ordinary seed look like a regression, while a noisy model keeps most
    # of its spread (no other model: no shrinking)
    others_ss, others_df = pooled.ss0 - pooled.ss, pooled.dof0 - pooled.dof
    prior_df = np.minimum(pooled.dof, others_df)
    prior_var = (others_ss / others_df.where(others_df > 0)).fillna(0.0)
    pooled["pooled_sd"] = ((pooled.ss + prior_df * prior_var) / (pooled.dof + prior_df)) ** 0.5
    pooled["dof"] = pooled.dof + prior_df
    spread = spread.merge(pooled[[*NOISE_OF, "pooled_sd", "dof"]].rename(columns={"dof": "pooled_df"}),
                          on=NOISE_OF, how="left")
    spread["pooled_df"] = spread.pooled_df.fillna(0).astype(int)
    return spread


def compare(stored: pd.DataFrame, fresh: pd.DataFrame, tolerances: dict[str, Tolerance],
            sds: float | None = None) -> pd.DataFrame:
    """One row per (fresh run, metric its cell has stored): the stored value of the same seed (NaN where that
    seed is not stored), the stored mean over seeds, fresh, difference, allowed, how many pooled seed standard
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
              .merge(seed_spread(stored), on=SEEDS_OF))
    judged_by_spread = sum(_has_spread(row) for row in paired.itertuples())
    rows = [_judged(row, tolerances, sds if sds is not None else
                    seed_allowance(row.stored_n, judged_by_spread, FALSE_ALARM / 2, row.pooled_df), sds is None)
            for row in paired.itertuples()]
    judged = pd.DataFrame(rows, columns=["difference", "allowed", "sds", "k", "basis", "verdict"], index=paired.index)
    return pd.concat([paired[[*CELL, "stored", "stored_mean", "fresh"]], judged], axis=1)


def _in_sds(deviation: float, sd: float) -> float:
    if sd > 0:
        return deviation / sd
    return math.copysign(math.inf, deviation) if deviation else 0.0


def _has_spread(row) -> bool:
    """Whether a number is judged by the seeds' spread: its model has a pooled spread and its own cell's seeds do
    not agree exactly (seeds that agree exactly, MVAE at the majority baseline on every seed, say nothing of how
    far another machine's arithmetic moves the number)."""
    return row.pooled_df > 0 and not (row.stored_n >= 2 and row.stored_sd == 0)


def _judged(row, tolerances: dict[str, Tolerance], sds: float, bound: bool) -> tuple[float, float, float, float, str,
                                                                                     str]:
    """(difference, allowed, pooled standard deviations, allowance k (NaN: a declared tolerance), basis, verdict) of
    one fresh number against its cell."""
    if not _has_spread(row):  # no spread to judge by
        reference = row.stored if not pd.isna(row.stored) else row.stored_mean
        tolerance = tolerances.get(row.metric, Tolerance(0.0))
        basis = "declared tolerance (n = 1)" if row.stored_n < 2 else f"declared tolerance ({row.stored_n} equal seeds)"
        return (row.fresh - reference, tolerance.allowed(reference), math.nan, math.nan, basis,
                verdict(row.metric, reference, row.fresh, tolerance))
    log_scale = _on_log_scale(row.metric)
    basis = (f"{sds:.3g} sd of {row.stored_n} seeds, sd pooled over {row.pooled_df} df" + (" (t bound)" if bound
             else "") + (" (log scale)" if log_scale else ""))
    if pd.isna(row.fresh):
        return math.nan, math.nan, math.nan, sds, basis, "missing"
    deviation = _scaled(row.metric, row.fresh) - row.scaled_mean
    allowed = sds * row.pooled_sd + printed_resolution(row.metric, log_scale)
    in_sds = _in_sds(deviation, row.pooled_sd)
    if row.fresh == row.stored:
        return deviation, allowed, in_sds, sds, basis, "same"
    if abs(deviation) <= allowed:
        return deviation, allowed, in_sds, sds, basis, "ok"
    return deviation, allowed, in_sds, sds, basis, _direction(row.metric, deviation)


def seed_effects(stored: pd.DataFrame, spread: pd.DataFrame | None = None) -> pd.DataFrame:
    """Per (data set, model, metric): the spread of a seed's mean over the model's rates, s_R. A seed sets a run's
    initial weights at every rate, so a seed's runs are correlated across rates: s_R² = s² · q, with s² the model's
    (moderated, pooled) seed variance of single numbers and q = (1 + (r − 1) ρ) / r the data set's ratio of the
    variance of the seeds' mean residuals over the rates, R_s = mean_c (y_cs − ȳ_c), to the single numbers'
    variance, pooled over its models (ρ: the correlation of one seed's residuals across rates; q between 1/r,
    independent, and 1, a seed that moves every rate alike). Columns: seed_sd (s_R), seed_df, seeds, rates, q."""
    columns = [*NOISE_OF, "seed_sd", "seed_df", "seeds", "rates", "q"]
    spread = seed_spread(stored) if spread is None else spread  # `spread`: seed_spread(stored), when at hand
    varied = spread[(spread.stored_n >= 2) & (spread.stored_sd > 0) & (spread.pooled_df > 0)]
    scaled = stored.assign(scaled=[_scaled(metric, value) for metric, value in zip(stored.metric, stored.value,
                                                                                  strict=True)])
    scaled = scaled.merge(varied[[*SEEDS_OF, "scaled_mean"]], on=SEEDS_OF)
    if scaled.empty:
        return pd.DataFrame(columns=columns)
    scaled["residual"] = scaled.scaled - scaled.scaled_mean
    per_seed = scaled.groupby([*NOISE_OF, "seed"]).agg(R=("residual", "mean"), rates=("f", "nunique")).reset_index()
    per_model = per_seed.groupby(NOISE_OF).agg(ss_R=("R", lambda r: float((r**2).sum())), seeds=("R", "size"),
                                               rates=("rates", "max")).reset_index()
    per_model["dof_R"] = per_model.seeds - 1
    single = varied.assign(ss=(varied.stored_n - 1) * varied.stored_sd**2, dof=varied.stored_n - 1)
    single = single.groupby(NOISE_OF).agg(ss=("ss", "sum"), dof=("dof", "sum"), sd=("pooled_sd", "first"),
                                          df=("pooled_df", "first")).reset_index()
    per_model = per_model[per_model.dof_R > 0].merge(single, on=NOISE_OF)
    ratio = per_model.groupby(TYPICAL_OF).apply(
        lambda group: (group.ss_R.sum() / group.dof_R.sum()) / (group.ss.sum() / group.dof.sum()),
        include_groups=False).rename("q").reset_index()
    per_model = per_model.merge(ratio, on=TYPICAL_OF)
    per_model["q"] = per_model.q.clip(lower=1 / per_model.rates, upper=1.0)
    per_model["seed_sd"] = per_model.sd * per_model.q**0.5
    per_model["seed_df"] = per_model.df
    return per_model[columns]


def compare_models(stored: pd.DataFrame, fresh: pd.DataFrame) -> pd.DataFrame:
    """The models' shifts over rates (module docstring): one row per (data set, model, metric) with a direction, a
    seed spread and fresh numbers at two or more rates: cells, the mean shift in seed sds s_R (positive: worse), T,
    its one-sided p-value, the bound on p and the verdict (WORSE, better or ok)."""
    columns = [*NOISE_OF, "cells", "shift_sds", "t", "p", "bound", "verdict"]
    spread = seed_spread(stored)
    fresh = fresh.merge(spread[[*SEEDS_OF, "scaled_mean", "stored_n", "stored_sd"]], on=SEEDS_OF)
    fresh = fresh[(fresh.stored_n >= 2) & (fresh.stored_sd > 0) & fresh.metric.map(lambda m: _worse_sign(m) != 0)
                  & fresh.value.notna()]
    if fresh.empty:
        return pd.DataFrame(columns=columns)
    fresh = fresh.assign(scaled=[_scaled(m, v) for m, v in zip(fresh.metric, fresh.value, strict=True)])
    cells = fresh.groupby(SEEDS_OF).agg(fresh_mean=("scaled", "mean"), k=("scaled", "count"),
                                        scaled_mean=("scaled_mean", "first")).reset_index()
    cells["worse"] = [_worse_sign(row.metric) * (row.fresh_mean - row.scaled_mean) for row in cells.itertuples()]
    models = (cells.groupby(NOISE_OF).agg(cells=("worse", "size"), shift=("worse", "mean"), k=("k", "min"))
              .reset_index().merge(seed_effects(stored, spread), on=NOISE_OF))
    models = models[models.cells >= 2]
    if models.empty:
        return pd.DataFrame(columns=columns)
    bound = (FALSE_ALARM / 2) / len(models)
    models["shift_sds"] = models["shift"] / models.seed_sd
    models["t"] = models.shift_sds / (1 / models.k + 1 / models.seeds).pow(0.5)
    models["p"] = [float(stats.t.sf(t, df)) for t, df in zip(models.t, models.seed_df, strict=True)]
    models["bound"] = bound
    models["verdict"] = ["WORSE" if p < bound else "better" if float(stats.t.cdf(t, df)) < bound else "ok"
                         for t, p, df in zip(models.t, models.p, models.seed_df, strict=True)]
    return models[columns].reset_index(drop=True)


def power(stored: pd.DataFrame) -> pd.DataFrame:
    """Per (data set, metric): the smallest worsening the check flags at its false-alarm rate for one fresh seed of
    every stored cell (as many numbers and model shifts as a full fresh run is judged by): as one number alone, and as
    the same shift of one model's metric at every rate. Medians over models, in the metric's units (a log-scale
    metric: as a factor, e.g. 1.25); seed_sd is the single numbers' (moderated, pooled) seed sd, rate_sd the
    spread of a seed's mean over the rates (s_R)."""
    stored = at_preset_seed(stored)
    spread = seed_spread(stored)
    effects = seed_effects(stored, spread)
    spread = spread[(spread.pooled_df > 0) & spread.metric.map(lambda m: _worse_sign(m) != 0)]
    effects = effects[effects.metric.map(lambda m: _worse_sign(m) != 0)]
    numbers, aggregates = len(spread), max(len(effects), 1)
    rows = []
    for (dataset, metric), cells in spread.groupby(["dataset", "metric"]):
        per_model = cells.groupby("model").agg(sd=("pooled_sd", "first"), df=("pooled_df", "first"),
                                               n=("stored_n", "median"))
        one = [seed_allowance(int(m.n), numbers, FALSE_ALARM / 2, int(m.df)) * m.sd for m in per_model.itertuples()]
        mine = effects[(effects.dataset == dataset) & (effects.metric == metric)]
        together = [float(stats.t.ppf(1 - FALSE_ALARM / 2 / aggregates, m.seed_df)) * m.seed_sd
                    * math.sqrt(1 + 1 / m.seeds) for m in mine.itertuples()]
        log = _on_log_scale(metric)
        shown = (lambda value: math.exp(value)) if log else (lambda value: value)
        rows.append({"dataset": dataset, "metric": metric, "scale": "log (factor)" if log else "linear",
                     "models": len(per_model), "seed_sd": shown(float(np.median(per_model.sd))),
                     "rate_sd": shown(float(np.median(mine.seed_sd))) if len(mine) else math.nan,
                     "one_number": shown(float(np.median(one)) + printed_resolution(metric, log)),
                     "every_rate": shown(float(np.median(together))) if together else math.nan,
                     "rates": int(mine.rates.median()) if len(mine) else 1})
    return pd.DataFrame(rows)


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


def power_report(stored: pd.DataFrame, where: Path) -> str:
    """`bench check --power`: the table of `power`, with how to read it."""
    from tabulate import tabulate

    table = power(stored)
    if table.empty:
        return f"{where}: no cell has two or more seeds that differ; its numbers are judged by declared tolerances"
    return (f"{where}: the smallest worsening `bench check` flags for one fresh seed of every stored cell, at a "
            f"{FALSE_ALARM:.0%} false-alarm rate over the whole check (medians over models; log-scale metrics as a "
            "factor):\n" + tabulate(table.to_numpy(), headers=list(table.columns), tablefmt="simple",
                                     floatfmt=".3g")
            + "\none_number: one number alone; every_rate: the same worsening of one model's metric at every rate")


def models_report(models: pd.DataFrame) -> str:
    """The models' sums that moved beyond their bound, then the counts."""
    from tabulate import tabulate

    moved = models[models.verdict != "ok"]
    lines = [tabulate(moved.to_numpy(), headers=list(moved.columns), tablefmt="simple", floatfmt=".3g")] \
        if not moved.empty else []
    counts = models.verdict.value_counts()
    lines.append(f"{len(models)} model sums over rates compared: "
                 + ", ".join(f"{counts.get(name, 0)} {name}" for name in ("ok", "better", "WORSE")))
    return "\n".join(lines)


def regressions(comparison: pd.DataFrame) -> pd.DataFrame:
    return comparison[comparison.verdict.isin(["WORSE", "missing"])]


def run_environments(run_dirs: list[Path]) -> list[dict]:
    """The distinct environments the runs were trained in (the current one for runs that did not record theirs)."""
    found = [json.loads((path / rundir.ENVIRONMENT).read_text()) if (path / rundir.ENVIRONMENT).is_file()
             else environment() for path in run_dirs]
    return [json.loads(text) for text in sorted({json.dumps(env, sort_keys=True) for env in found})]


def stored_environments(record: dict) -> list[dict]:
    """A stored set's environments from its provenance (older sets: their torch, CPU and threads)."""
    parts = record.get("parts", [record])
    found = []
    for part in parts:
        found += part.get("environment") or [{"torch": part.get("torch"), "cpu": part.get("cpu"),
                                              "threads": part.get("cpu_threads")}]
    return found


def environment_differences(fresh: list[dict], stored: list[dict]) -> list[str]:
    """One line per environment field whose values differ between the fresh and the stored environments."""
    lines = []
    for field in sorted({key for env in fresh + stored for key in env}):
        ours = sorted({str(env.get(field)) for env in fresh if field in env})
        theirs = sorted({str(env.get(field)) for env in stored if field in env})
        if ours and theirs and ours != theirs:
            lines.append(f"  {field}: fresh {' / '.join(ours)}; stored {' / '.join(theirs)}")
    return lines


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
        fresh, source = read_results(results), results
        beside = results.parent / "provenance.json"
        fresh_envs = stored_environments(json.loads(beside.read_text())) if beside.is_file() else []
    else:
        fresh, source = gather(runs_root), runs_root
        fresh_envs = run_environments([path for path in rundir.run_directories(runs_root) if rundir.finished(path)])
    same_experiment(fresh, stored, stored_dir, runs_root if results is None else None)
    fresh, stored = at_preset_seed(fresh), at_preset_seed(stored)
    if metrics:
        fresh, stored = fresh[fresh.metric.isin(metrics)], stored[stored.metric.isin(metrics)]
    comparison = compare(stored, fresh, tolerances, sds)
    models = compare_models(stored, fresh)
    text = (f"{source} against {stored_dir}:\n{report(comparison, cells_not_run(stored, fresh))}\n"
            f"{models_report(models)}")
    failing = [f"{row.dataset}/{row.model}/f={row.f:g} {row.metric}" + (f" ({row.sds:+.1f} sd)"
                                                                       if not pd.isna(row.sds) else "")
               for row in regressions(comparison).itertuples()]
    failing += [f"{row.dataset}/{row.model} {row.metric} at every rate ({row.shift_sds:+.1f} sd on average)"
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


def store(fresh: pd.DataFrame, runs_root: Path, stored: Path, datasets: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Write `fresh` as the stored result set with the configs of its runs (atomically, file by file); returns
    what was stored. With `datasets`, only those data sets' numbers and configs are replaced: the stored set's
    others are kept, and its provenance records where each part came from."""
    finished = [path for path in rundir.run_directories(runs_root) if rundir.finished(path)]
    configs = [json.loads((path / rundir.CONFIG).read_text()) for path in finished]
    if datasets is not None:
        fresh, configs = fresh[fresh.dataset.isin(datasets)], [c for c in configs if c["dataset"] in datasets]
    record = {"runs": str(runs_root), "presets": sorted(set(fresh.preset)), "cells": len(configs),
              "suite_version": __version__, "torch": torch.__version__,
              "machine": f"{platform.machine()} {platform.processor() or platform.platform()}", "cpu": cpu_name(),
              "cpu_threads": torch.get_num_threads(), "environment": run_environments(finished)}
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
    write_tables(stored_numbers, runs_root, stored, paper_csv, figures=False, notes=notes)
    return f"stored {len(stored_numbers)} numbers and their tables in {stored}"


def restore(stored: Path, runs_root: Path) -> str:
    """Rebuild the run directories of a stored set's runs from its configs.json and results.csv: config.json,
    metrics.json and each evaluator's numbers at every stored evaluation seed (no checkpoint, no figures; every file
    says `restored_from`). A sweep over the same grid then takes those cells as done and trains only the others,
    so a long sweep stored part-way (`check --update`) goes on in another checkout. A run directory that exists is
    left as it is. The control rows are restored too (control.json and their numbers), so that tables, claims and a
    resumed sweep see them: the sweep judges only a control that is missing."""
    from bench.sweep import prepare_runs_root

    numbers = read_stored(stored)
    configs = json.loads((stored / "configs.json").read_text())
    provenance = json.loads((stored / "provenance.json").read_text()) if (stored / "provenance.json").is_file() else {}
    environments = stored_environments(provenance) if provenance else []
    prepare_runs_root(runs_root)
    origin, written = {"restored_from": str(stored)}, 0
    by_cell = {cell: group for cell, group in numbers[numbers.f.notna()].groupby(["dataset", "model", "f", "seed"])}
    for config in configs:
        run = rundir.run_dir(runs_root, config["dataset"], config["model"], config["f"], config["seed"])
        rows = by_cell.get((config["dataset"], config["model"], float(config["f"]), config["seed"]))
        if rows is None or run.exists():
            continue
        own = preset(config["preset"]).evaluation.seed
        atomic_write_text(run / rundir.CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
        if environments:
            atomic_write_text(run / rundir.ENVIRONMENT, json.dumps(environments[0], indent=2) + "\n")
        _restore_evaluations(run / rundir.EVAL, rows, own, origin, every_evaluator=True)
        trained = rows[(rows.eval_seed == own) & ~rows.metric.str.contains(".", regex=False)]
        metrics = {**dict(zip(trained.metric, trained.value, strict=True)), "epochs": config["epochs"], **origin}
        atomic_write_text(run / rundir.METRICS, json.dumps(metrics, indent=2) + "\n")  # last: the run is finished
        written += 1
    controls = _restore_controls(numbers, configs, runs_root, origin)
    return f"restored {written} runs and {controls} control rows of {stored} into {runs_root}"


def _restore_evaluations(eval_root: Path, rows: pd.DataFrame, own_seed: int, origin: dict,
                         every_evaluator: bool) -> None:
    """eval/<evaluator>.json (eval/seed=S/ for another evaluation seed) from a stored cell's rows: for every
    registered evaluator (a run: one without numbers counts as evaluated), or only those with numbers (a control)."""
    from bench.evaluate import check_names

    for eval_seed, group in rows.groupby("eval_seed"):
        out = rundir.evaluation_dir(eval_root, int(eval_seed), own_seed)
        values = dict(zip(group.metric, group.value, strict=True))
        for name in check_names(None):
            found = {metric[len(name) + 1:]: value for metric, value in values.items()
                     if metric.startswith(f"{name}.")}
            if found or every_evaluator:
                atomic_write_text(out / f"{name}.json", json.dumps({**found, **origin}, indent=2) + "\n")


def _restore_controls(numbers: pd.DataFrame, configs: list[dict], runs_root: Path, origin: dict) -> int:
    """The stored control rows (f NaN) as control directories: control.json and eval/<evaluator>.json per
    evaluation seed; a control directory that exists is left as it is."""
    options = {config["dataset"]: config["dataset_options"] for config in configs}
    written = 0
    for (dataset, row, preset_name), rows in numbers[numbers.f.isna()].groupby(["dataset", "model", "preset"]):
        directory = rundir.controls_dir(runs_root, dataset, row)
        if directory.exists():
            continue
        own = preset(preset_name).evaluation.seed
        _restore_evaluations(directory / rundir.EVAL, rows, own, origin, every_evaluator=False)
        record = {"row": row, "dataset": dataset, "preset": preset_name, "dataset_options": options.get(dataset, {}),
                  "seed": own, **origin}
        atomic_write_text(directory / rundir.CONTROL, json.dumps(record, indent=2, sort_keys=True) + "\n")  # last
        written += 1
    return written


def rerender(stored: Path, paper_csv: Path, out: Path | None = None) -> tuple[str, pd.DataFrame, Path]:
    """Write a stored set's tables, REPORT.md, results.csv and claims from its results.csv and notes.json into `out`
    (the stored set itself where `out` is it or None: after a change of how tables are drawn; the numbers are not
    touched). Returns a line saying so, the numbers and the runs folder the set was made from."""
    from bench.tables import write_tables

    out = stored if out is None else out
    numbers = read_stored(stored)
    notes = json.loads((stored / NOTES).read_text()) if (stored / NOTES).is_file() else {}
    provenance = json.loads((stored / "provenance.json").read_text()) if (stored / "provenance.json").is_file() else {}
    runs = Path(provenance.get("runs") or provenance.get("parts", [{}])[-1].get("runs", str(stored)))
    write_tables(numbers, runs, out, paper_csv, figures=False, notes=notes)
    return f"wrote the tables of {stored} ({len(numbers)} stored numbers) into {out}", numbers, runs
