"""The regression check's statistics: pure functions of results frames (columns dataset, model, f, seed, metric,
value), with no files and no printing (`bench.check` reads the sets and says what it found).

Every number is compared on its metric's scale (log for a log-scale metric) against the stored seeds of its cell
(data set, model, f, metric):

    the noise       each cell's own seed variance s², moderated by empirical Bayes (Smyth 2004, as limma):
                    s̃² = (d₀ s₀² + d s²) / (d₀ + d), with d = n − 1 its own degrees of freedom, s₀² the model's
                    typical variance of that metric (over its rates; over all models where it has one rate only)
                    and d₀ the prior's degrees of freedom, estimated from the stored set itself by the moments of
                    log s² (`prior_df`): how much the noise really differs between a model's rates (equal noise:
                    d₀ = ∞). A cell is never judged tighter than its model's pooled variance (`moderated`).
    one number      WORSE when it is worse than its cell's stored mean by more than k · s̃ · √(1 + 1/n) plus one
                    unit of the tables' last printed digit, k = t(1 − (α/2)/m; d₀ + d) (Student's t prediction
                    bound for one new seed under the moderated variance, Bonferroni over the m numbers judged so).
    one model       per (data set, model, metric), the mean worsening over the rates, D = mean_c (y_c − ȳ_c),
                    against its standard error from w_c = s̃_c² (1/k + 1/n_c): a seed sets the initial weights at
                    every rate, so its rates are correlated (ρ, from q = (1 + (r − 1) ρ) / r estimated per data set
                    and metric from the stored seeds' standardised residuals, `rate_correlation`). WORSE when
                    T = D / se(D) exceeds t(1 − (α/2)/m'; df), df by Satterthwaite from the cells' own
                    (Bonferroni over the m' models and metrics; `_model_shift`).

α = 5 % is the chance that a check of an honest fresh seed raises any alarm: half for the single numbers, half
for the models. Student's t is right only for normal seeds; the stored sets' seeds have heavier tails (a model that
now and then collapses), so each limit is t's quantile at the level at which an honest seed really lies beyond it
as often as the rule allows: the tail P(p < x) = a · x^b of the nominal p-values of stored seeds left out in turn
and checked against the others, fitted by Hill's estimator below x = 0.05, pooled over the metrics and moderated
per metric (`Tail`, fitted by `bench.calibration`; a = b = 1 is t's own). A cell without a spread (one stored
seed, or seeds that agree exactly) is judged by its metric's declared tolerance instead. `bench.calibration`
measures the rate on stored sets (leaving each seed out in turn), out of sample, and on sets drawn with uneven and
heavy-tailed noise (docs/CHECK.md has all three).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy import optimize, special, stats

from bench.metrics import Metric, Tolerance

CELL = ["dataset", "model", "f", "seed", "metric"]
SEEDS_OF = ["dataset", "model", "f", "metric"]  # a cell's numbers over seeds
MODEL_OF = ["dataset", "model", "metric"]  # a model's cells of one metric: its rates
METRIC_OF = ["dataset", "metric"]
VERDICTS = ("same", "ok", "better", "WORSE", "missing")
FALSE_ALARM = 0.05
"""The chance that a check of one honest fresh seed of every stored cell raises any alarm (Bonferroni)."""
DETECTED = 0.8
"""`power` states the worsening flagged with this probability."""
DUPLICATES = {"test_accuracy": "classification.accuracy"}
"""A number stored twice under two names (the trainer's and the evaluator's accuracy, the same test images): the
check judges the second name only."""


@dataclass(frozen=True)
class Scales:
    """How each metric is judged: its declared direction (+1: larger is worse, −1: smaller is worse, 0: a reference
    number), whether it is compared on a log scale, one unit of its printed digit, and its declared tolerance."""

    metrics: dict[str, Metric]

    def worse_sign(self, metric: str) -> float:
        direction = self.metrics[metric].higher_is_better if metric in self.metrics else None
        return 0.0 if direction is None else (-1.0 if direction else 1.0)

    def log_scale(self, metric: str) -> bool:
        return metric in self.metrics and self.metrics[metric].log_scale

    def scaled(self, metric: str, value: float) -> float:
        return math.log(value) if self.log_scale(metric) and value > 0 else value

    def resolution(self, metric: str) -> float:
        """One unit of the tables' last printed digit (a ratio of 1 % on a log scale): the rule's floor."""
        digits = self.metrics[metric].digits if metric in self.metrics else ".3f"
        if self.log_scale(metric) or not digits.endswith("f"):
            return math.log(1.01)
        return 10.0 ** -int(digits.strip(".f,"))

    def direction(self, metric: str, difference: float) -> str:
        """'better' or 'WORSE' for a move beyond the allowance (any move of a reference number is 'WORSE')."""
        sign = self.worse_sign(metric)
        return "WORSE" if sign == 0 or difference * sign > 0 else "better"


@dataclass(frozen=True)
class Tail:
    """How often an honest seed's nominal p-value falls below x, for x below `x0`: P(p < x) = a · x^b, fitted to the
    left-out seeds of the stored sets (`bench.calibration.fit_tail`). a = b = 1 where Student's t is right; b < 1
    where the seeds have heavier tails than it (a model that now and then collapses), so that small p-values come
    more often than their level says."""

    a: float = 1.0
    b: float = 1.0
    x0: float = 1.0
    below: int = 0  # the left-out p-values below x0: the fit's sample
    of: int = 0  # the left-out p-values in all

    def level(self, rate: float) -> float:
        """The nominal p-value an honest number falls below with probability `rate`: the level to test at so that
        the real rate is `rate` (never above `rate`: a limit is never made narrower than the t bound)."""
        return min(rate, (rate / self.a) ** (1 / self.b))


@dataclass(frozen=True)
class Tails:
    """A test's tails: `pooled` over every metric, and each metric's own (`moderated_tail`); a metric the
    calibration did not see takes the pooled one."""

    pooled: Tail = Tail()
    metrics: dict[str, Tail] = field(default_factory=dict)

    def of(self, metric: str) -> Tail:
        return self.metrics.get(metric, self.pooled)


@dataclass(frozen=True)
class Calibration:
    """The tails of the two tests (`numbers`, `models`), measured by leaving each stored seed out and checking it
    against the others (`bench.calibration.calibrate`): every limit is Student's t quantile at the level its
    metric's tail says an honest seed exceeds with the rate the rule allows."""

    numbers: Tails = Tails()
    models: Tails = Tails()


