"""Errors a user can fix. The CLI prints them as one line and exits with `exit_code`."""

from __future__ import annotations


class BenchError(Exception):
    """A problem with the user's input or environment; the message names the fix."""

    exit_code = 2


class TrainingDiverged(BenchError):
    """The loss became NaN or infinite; the last good checkpoint is kept."""

    exit_code = 1


class Regression(BenchError):
    """Fresh results moved beyond tolerance from the stored ones (or cells failed)."""

    exit_code = 1
