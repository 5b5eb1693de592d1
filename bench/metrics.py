"""What a metric is: how it is labelled, which way is better, how it is printed and how far it may
move before `bench check` calls it a regression.

A metric is declared once, by whoever writes it: each evaluator module in its `EVALUATOR`
(`evaluators/`), the trainer's numbers (`metrics.json`) here in `TRAINER_METRICS`. The tables,
`bench check` and `bench perf` read every declaration through `evaluators.METRICS`; none of them
keeps a list of its own.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Tolerance:
    """|fresh − stored| ≤ max(absolute, relative·|stored|); or, with `factor`, a ratio within ×/÷ factor."""

    absolute: float
    relative: float = 0.0
    factor: float | None = None

    def allowed(self, stored: float) -> float:
        """The largest allowed |difference| (for a factor: upwards, the larger side)."""
        if self.factor is not None:
            return abs(stored) * (self.factor - 1)
        return max(self.absolute, self.relative * abs(stored))

    def within(self, stored: float, fresh: float) -> bool:
        if self.factor is not None:
            return stored > 0 and fresh > 0 and max(fresh / stored, stored / fresh) <= self.factor
        return abs(fresh - stored) <= self.allowed(stored)

    def scaled(self, scale: float) -> Tolerance:
        factor = None if self.factor is None else self.factor**scale
        return Tolerance(self.absolute * scale, self.relative * scale, factor)


@dataclass(frozen=True)
class Metric:
    """One number a run produces.

    key               its key in the evaluator's result (or in metrics.json); the full name in
                      results.csv is "<evaluator>.<key>" (the trainer's keys stand alone)
    label             how tables name it
    higher_is_better  True / False; None for a reference number (never marked best; any move
                      in `bench check` means the setup changed)
    tolerance         how far a fresh value may move from a stored one on another machine
    why               the reason for that tolerance, in a sentence
    digits            format spec for tables
    scale             "linear", or "log" for a positive, heavy-tailed measure (a Fréchet distance, a condition
                      number): its intervals, marks, regression check and claims work on log(value), and a table
                      cell shows the geometric mean with an interval that never goes below zero
    ranked            False where a model that does nothing would score best (leakage: doing nothing leaks
                      nothing): the tables mark no best in its columns; the direction still signs claims and checks
    marked_only_if    (metric, threshold): a model is marked best or tied in this metric's column only where its mean
                      of that results.csv metric at the same f is above the threshold (FID: only generators that
                      carry their labels, since random real images have the best FID of all)
    """

    key: str
    label: str
    higher_is_better: bool | None
    tolerance: Tolerance
    why: str
    digits: str = ".3f"
    scale: str = "linear"
    ranked: bool = True
    marked_only_if: tuple[str, float] | None = None

    def __post_init__(self):
        if self.scale not in SCALES:
            raise ValueError(f"metric {self.key}: scale {self.scale!r} is not one of {SCALES}")

    @property
    def log_scale(self) -> bool:
        return self.scale == "log"


SCALES = ("linear", "log")


TRAINER_METRICS = (
    Metric("test_accuracy", "test accuracy (trainer)", True, Tolerance(0.03),
           "accuracies on 1,000–2,000 test images: a few images' worth of noise in a short run"),
    Metric("majority_accuracy", "majority baseline", None, Tolerance(1e-6),
           "a property of the data: any change means the data changed"),
    Metric("optimiser_steps", "optimiser steps", None, Tolerance(0.5),
           "the training budget: any change means a different run, not noise", digits=",.0f"),
    Metric("n_labelled", "labelled images", None, Tolerance(0.5),
           "the supervision split: any change means a different run", digits=",.0f"),
    Metric("labelled_fraction", "labelled fraction", None, Tolerance(1e-9),
           "the supervision split: f, or more where the split keeps at least a batch of labelled images"),
)
"""The numbers `bench.train` writes to a run's metrics.json that the tables and checks read."""