UNCALIBRATED = Calibration()


def counted_once(results: pd.DataFrame) -> pd.DataFrame:
    """`results` without the second name of a number stored twice (`DUPLICATES`), where the first is there."""
    present = set(results.metric)
    return results[~results.metric.isin([name for name, same in DUPLICATES.items() if same in present])]


# ------------------------------------------------------------------------------------------------- the noise
def cell_spreads(stored: pd.DataFrame, scales: Scales) -> pd.DataFrame:
    """Per cell (data set, model, f, metric): the stored seeds' mean (`stored_mean`), and on the metric's scale
    their mean, standard deviation and n."""
    scaled = stored.assign(scaled=[scales.scaled(m, v) for m, v in zip(stored.metric, stored.value, strict=True)])
    return scaled.groupby(SEEDS_OF).agg(stored_mean=("value", "mean"), scaled_mean=("scaled", "mean"),
                                        stored_sd=("scaled", "std"), stored_n=("scaled", "count")).reset_index()


def _varied(spreads: pd.DataFrame) -> pd.DataFrame:
    return spreads[(spreads.stored_n >= 2) & (spreads.stored_sd > 0)]


def log_variance_terms(spreads: pd.DataFrame) -> pd.DataFrame:
    """The varied cells with e = log s² − ψ(d/2) + log(d/2), whose expectation is the log of the cell's true
    variance, and the location group each is centred in: its model's rates where the model has two or more varied
    cells of the metric, else every model's cells of the metric."""
    varied = _varied(spreads).copy()
    half = (varied.stored_n - 1) / 2
    varied["d"] = varied.stored_n - 1
    varied["e"] = np.log(varied.stored_sd**2) - special.digamma(half) + np.log(half)
    rates = varied.groupby(MODEL_OF).f.transform("size")
    varied["group"] = np.where(rates >= 2, varied.dataset + "|" + varied.model + "|" + varied.metric,
                               varied.dataset + "|*|" + varied.metric)
    return varied


