"""The statistics of the tables and the claims, as pure functions of seeds' values (the regression check's own are
in `bench.regression`): intervals over seeds, which model of a column is best by a stated test, and the claims'
one-sided, non-inferiority and equivalence tests with Holm's correction and the seeds a test would need.

A table cell holds the values of one (model, metric, f) over training seeds.

    interval    the mean and its 95 % Student's t interval, mean ± t_{0.975, n−1} · s / √n
                (`scipy.stats.t.interval`); none for n = 1. For a metric on a log scale
                (`bench.metrics.Metric.scale`), the same on log(value), shown back on the metric's scale: the
                geometric mean and exp of the interval's ends (never below zero); std is then the standard
                deviation of log(value).
    marks       per column: the model with the best mean is "best" when Welch's two-sided t-test at
                5 % separates it from every other model of the column (`scipy.stats.ttest_ind`,
                equal_var=False; on log(value) for a log-scale metric); otherwise it and every model the
                test does not separate from it are "tied". Each pair is tested at 5 %, with no correction
                for the number of pairs. A column with a model of fewer than two seeds gets no marks:
                nothing can be tested there.
    compare_seeds   one comparison of a claim (Welch, or one-sample t against a constant): its effect, 90 % interval,
                the claim's p and the opposite test's, and the seeds per model a decision would need (`t_test_seeds`:
                the noncentral t); `holm` the step-down correction of a claim's "fails".
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

CONFIDENCE = 0.95
ALPHA = 0.05
BEST, TIED = "best", "tied"


@dataclass(frozen=True)
class Interval:
    """Mean, sample standard deviation and the 95 % t interval of n values (std, low, high NaN for n = 1)."""

    mean: float
    std: float
    low: float
    high: float
    n: int

    @property
    def half_width(self) -> float:
        return (self.high - self.low) / 2


def on_scale(values: Sequence[float], log: bool) -> np.ndarray:
    """`values` as floats, or their logarithms on a log scale (every value must then be positive)."""
    values = np.asarray(values, dtype=float)
    if log:
        if not np.all(values > 0):
            raise ValueError(f"a log-scale metric needs positive values, got {values.tolist()}")
        return np.log(values)
    return values


def interval(values: Sequence[float], log: bool = False) -> Interval:
    """The mean of `values` and its 95 % Student's t interval; with `log`, the geometric mean and its interval
    (the t interval of log(values), exponentiated)."""
    values = np.asarray(values, dtype=float)
    if values.size == 0 or not np.all(np.isfinite(values)):
        raise ValueError(f"an interval needs finite values, got {values.tolist()}")
    if log:
        logged = interval(on_scale(values, True))
        return Interval(math.exp(logged.mean), logged.std, math.exp(logged.low) if logged.n > 1 else math.nan,
                        math.exp(logged.high) if logged.n > 1 else math.nan, logged.n)
    mean, n = float(values.mean()), int(values.size)
    if n == 1:
        return Interval(mean, math.nan, math.nan, math.nan, 1)
    std = float(values.std(ddof=1))
    if std == 0:
        return Interval(mean, 0.0, mean, mean, n)
    low, high = stats.t.interval(CONFIDENCE, df=n - 1, loc=mean, scale=std / math.sqrt(n))
    return Interval(mean, std, float(low), float(high), n)


def separated(a: Sequence[float], b: Sequence[float], log: bool = False) -> bool:
    """Whether Welch's two-sided t-test at `ALPHA` says the means of a and b differ (each needs n ≥ 2; on log(values)
    with `log`). Two sets without spread differ exactly when their means do."""
    a, b = on_scale(a, log), on_scale(b, log)
    if min(a.size, b.size) < 2:
        raise ValueError("Welch's t-test needs at least two values on each side")
    if a.std(ddof=1) == 0 and b.std(ddof=1) == 0:
        return bool(a.mean() != b.mean())
    return bool(stats.ttest_ind(a, b, equal_var=False).pvalue < ALPHA)


def marks(column: Mapping[str, Sequence[float]], higher_is_better: bool, log: bool = False) -> dict[str, str]:
    """The models of one column marked "best" or "tied" (module docstring); {} where nothing can be tested."""
    if len(column) < 2 or any(len(values) < 2 for values in column.values()):
        return {}
    means = {model: float(np.mean(on_scale(values, log))) for model, values in column.items()}
    leader = (max if higher_is_better else min)(means, key=means.__getitem__)
    tied = [model for model in column if model != leader and not separated(column[leader], column[model], log)]
    if not tied:
        return {leader: BEST}
    return {model: TIED for model in (leader, *tied)}


# ------------------------------------------------------------------------------- the claims' tests (bench.claims)
@dataclass(frozen=True)
class Comparison:
    """The effect of one comparison (positive: better for the subject), its 90 % interval (each end a one-sided
    95 % bound), the claim's p and the opposite test's p (both before any correction), the seeds of each side, and
    the seeds per model that would give the test the observed effect points to the power asked (NaN: decided or
    not computable)."""

    effect: float
    low: float
    high: float
    p: float
    p_against: float
    n: int
    n_other: int
    seeds_needed: float = math.nan
    seeds_note: str = ""  # why `seeds_needed` is missing, where the row could still be decided


def welch_summary(subject: np.ndarray, other: np.ndarray | None) -> tuple[float, float, float]:
    """(effect, standard error, degrees of freedom): Welch's for two samples, one-sample t against a constant."""
    effect = float(subject.mean() - (other.mean() if other is not None else 0.0))
    if other is None:
        return effect, float(subject.std(ddof=1) / math.sqrt(subject.size)), subject.size - 1.0
    va, vb = subject.var(ddof=1) / subject.size, other.var(ddof=1) / other.size
    se = math.sqrt(va + vb)
    if se == 0:
        return effect, 0.0, subject.size + other.size - 2.0
    df = (va + vb) ** 2 / (va**2 / (subject.size - 1) + vb**2 / (other.size - 1))
    return effect, se, float(df)


