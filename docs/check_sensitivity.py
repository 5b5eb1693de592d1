"""Does `bench check` pass what it should and catch what it should? The experiment behind the README's numbers.

Stores the CI grid (preset `ci`) of three models (CCVAE, DIVA, M2 on synthfaces at f = 0.06) at five training
seeds, then checks three fresh result sets against that stored distribution:

    another seed        seed 5, never stored: must pass (the seed spread is what the check allows)
    float-level change  seed 0 with NCHW instead of channels-last convolutions (the same losses to ~1e-5): must pass
    defect              seed 0 with every labelled batch's labels shifted by one image (a misaligned-labels bug):
                        must fail

Usage: python docs/check_sensitivity.py [--work DIR] [--out docs/check_sensitivity.md]
(about 10 minutes on 2 CPU cores; the ci oracle and data are cached under DIR).
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import pandas as pd

from bench import train
from bench.check import FALSE_ALARM, VERDICTS, compare, default_tolerances, read_stored, regressions
from bench.cli import main
from bench.tables import gather

GRID = ["--datasets", "synthfaces", "--fs", "0.06", "--models", "ccvae,diva,m2", "--preset", "ci"]
STORED_SEEDS = "0,1,2,3,4"


def run(work: Path, name: str, *options: str) -> Path:
    runs = work / name
    code = main(["run", *GRID, *options, "--runs", str(runs), "--cache-dir", str(work / "cache"),
                 "--out", str(runs / "results")])
    if code != 0:
        raise SystemExit(f"{name}: bench run exited with {code}")
    return runs


@contextlib.contextmanager
def misaligned_labels():
    """The defect: the labels of each labelled batch belong to the batch's images shifted by one."""
    step = train.TrainingStep.__call__

    def shifted(self, index, labelled):
        if not labelled:
            return step(self, index, labelled)
        original = self.labels
        self.labels = original.roll(1, 0)
        try:
            return step(self, index, labelled)
        finally:
            self.labels = original

    train.TrainingStep.__call__ = shifted
    try:
        yield
    finally:
        train.TrainingStep.__call__ = step


def summary(name: str, stored: pd.DataFrame, fresh_runs: Path) -> dict:
    comparison = compare(stored, gather(fresh_runs), default_tolerances())
    failing = regressions(comparison)
    counts = comparison.verdict.value_counts()
    worst = failing.sort_values("sds").head(3)
    allowance = comparison.k.dropna()
    return {"fresh": name, "numbers": len(comparison), "allowance (sd)": f"{allowance.min():.3g}–{allowance.max():.3g}",
            **{verdict: int(counts.get(verdict, 0)) for verdict in VERDICTS},
            "largest regressions (sd)": "; ".join(f"{row.model} {row.metric} {row.sds:+.1f}"
                                                  for row in worst.itertuples()) or "—"}


def main_experiment() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", default="runs/check-sensitivity")
    parser.add_argument("--out", default="docs/check_sensitivity.md")
    args = parser.parse_args()
    work = Path(args.work)
    stored_runs = run(work, "stored", "--seeds", STORED_SEEDS)
    with contextlib.redirect_stdout(io.StringIO()):
        main(["check", "--update", "--runs", str(stored_runs), "--stored", str(work / "stored-set")])
    stored = read_stored(work / "stored-set")
    rows = [summary("another seed (5)", stored, run(work, "seed5", "--seeds", "5")),
            summary("float-level change (seed 0, NCHW)", stored, run(work, "nchw", "--seeds", "0",
                                                                      "--no-channels-last"))]
    with misaligned_labels():
        rows.append(summary("defect: labels shifted by one (seed 0)", stored,
                            run(work, "defect", "--seeds", "0", "--launcher", "inline")))
    table = pd.DataFrame(rows).to_markdown(index=False)
    stored_command = f"bench run {' '.join(GRID)} --seeds {STORED_SEEDS}"
    text = (f"# bench check: sensitivity\n\nStored: `{stored_command}`; a regression is a number worse than its "
            f"cell's stored mean by more than k seed sds plus one printed digit, k the one-sided Student-t "
            f"prediction bound at a {FALSE_ALARM:.0%} false-alarm rate over the check's numbers "
            "(`bench.check.seed_allowance`). Written by "
            f"`python docs/check_sensitivity.py`.\n\n{table}\n")
    Path(args.out).write_text(text)
    print(text)


if __name__ == "__main__":
    main_experiment()