def prior_df(spreads: pd.DataFrame) -> float:
    """The prior's degrees of freedom d₀, by the moments of log s² (Smyth 2004): the variance of e around its
    group's mean, less what the cells' own sampling gives (mean of ψ'(d/2)), is ψ'(d₀/2). ∞ where the cells'
    variances differ no more than sampling alone explains; NaN where no group has two varied cells."""
    terms = log_variance_terms(spreads)
    grouped = terms.groupby("group").e
    sizes = grouped.transform("size")
    terms = terms[sizes >= 2]
    if terms.empty:
        return math.nan
    centred = terms.e - terms.groupby("group").e.transform("mean")
    dof = int((terms.groupby("group").size() - 1).sum())
    excess = float((centred**2).sum()) / dof - float(special.polygamma(1, terms.d / 2).mean())
    if excess <= 0:
        return math.inf
    half = optimize.brentq(lambda x: float(special.polygamma(1, x)) - excess, 1e-8, 1e8)
    return 2 * half


def moderated(spreads: pd.DataFrame, d0: float | None = None) -> pd.DataFrame:
    """`spreads` with each varied cell's moderated standard deviation (`sd`) and degrees of freedom (`df`): the
    larger of its own variance shrunk towards its group's typical variance s₀² = exp(mean e + ψ(d₀/2) − log(d₀/2))
    with weight d₀ (Smyth's posterior) and its group's pooled variance, on Smyth's d₀ + d degrees of freedom but
    never more than the group's pooled ones (all its cells hold; those where d₀ = ∞, equal noise): a cell whose two
    or three seeds happen to agree closely (one in twenty of three normal seeds has s below a quarter of the true σ)
    is never judged tighter than its model's usual spread, while a rate that is really noisier keeps its own. NaN
    and 0 for a cell without a spread."""
    d0 = prior_df(spreads) if d0 is None else d0
    terms = log_variance_terms(spreads)
    groups = terms.groupby("group")
    pooled_df = groups.d.transform("sum")
    pooled = (terms.d * terms.stored_sd**2).groupby(terms.group).transform("sum") / pooled_df
    if math.isnan(d0):  # no group with two cells to learn a prior from: the cell's own variance
        shrunk, shrunk_df = terms.stored_sd**2, terms.d.astype(float)
    elif math.isinf(d0):  # noise no more uneven than sampling explains: the group's pooled variance
        shrunk, shrunk_df = pooled, pooled_df.astype(float)
    else:
        typical = np.exp(groups.e.transform("mean") + special.digamma(d0 / 2) - math.log(d0 / 2))
        shrunk, shrunk_df = (d0 * typical + terms.d * terms.stored_sd**2) / (d0 + terms.d), d0 + terms.d
    terms["sd"] = np.maximum(shrunk, pooled) ** 0.5
    terms["df"] = np.minimum(shrunk_df, pooled_df)  # no more than the group's cells hold, whichever is used
    out = spreads.merge(terms[[*SEEDS_OF, "sd", "df"]], on=SEEDS_OF, how="left")
    out["df"] = out.df.fillna(0.0)
    return out


def rate_correlation(stored: pd.DataFrame, noise: pd.DataFrame, scales: Scales) -> pd.DataFrame:
    """Per (data set, metric): q = var(mean over a model's rates of one seed's standardised residuals) / var(one
    standardised residual), clipped to [1/r, 1], with r the most rates a model has (1/r: a seed's rates
    independent; 1: a seed moves every rate alike)."""
    judged = noise[noise.sd > 0][[*SEEDS_OF, "scaled_mean", "stored_n", "sd"]]
    rows = stored.merge(judged, on=SEEDS_OF)
    if rows.empty:
        return pd.DataFrame(columns=[*METRIC_OF, "q", "rates"])
    scaled = np.array([scales.scaled(m, v) for m, v in zip(rows.metric, rows.value, strict=True)])
    rows = rows.assign(u=(scaled - rows.scaled_mean) / (rows.sd * (1 - 1 / rows.stored_n) ** 0.5))
    per_seed = rows.groupby([*MODEL_OF, "seed"]).agg(R=("u", "mean"), r=("u", "size")).reset_index()
    out = []
    for (dataset, metric), seeds in per_seed.groupby(METRIC_OF):
        cells = rows[(rows.dataset == dataset) & (rows.metric == metric)]
        rates = int(seeds.r.max())
        q = float((seeds.R**2).mean() / (cells.u**2).mean()) if (cells.u**2).mean() > 0 else 1.0
        out.append({"dataset": dataset, "metric": metric, "q": min(max(q, 1 / rates), 1.0), "rates": rates})
    return pd.DataFrame(out)


