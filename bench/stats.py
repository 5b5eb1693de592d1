"""How sure a table's numbers are: intervals over seeds, and which model of a column is best by a stated test.

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
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
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
