"""Intervals and marks on numbers whose answer is known."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from bench.stats import BEST, TIED, interval, marks, separated


def test_the_interval_is_students_t_on_three_values():
    result = interval([1.0, 2.0, 3.0])  # mean 2, s = 1, t_{0.975, 2} = 4.302653
    assert (result.mean, result.std, result.n) == (2.0, 1.0, 3)
    assert result.half_width == pytest.approx(4.302653 / math.sqrt(3), rel=1e-6)
    assert (result.low, result.high) == pytest.approx((2 - result.half_width, 2 + result.half_width))


def test_one_value_has_no_interval_and_bad_values_are_refused():
    single = interval([0.7])
    assert single.mean == 0.7 and single.n == 1 and math.isnan(single.low) and math.isnan(single.std)
    assert interval([0.5, 0.5]).half_width == 0
    for bad in ([], [1.0, math.nan], [math.inf, 1.0]):
        with pytest.raises(ValueError):
            interval(bad)


def test_the_interval_covers_the_true_mean_95_percent_of_the_time():
    rng = np.random.default_rng(0)
    covered = [(lambda r: r.low <= 5.0 <= r.high)(interval(rng.normal(5.0, 2.0, size=3))) for _ in range(4000)]
    assert np.mean(covered) == pytest.approx(0.95, abs=0.012)  # ±3.5 binomial standard errors


def test_identical_models_are_tied_and_one_better_by_ten_standard_errors_is_best():
    seeds = [0.70, 0.72, 0.74]
    assert marks({"a": seeds, "b": list(seeds)}, higher_is_better=True) == {"a": TIED, "b": TIED}
    standard_error = np.std(seeds, ddof=1) / math.sqrt(3)
    better = [value + 10 * standard_error for value in seeds]
    assert marks({"a": seeds, "b": better}, higher_is_better=True) == {"b": BEST}
    assert marks({"a": seeds, "b": better}, higher_is_better=False) == {"a": BEST}  # lower is better


def test_only_models_the_test_cannot_separate_from_the_leader_are_tied():
    column = {"leader": [0.80, 0.81, 0.82], "close": [0.79, 0.81, 0.83], "far": [0.50, 0.51, 0.52]}
    assert marks(column, higher_is_better=True) == {"leader": TIED, "close": TIED}


def test_no_marks_where_a_model_has_one_seed_and_constant_seeds_differ_by_their_means():
    assert marks({"a": [0.7], "b": [0.9, 0.91]}, higher_is_better=True) == {}
    assert marks({"a": [0.9, 0.91]}, higher_is_better=True) == {}  # nothing to compare with
    assert separated([0.5, 0.5], [0.6, 0.6]) and not separated([0.5, 0.5], [0.5, 0.5])
    with pytest.raises(ValueError):
        separated([0.5], [0.5, 0.6])


def test_log_scale_interval_is_the_geometric_mean_with_exponentiated_t_bounds():
    result = interval([1.0, 10.0, 100.0], log=True)
    half = stats.t.ppf(0.975, 2) * math.log(10) / math.sqrt(3)  # the logs are 0, ln 10, 2 ln 10: sd ln 10
    assert result.mean == pytest.approx(10.0)
    assert (result.low, result.high) == pytest.approx((10 / math.exp(half), 10 * math.exp(half)))
    assert result.low > 0  # the linear interval of the same numbers runs far below zero
    assert interval([1.0, 10.0, 100.0]).low < 0
    with pytest.raises(ValueError):
        interval([1.0, -1.0], log=True)


def test_log_scale_marks_compare_geometric_means():
    """Lower is better: A's arithmetic mean (334) is dragged up by one seed; its geometric mean (10) is the best."""
    column = {"a": [1.0, 1.0, 1000.0], "b": [50.0, 60.0, 70.0]}
    assert marks(column, higher_is_better=False) == {"a": "tied", "b": "tied"}  # b leads on the arithmetic mean
    assert marks(column, higher_is_better=False, log=True) == {"a": "tied", "b": "tied"}
    assert separated([1.0, 1.1, 0.9], [100.0, 110.0, 90.0], log=True)