# ------------------------------------------------------------------------------------------------- the rule
def critical(rate: float, df: float, tail: Tail = Tail()) -> float:
    """The limit t(1 − p*/2; df) of a test whose honest statistic may lie beyond it, on one side, with probability
    `rate`: p* the two-sided level at which that chance, on either side, is 2·rate (`tail`: that chance as measured,
    else Student's t's own, p* = 2·rate); df ∞: the normal quantile."""
    return _quantile(1 - tail.level(2 * rate) / 2, df)


def allowance(df: float, judged: int, stored_n: int, false_alarm: float = FALSE_ALARM / 2,
              tail: Tail = Tail()) -> float:
    """k · √(1 + 1/n): how many moderated standard deviations from its cell's mean of `stored_n` seeds one fresh
    seed may fall, k = `critical` at the rate α/m (α = `false_alarm` over `judged` numbers)."""
    return critical(false_alarm / max(judged, 1), df, tail) * math.sqrt(1 + 1 / stored_n)


def _has_spread(row) -> bool:
    """Whether a number is judged by the seeds' spread (seeds that agree exactly, MVAE at the majority baseline on
    every seed, say nothing of how far another machine's arithmetic moves it)."""
    return row.df > 0 and row.sd > 0


def judge_numbers(stored: pd.DataFrame, fresh: pd.DataFrame, tolerances: dict[str, Tolerance], scales: Scales,
            sds: float | None = None, calibration: Calibration = UNCALIBRATED) -> pd.DataFrame:
    """One row per (fresh run, metric its cell has stored): the stored value of the same seed (NaN where that seed
    is not stored), the stored mean, fresh, the difference on the metric's scale, the allowance, the deviation in
    moderated sds, k, the basis of the judgement, the verdict and the nominal two-sided p-value. k is the prediction
    bound (`allowance`) at the level the calibration's tail gives for the metric; `sds`: a fixed k instead."""
    stored, fresh = counted_once(stored), counted_once(fresh)
    runs = ["dataset", "model", "f"]
    expected = stored[SEEDS_OF].drop_duplicates().merge(fresh[[*runs, "seed"]].drop_duplicates(), on=runs)
    paired = (expected.merge(stored[[*CELL, "value"]].rename(columns={"value": "stored"}), on=CELL, how="left")
              .merge(fresh[[*CELL, "value"]].rename(columns={"value": "fresh"}), on=CELL, how="left")
              .merge(moderated(cell_spreads(stored, scales)), on=SEEDS_OF))
    judged = int(sum(_has_spread(row) for row in paired.itertuples()))
    rows = [_judged(row, tolerances, scales, sds if sds is not None else
                    allowance(row.df, judged, row.stored_n, tail=calibration.numbers.of(row.metric)), sds is None)
            for row in paired.itertuples()]
    verdicts = pd.DataFrame(rows, columns=["difference", "allowed", "sds", "k", "basis", "verdict"],
                            index=paired.index)
    out = pd.concat([paired[[*CELL, "stored", "stored_mean", "fresh"]], verdicts], axis=1)
    z = out.sds.abs() / np.sqrt(1 + 1 / paired.stored_n)
    out["p"] = [2 * upper_tail(value, df) if np.isfinite(value) else math.nan
                for value, df in zip(z, paired.df, strict=True)]
    return out