def one_sided_p(effect: float, se: float, df: float, shift: float, greater: bool) -> float:
    """P-value of the t test of effect > shift (greater) or < shift. Without spread the data decide exactly: p = 0
    when the effect is strictly on the alternative's side, 1 otherwise."""
    if se == 0:
        return 0.0 if (effect > shift if greater else effect < shift) else 1.0
    t = (effect - shift) / se
    return float(stats.t.sf(t, df) if greater else stats.t.cdf(t, df))


def compare_seeds(subject: Iterable[float], other: Iterable[float] | None, test: str, margin: float,
                  alpha: float, power: float, rows: int = 1) -> Comparison:
    """Compare the subject's per-seed effects-to-be with the other's seeds (Welch), or with 0 where `other` is None
    (the caller subtracts a control's value or a constant first), by `test` with δ = `margin`:

    better      p: effect > 0;   p_against: effect < δ (worse, or a tie within δ)
    not_worse   p: effect > −δ;  p_against: effect < −δ
    equivalent  p: max(p(effect > −δ), p(effect < δ)) (TOST);  p_against: 2·min(p(effect < −δ), p(effect > δ))

    `rows`: how many rows the claim's Holm correction spans (for the seeds a `fails` would need); `power`: the
    power the seeds needed are computed for."""
    subject = np.asarray(list(subject), dtype=float)
    other = None if other is None else np.asarray(list(other), dtype=float)
    if subject.size < 2 or (other is not None and other.size < 2):
        raise ValueError("a comparison needs at least two seeds on each side")
    effect, se, df = welch_summary(subject, other)
    half = 0.0 if se == 0 else float(stats.t.ppf(1 - alpha, df) * se)
    if test == "better":
        p, against, holds_at, fails_at = (one_sided_p(effect, se, df, 0.0, True),
                                          one_sided_p(effect, se, df, margin, False), 0.0, margin)
    elif test == "not_worse":
        p, against = one_sided_p(effect, se, df, -margin, True), one_sided_p(effect, se, df, -margin, False)
        holds_at = fails_at = -margin
    elif test == "equivalent":
        p = max(one_sided_p(effect, se, df, -margin, True), one_sided_p(effect, se, df, margin, False))
        against = min(1.0, 2 * min(one_sided_p(effect, se, df, -margin, False),
                                   one_sided_p(effect, se, df, margin, True)))
        holds_at = fails_at = margin if effect >= 0 else -margin  # the nearer edge
    else:
        raise ValueError(f"unknown test {test!r}")
    n_other = 0 if other is None else int(other.size)
    needed = seeds_needed(effect, subject, other, test, holds_at, fails_at, alpha, rows, power)
    note = SEEDS_BEYOND if needed is None else ""
    return Comparison(effect, effect - half, effect + half, p, against, int(subject.size), n_other,
                      math.nan if needed is None else needed, note)


MOST_SEEDS = 1000
SEEDS_BEYOND = f"more than {MOST_SEEDS:,} seeds per model would be needed to decide it"


def seeds_needed(effect: float, subject: np.ndarray, other: np.ndarray | None, test: str, holds_at: float,
                 fails_at: float, alpha: float, rows: int, power: float) -> float | None:
    """Seeds per model for `power` in the test the observed effect points to: towards holding (the effect beyond the
    holds test's edge: its one-sided test at α) or towards failing (the opposite test at α / rows, Bonferroni:
    Holm's first step), at the observed effect and pooled spread; NaN without spread (the data decide exactly),
    None beyond `MOST_SEEDS`."""
    sd = math.sqrt((subject.var(ddof=1) + (other.var(ddof=1) if other is not None else 0.0))
                   / (2 if other is not None else 1))
    toward_holding = abs(effect) < abs(holds_at) if test == "equivalent" else effect > holds_at
    edge, level = (holds_at, alpha) if toward_holding else (fails_at, alpha / rows)
    distance = abs(effect - edge)
    if sd == 0 or distance == 0:
        return math.nan
    found = t_test_seeds(distance / sd, level, power, two_sample=other is not None)
    return None if found is None else float(found)


def t_test_seeds(d: float, alpha: float, power: float, two_sample: bool, most: int = MOST_SEEDS) -> int | None:
    """The least n (per group) at which a one-sided t-test at `alpha` detects the standardised effect `d` with
    probability `power` (the noncentral t: nc = d·√(n/2), df = 2n − 2 for two samples; d·√n, n − 1 for one);
    None where even `most` would not."""
    for n in range(2, most + 1):
        df, nc = (2 * n - 2, d * math.sqrt(n / 2)) if two_sample else (n - 1, d * math.sqrt(n))
        if stats.nct.sf(stats.t.ppf(1 - alpha, df), df, nc) >= power:
            return n
    return None


def holm(p_values: Iterable[float]) -> list[float]:
    """Holm–Bonferroni adjusted p-values (step-down, monotone, at most 1); NaN stays NaN and is not counted."""
    p_values = list(p_values)
    finite = sorted((p, index) for index, p in enumerate(p_values) if not math.isnan(p))
    adjusted, running = list(p_values), 0.0
    for rank, (p, index) in enumerate(finite):
        running = max(running, min(1.0, (len(finite) - rank) * p))
        adjusted[index] = running
    return adjusted
