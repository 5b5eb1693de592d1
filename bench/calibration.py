"""The regression check's calibration, measured on the stored sets: the tails of honest seeds' p-values that set the
rule's levels (`fit_tail`, `moderated_tail`, `calibrate`), and its false-alarm rate left out seed by seed, out of
sample and under simulated noise (`false_alarms`, `cross_validated`, `simulated_false_alarms`). Pure functions of
results frames, as `bench.regression`'s rule is; docs/CHECK.md has what they measured.
"""

from __future__ import annotations

import math

import numpy as np
import pandas as pd

from bench.metrics import Tolerance
from bench.regression import (
    MODEL_OF,
    SEEDS_OF,
    UNCALIBRATED,
    Calibration,
    Scales,
    Tail,
    Tails,
    cell_spreads,
    judge_models,
    judge_numbers,
    log_variance_terms,
    prior_df,
    upper_tail,
)

TAIL_FROM = 0.05
"""The tail is fitted to the left-out p-values below this (the rule tests at levels far below it)."""
LEAST_TAIL = 20
"""The fewest left-out p-values below TAIL_FROM a fit needs; with fewer, Student's t is kept."""
PRIOR_TAIL = 10.0
"""The weight, in left-out p-values below TAIL_FROM, of the pooled tail in each metric's (`moderated_tail`)."""


def fit_tail(p_values: np.ndarray, x0: float = TAIL_FROM, least: int = LEAST_TAIL) -> Tail:
    """The power-law tail of honest p-values: given p < x0, p/x0 is Beta(b, 1), whose maximum-likelihood b is
    k / Σ log(x0 / pᵢ) over the k values below x0 (Hill's estimator); a = (k / N) / x0^b."""
    p_values = _finite(p_values)
    below = _below(p_values, x0)
    if len(below) < least:
        return Tail(x0=x0, below=len(below), of=len(p_values))
    b = len(below) / float(np.log(x0 / below).sum())
    return Tail(a=len(below) / len(p_values) / x0**b, b=b, x0=x0, below=len(below), of=len(p_values))


def moderated_tail(p_values: np.ndarray, pooled: Tail, prior: float = PRIOR_TAIL) -> Tail:
    """One metric's tail, its few left-out p-values shrunk towards the pooled tail as empirical Bayes does (the
    Hill likelihood of b is b^k e^(−b S), S = Σ log(x0 / pᵢ): a Gamma prior of `prior` values at the pooled b gives
    b = (k + prior) / (S + prior / b₀); the share below x0 likewise, (k + prior) / (N + prior / π₀)). The pooled
    tail where it is Student's t's own (too few p-values to fit)."""
    p_values = _finite(p_values)
    if pooled.of == 0 or pooled.below < LEAST_TAIL:
        return Tail(x0=pooled.x0, below=int((p_values < pooled.x0).sum()), of=len(p_values))
    below = _below(p_values, pooled.x0)
    b = (len(below) + prior) / (float(np.log(pooled.x0 / below).sum()) + prior / pooled.b)
    share = (len(below) + prior) / (len(p_values) + prior * pooled.of / pooled.below)
    return Tail(a=share / pooled.x0**b, b=b, x0=pooled.x0, below=len(below), of=len(p_values))


def _finite(p_values) -> np.ndarray:
    p_values = np.asarray(p_values, dtype=float)
    return p_values[np.isfinite(p_values)]


def _below(p_values: np.ndarray, x0: float) -> np.ndarray:
    return np.maximum(p_values[p_values < x0], np.finfo(float).tiny)


def alarms(stored: pd.DataFrame, fresh: pd.DataFrame, tolerances: dict[str, Tolerance], scales: Scales,
           calibration: Calibration = UNCALIBRATED) -> dict:
    """What one check of `fresh` against `stored` flags: numbers judged and flagged, models judged and flagged."""
    numbers = judge_numbers(stored, fresh, tolerances, scales, calibration=calibration)
    models = judge_models(stored, fresh, scales, calibration)
    return {"numbers": len(numbers), "numbers_flagged": int(numbers.verdict.isin(["WORSE", "missing"]).sum()),
            "models": len(models), "models_flagged": int((models.verdict == "WORSE").sum())}


def _left_out(stored: pd.DataFrame):
    """(seed, the other seeds' numbers, that seed's numbers) for each stored seed in turn (runs only), in the cells
    of three or more seeds: leaving one out leaves a spread to judge it by (a cell of one remaining seed is judged by
    its metric's declared tolerance, which allows for another machine, not for another seed)."""
    runs = stored[stored.f.notna()]
    runs = runs[runs.groupby(["dataset", "model", "f"]).seed.transform("nunique") >= 3]
    for seed in sorted(runs.seed.unique()):
        yield int(seed), runs[runs.seed != seed], runs[runs.seed == seed]


def false_alarms(stored: pd.DataFrame, tolerances: dict[str, Tolerance], scales: Scales,
                 calibration: Calibration = UNCALIBRATED) -> pd.DataFrame:
    """Leave one stored seed out, check it against the others, for each seed in turn: one row per check with what
    it flagged (`alarms`) and whether it raised any alarm. Every one of these seeds is honest, so every alarm is a
    false one."""
    rows = []
    for seed, others, left in _left_out(stored):
        found = alarms(others, left, tolerances, scales, calibration)
        rows.append({"seed": seed, **found, "alarm": bool(found["numbers_flagged"] or found["models_flagged"])})
    return pd.DataFrame(rows, columns=["seed", "numbers", "numbers_flagged", "models", "models_flagged", "alarm"])