def _judged(row, tolerances: dict[str, Tolerance], scales: Scales, k: float, bound: bool) -> tuple:
    """(difference, allowed, moderated sds, k (NaN: a declared tolerance), basis, verdict) of one fresh number."""
    if not _has_spread(row):
        reference = row.stored if not pd.isna(row.stored) else row.stored_mean
        tolerance = tolerances.get(row.metric, Tolerance(0.0))
        basis = "declared tolerance (n = 1)" if row.stored_n < 2 else f"declared tolerance ({row.stored_n} equal seeds)"
        if pd.isna(row.fresh):
            return math.nan, tolerance.allowed(reference), math.nan, math.nan, basis, "missing"
        if row.fresh == reference:
            verdict = "same"
        elif tolerance.within(reference, row.fresh):
            verdict = "ok"
        else:
            verdict = scales.direction(row.metric, row.fresh - reference)
        return row.fresh - reference, tolerance.allowed(reference), math.nan, math.nan, basis, verdict
    df = "∞" if math.isinf(row.df) else f"{row.df:.1f}"
    basis = (f"{k:.3g} sd of {row.stored_n} seeds, moderated sd with {df} df" + (" (t bound)" if bound else "")
             + (" (log scale)" if scales.log_scale(row.metric) else ""))
    if pd.isna(row.fresh):
        return math.nan, math.nan, math.nan, k, basis, "missing"
    deviation = scales.scaled(row.metric, row.fresh) - row.scaled_mean
    allowed = k * row.sd + scales.resolution(row.metric)
    if row.fresh == row.stored:
        verdict = "same"
    elif abs(deviation) <= allowed:
        verdict = "ok"
    else:
        verdict = scales.direction(row.metric, deviation)
    return deviation, allowed, deviation / row.sd, k, basis, verdict


def judge_models(stored: pd.DataFrame, fresh: pd.DataFrame, scales: Scales,
                   calibration: Calibration = UNCALIBRATED) -> pd.DataFrame:
    """One row per (data set, model, metric) with a direction and fresh numbers at two or more rates with a
    spread: cells, z (the mean worsening over the rates on the metric's scale, positive: worse), q, T, its
    degrees of freedom, its one-sided p-value, the limit (t(1 − p*/2; df), p* the level at which the calibration's
    tail gives an honest model a chance 2(α/2)/m' of lying beyond either way) and the verdict (WORSE beyond +limit,
    better beyond −limit, else ok)."""
    columns = [*MODEL_OF, "cells", "z", "q", "t", "df", "p", "limit", "verdict"]
    stored, fresh = counted_once(stored), counted_once(fresh)
    noise = moderated(cell_spreads(stored, scales))
    rows = fresh.merge(noise[noise.sd > 0], on=SEEDS_OF)
    rows = rows[rows.metric.map(lambda m: scales.worse_sign(m) != 0) & rows.value.notna()]
    if rows.empty:
        return pd.DataFrame(columns=columns)
    rows = rows.assign(scaled=[scales.scaled(m, v) for m, v in zip(rows.metric, rows.value, strict=True)])
    cells = rows.groupby(SEEDS_OF).agg(fresh_mean=("scaled", "mean"), k=("scaled", "count"),
                                       scaled_mean=("scaled_mean", "first"), sd=("sd", "first"),
                                       n=("stored_n", "first"), df=("df", "first")).reset_index()
    signs = cells.metric.map(scales.worse_sign)
    cells["worse"] = signs * (cells.fresh_mean - cells.scaled_mean)
    cells["w"] = cells.sd**2 * (1 / cells.k + 1 / cells.n)  # the variance of one rate's worsening
    correlated = rate_correlation(stored, noise, scales)[[*METRIC_OF, "q"]]
    models = [_model_shift(key, group, correlated) for key, group in cells.groupby(MODEL_OF) if len(group) >= 2]
    models = pd.DataFrame([row for row in models if row is not None])
    if models.empty:
        return pd.DataFrame(columns=columns)
    rate = (FALSE_ALARM / 2) / len(models)
    models["p"] = [upper_tail(t, df) for t, df in zip(models.t, models.df, strict=True)]
    models["limit"] = [critical(rate, df, calibration.models.of(metric))
                       for metric, df in zip(models.metric, models.df, strict=True)]
    models["verdict"] = np.select([models.t > models.limit, models.t < -models.limit], ["WORSE", "better"], "ok")
    return models[columns].reset_index(drop=True)


