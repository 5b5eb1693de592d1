"""Does `bench check` pass what it should and catch what it should? The experiment behind the docs' numbers.

Two stored sets, each checked against fresh result sets that must pass and one that must fail:

ci (`--set ci`): the CI grid (preset `ci`) of three models (CCVAE, DIVA, M2 on synthfaces at f = 0.06) stored at
five training seeds, then
    another seed        seed 5, never stored: must pass (the seed spread is what the check allows)
    float-level change  seed 0 with NCHW instead of channels-last convolutions (the same losses to ~1e-5): must pass
    defect              seed 0 with every labelled batch's labels shifted by one image (a misaligned-labels bug):
                        must fail

quick (`--set quick`): the main job's stored set (results/stored/quick: six models, four rates, three seeds, two
data sets), then
    each seed left out  seeds {0, 1, 2} minus one stored, the one left out checked as fresh (no training): must pass
    defect              synthfaces at quick, seed 0, with the misaligned labels: must fail

Usage: python docs/check_sensitivity.py [--set ci|quick] [--work DIR]
(ci: about 10 minutes on 2 CPU cores; quick: about 15, for the defect's 24 runs). Writes
docs/check_sensitivity-<set>.md.
"""

from __future__ import annotations

import argparse
import contextlib
import io
from pathlib import Path

import pandas as pd

from bench import train
from bench.check import (
    FALSE_ALARM,
    VERDICTS,
    compare,
    compare_models,
    default_tolerances,
    read_stored,
    regressions,
)
from bench.cli import main
from bench.results import at_preset_seed, gather

CI_GRID = ["--datasets", "synthfaces", "--fs", "0.06", "--models", "ccvae,diva,m2", "--preset", "ci"]
CI_SEEDS = "0,1,2,3,4"
QUICK_DEFECT_GRID = ["--datasets", "synthfaces", "--preset", "quick", "--seeds", "0"]
HERE = Path(__file__).parent


def run(work: Path, name: str, grid: list[str], *options: str) -> Path:
    runs = work / name
    code = main(["run", *grid, *options, "--runs", str(runs), "--cache-dir", str(work / "cache"),
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


def summary(name: str, stored: pd.DataFrame, fresh: pd.DataFrame) -> dict:
    """The check's verdicts on `fresh`: its single numbers and its models' sums over rates."""
    stored, fresh = at_preset_seed(stored), at_preset_seed(fresh)
    fresh = fresh[fresh.dataset.isin(set(stored.dataset))]
    comparison = compare(stored, fresh, default_tolerances())
    models = compare_models(stored, fresh)
    failing = regressions(comparison)
    counts = comparison.verdict.value_counts()
    worst = failing.sort_values("sds").head(3)
    worst_models = models[models.verdict == "WORSE"].sort_values("shift_sds", ascending=False).head(3)
    allowance = comparison.k.dropna()
    return {"fresh": name, "numbers": len(comparison),
            "allowance (sd)": f"{allowance.min():.3g}–{allowance.max():.3g}" if len(allowance) else "—",
            **{verdict: int(counts.get(verdict, 0)) for verdict in VERDICTS},
            "model sums WORSE": f"{int((models.verdict == 'WORSE').sum())} of {len(models)}",
            "largest regressions (sd)": "; ".join(f"{row.model} {row.metric} {row.sds:+.1f}"
                                                  for row in worst.itertuples()) or "—",
            "largest model shifts (mean sd)": "; ".join(f"{row.model} {row.metric} {row.shift_sds:+.1f}"
                                                        for row in worst_models.itertuples()) or "—"}


def ci_experiment(work: Path) -> tuple[list[dict], str]:
    stored_runs = run(work, "stored", CI_GRID, "--seeds", CI_SEEDS)
    with contextlib.redirect_stdout(io.StringIO()):
        main(["check", "--update", "--runs", str(stored_runs), "--stored", str(work / "stored-set")])
    stored = read_stored(work / "stored-set")
    rows = [summary("another seed (5)", stored, gather(run(work, "seed5", CI_GRID, "--seeds", "5"))),
            summary("float-level change (seed 0, NCHW)", stored,
                    gather(run(work, "nchw", CI_GRID, "--seeds", "0", "--no-channels-last")))]
    with misaligned_labels():
        rows.append(summary("defect: labels shifted by one (seed 0)", stored,
                            gather(run(work, "defect", CI_GRID, "--seeds", "0", "--launcher", "inline"))))
    return rows, f"`bench run {' '.join(CI_GRID)} --seeds {CI_SEEDS}`"


def quick_experiment(work: Path) -> tuple[list[dict], str]:
    stored = read_stored(HERE.parent / "results" / "stored" / "quick")
    rows = []
    for seed in sorted(set(stored.seed[stored.f.notna()].astype(int))):
        runs = stored.f.notna()
        rows.append(summary(f"seed {seed} left out of the stored set, checked as fresh",
                            stored[~runs | (stored.seed != seed)], stored[runs & (stored.seed == seed)]))
    with misaligned_labels():
        defect = gather(run(work, "quick-defect", QUICK_DEFECT_GRID, "--launcher", "inline"))
    rows.append(summary("defect: labels shifted by one (synthfaces, seed 0)", stored[stored.dataset == "synthfaces"],
                        defect))
    return rows, "results/stored/quick (three seeds; with one seed left out, two)"


def main_experiment() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--set", choices=("ci", "quick"), default="ci")
    parser.add_argument("--work", default="runs/check-sensitivity")
    args = parser.parse_args()
    rows, stored_text = (ci_experiment if args.set == "ci" else quick_experiment)(Path(args.work))
    table = pd.DataFrame(rows).to_markdown(index=False)
    text = (f"# bench check: sensitivity ({args.set})\n\nStored: {stored_text}. The rule (`bench/check.py`): a "
            "number is WORSE when it is worse than its cell's stored mean by more than k pooled seed sds plus one "
            "printed digit (k: the one-sided Student-t prediction bound with the seed sd pooled over the model's "
            "rates); a model's metric is WORSE when the sum of its standardised shifts over the rates is; "
            f"{FALSE_ALARM:.0%} false alarms over the whole check, half for each. Written by "
            f"`python docs/check_sensitivity.py --set {args.set}`.\n\n{table}\n")
    out = HERE / f"check_sensitivity-{args.set}.md"
    out.write_text(text)
    print(text)


if __name__ == "__main__":
    main_experiment()