def left_out_p_values(stored: pd.DataFrame, tolerances: dict[str, Tolerance], scales: Scales) -> pd.DataFrame:
    """The nominal two-sided p-values (Student's t) of every honest left-out seed's numbers (test `numbers`) and
    models' mean worsenings (`models`) over the leave-one-seed-out checks of `stored`: columns test, metric, p."""
    rows = [pd.DataFrame(columns=["test", "metric", "p"])]
    for _, others, left in _left_out(stored):
        found = judge_numbers(others, left, tolerances, scales)
        found = found[found.k.notna()]
        rows.append(pd.DataFrame({"test": "numbers", "metric": found.metric, "p": found.p}))
        shifts = judge_models(others, left, scales)
        rows.append(pd.DataFrame({"test": "models", "metric": shifts.metric,
                                  "p": [2 * upper_tail(abs(t), df) for t, df in zip(shifts.t, shifts.df,
                                                                                      strict=True)]}))
    return pd.concat(rows, ignore_index=True).astype({"p": float})


def calibrate(stored_sets: list[pd.DataFrame], tolerances: dict[str, Tolerance], scales: Scales) -> Calibration:
    """Each test's tails, fitted to the left-out p-values of every stored set together: pooled over the metrics
    (`fit_tail`) and per metric, moderated towards the pooled one (`moderated_tail`). The rate they give out of
    sample, fitted on the other sets only, is measured by `cross_validated`."""
    found = pd.concat([left_out_p_values(stored, tolerances, scales) for stored in stored_sets], ignore_index=True)
    tails = {}
    for test in ("numbers", "models"):
        mine = found[found.test == test]
        pooled = fit_tail(mine.p.to_numpy())
        tails[test] = Tails(pooled, {metric: moderated_tail(values.p.to_numpy(), pooled)
                                     for metric, values in mine.groupby("metric")})
    return Calibration(tails["numbers"], tails["models"])


def cross_validated(stored_sets: dict[str, pd.DataFrame], tolerances: dict[str, Tolerance],
                    scales: Scales) -> pd.DataFrame:
    """Each stored set's leave-one-seed-out checks under the calibration learnt from the other sets only: the
    false-alarm rate out of sample (one row per check, with its set)."""
    rows = []
    for name, stored in stored_sets.items():
        learnt = calibrate([other for key, other in stored_sets.items() if key != name], tolerances, scales)
        rows.append(false_alarms(stored, tolerances, scales, learnt).assign(set=name))
    return pd.concat(rows, ignore_index=True)


def simulated_set(template: pd.DataFrame, rng: np.random.Generator, seeds: int, d0: float, tail_df: float | None,
                  rate_share: float, scales: Scales) -> pd.DataFrame:
    """A results set shaped like `template`'s varied cells (its data sets, models, rates and metrics) with
    `seeds` seeds: each cell keeps its stored mean on the metric's scale; its true variance is its model's pooled
    variance of the metric (d0 = ∞: even noise) or drawn around it as s² d0 / χ²(d0) (uneven noise, as the
    empirical-Bayes prior describes it); its seeds' noise is normal or, with `tail_df`, Student's t of that many
    degrees of freedom scaled to the same variance (heavy tails); a share `rate_share` of each seed's variance is
    one draw shared by all the rates of its model (correlated rates)."""
    terms = log_variance_terms(cell_spreads(template, scales)).reset_index(drop=True)
    variance = ((terms.d * terms.stored_sd**2).groupby(terms.group).transform("sum")
                / terms.groupby("group").d.transform("sum")).to_numpy()
    if not math.isinf(d0):
        variance = variance * d0 / rng.chisquare(d0, len(terms))
    groups = terms.groupby(MODEL_OF).ngroup().to_numpy()

    def draw(size: int) -> np.ndarray:
        if tail_df is None:
            return rng.normal(size=size)
        return rng.standard_t(tail_df, size) / math.sqrt(tail_df / (tail_df - 2))

    rows = []
    for seed in range(seeds):
        shared, own = draw(groups.max() + 1)[groups], draw(len(terms))
        values = terms.scaled_mean + np.sqrt(variance) * (math.sqrt(rate_share) * shared
                                                          + math.sqrt(1 - rate_share) * own)
        values = [math.exp(v) if scales.log_scale(m) else v for m, v in zip(terms.metric, values, strict=True)]
        rows.append(terms[SEEDS_OF].assign(seed=seed, value=values))
    return pd.concat(rows, ignore_index=True)


def simulated_false_alarms(template: pd.DataFrame, tolerances: dict[str, Tolerance], scales: Scales, checks: int,
                           seed: int = 0, d0: float | None = None, tail_df: float | None = None,
                           rate_share: float = 0.3, calibration: Calibration = UNCALIBRATED) -> float:
    """The share of `checks` simulated checks (a stored set like `template` with its seeds per cell, one fresh seed
    drawn the same way) that raise any alarm: the false-alarm rate under the noise `simulated_set` draws."""
    rng = np.random.default_rng(seed)
    seeds = int(cell_spreads(template, scales).stored_n.median())
    d0 = prior_df(cell_spreads(template, scales)) if d0 is None else d0
    raised = 0
    for _ in range(checks):
        drawn = simulated_set(template, rng, seeds + 1, d0, tail_df, rate_share, scales)
        found = alarms(drawn[drawn.seed < seeds], drawn[drawn.seed == seeds], tolerances, scales, calibration)
        raised += bool(found["numbers_flagged"] or found["models_flagged"])
    return raised / checks