def _model_shift(key: tuple, cells: pd.DataFrame, correlated: pd.DataFrame) -> dict | None:
    """One model's metric over its rates: the mean worsening D = mean_c worsening_c, var D = (Σ_c w_c + ρ Σ_{c≠c'}
    √(w_c w_c')) / r² with ρ = (r q − 1) / (r − 1) from the data set's q, and T = D / √var D on Satterthwaite's
    degrees of freedom (Σ w_c)² / Σ (w_c² / d_c) with each cell's own d_c = n_c − 1 (conservative: the shrinking
    adds some). None where the data set's metric has no q. (Weighting the rates by their precision detects more
    but, with precisions estimated from two or three seeds, raised twice the false alarms allowed in simulation.)"""
    dataset, model, metric = key
    found = correlated[(correlated.dataset == dataset) & (correlated.metric == metric)]
    if found.empty:
        return None
    r, q = len(cells), float(found.q.iloc[0])
    rho = max((r * q - 1) / (r - 1), 0.0)
    root = np.sqrt(cells.w.to_numpy())
    variance = float((root**2).sum() + rho * (root.sum() ** 2 - (root**2).sum())) / r**2
    shift = float(cells.worse.mean())
    return {"dataset": dataset, "model": model, "metric": metric, "cells": r, "z": shift, "q": q,
            "t": shift / math.sqrt(variance), "df": float(cells.w.sum() ** 2 / (cells.w**2 / (cells.n - 1)).sum()),
            "se": math.sqrt(variance)}


def upper_tail(t: float, df: float) -> float:
    return float(stats.norm.sf(t) if math.isinf(df) else stats.t.sf(t, df))


def _quantile(p: float, df: float) -> float:
    return float(stats.norm.ppf(p) if math.isinf(df) else stats.t.ppf(p, df))


def power(stored: pd.DataFrame, scales: Scales, calibration: Calibration = UNCALIBRATED,
          detected: float = DETECTED) -> pd.DataFrame:
    """Per (data set, metric): the worsening the check flags with probability `detected` for one fresh seed of
    every stored cell (as many numbers and models as a full check judges): as one number alone, and as the same
    worsening of one model's metric at every rate. Medians over the cells and models, in the metric's units (a
    log-scale metric: as a factor, e.g. 1.25); seed_sd is the moderated sd of one number, q the rates' ratio."""
    stored = counted_once(stored)
    noise = moderated(cell_spreads(stored, scales))
    noise = noise[(noise.sd > 0) & noise.metric.map(lambda m: scales.worse_sign(m) != 0)]
    correlated = rate_correlation(stored, noise, scales)[[*METRIC_OF, "q"]]
    models = noise.groupby(MODEL_OF).filter(lambda cells: len(cells) >= 2).groupby(MODEL_OF).ngroups
    rows = []
    for (dataset, metric), cells in noise.groupby(METRIC_OF):
        one = [allowance(df, len(noise), n, tail=calibration.numbers.of(metric)) * s + scales.resolution(metric)
               + _quantile(detected, df) * s * root
               for df, n, s, root in zip(cells.df, cells.stored_n, cells.sd, (1 + 1 / cells.stored_n) ** 0.5,
                                         strict=True)]
        rates = cells.groupby("model").size()
        shifts = [_model_shift((dataset, model, metric), mine.assign(w=mine.sd**2 * (1 + 1 / mine.stored_n),
                                                                     worse=0.0, n=mine.stored_n), correlated)
                  for model, mine in cells.groupby("model") if len(mine) >= 2]
        tail = calibration.models.of(metric)
        every = [(critical(FALSE_ALARM / 2 / models, shift["df"], tail) + _quantile(detected, shift["df"]))
                 * shift["se"] for shift in shifts if shift is not None]
        every = float(np.median(every)) if every else math.nan
        shown = math.exp if scales.log_scale(metric) else (lambda value: value)
        rows.append({"dataset": dataset, "metric": metric,
                     "scale": "log (factor)" if scales.log_scale(metric) else "linear",
                     "models": cells.model.nunique(), "seed_sd": shown(float(np.median(cells.sd))),
                     "one_number": shown(float(np.median(one))),
                     "every_rate": shown(every) if not math.isnan(every) else math.nan,
                     "rates": int(rates.max())})
    return pd.DataFrame(rows)


