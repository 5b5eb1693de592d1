"""The measurement scripts under scripts/ run on the smoke scale (so that they cannot rot), and their rules give
the known answer on constructed curves."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "scripts"))

import learning_curves  # noqa: E402  (a script, not a package)


def test_a_measure_levels_off_where_it_stays_within_its_band_around_its_last_value():
    steps = np.array([250, 500, 1000, 2000, 4000, 8000])
    rising = np.array([0.50, 0.70, 0.80, 0.88, 0.895, 0.90])  # range 0.40, band 0.04: within it from 2000
    assert learning_curves.plateau_step(steps, rising) == 2000
    assert learning_curves.plateau_step(steps, 1 - rising) == 2000  # an error: the same curve upside down
    still_rising = np.array([0.50, 0.55, 0.60, 0.65, 0.70, 0.80])
    assert learning_curves.plateau_step(steps, still_rising) == 8000
    flat = np.array([0.50, 0.505, 0.50, 0.495, 0.50, 0.50])  # never moves beyond its tolerance
    assert learning_curves.plateau_step(steps, flat) == 250
    dips_and_recovers = np.array([0.75, 0.76, 0.69, 0.62, 0.64, 0.70])  # MVAE's conditional accuracy, roughly
    assert learning_curves.plateau_step(steps, dips_and_recovers) == 8000  # not levelled at its first snapshot
    assert learning_curves.plateau_step(steps, np.full(6, np.nan)) is None


def test_the_budget_is_the_least_step_count_where_every_measure_has_levelled_off():
    levels = pd.DataFrame({"dataset": "d", "model": ["a", "b", "c"], "f": 1.0, "measure": "m",
                           "levelled_at": [1000, 3000, None]})
    budget, late = learning_curves.choose_budget(levels, 8000, (1000, 2000, 3000, 4000, 6000, 8000))
    assert budget == 3000 and late.empty
    levels.loc[1, "levelled_at"] = 6000  # beyond half the horizon: the budget is half, and that measure is named
    budget, late = learning_curves.choose_budget(levels, 8000, (1000, 2000, 3000, 4000, 6000, 8000))
    assert budget == 4000 and late.model.tolist() == ["b"]


@pytest.mark.slow
def test_the_learning_curve_script_runs_on_the_smoke_scale(tmp_path, ci_cache):
    out = tmp_path / "out"
    (tmp_path / "work").mkdir()
    (tmp_path / "work" / "cache").symlink_to(ci_cache)  # the session's cache: the smoke oracle is built once
    command = [sys.executable, str(ROOT / "scripts" / "learning_curves.py"), "--preset", "smoke", "--horizon", "250",
               "--at", "250", "--models", "ccvae", "--fs", "1", "--datasets", "synthfaces", "--jobs", "1",
               "--work", str(tmp_path / "work"), "--out", str(out)]
    subprocess.run(command, cwd=ROOT, check=True, capture_output=True, timeout=600)
    curve = pd.read_csv(out / "synthfaces" / "ccvae-f=1.csv")
    assert curve.steps.tolist() == [250]
    assert set(learning_curves.MEASURES["synthfaces"]) <= set(curve.columns)
    assert curve[list(learning_curves.MEASURES["synthfaces"])].notna().all(axis=None)
    assert (out / "plateaus.csv").is_file() and (out / "learning_curves.png").is_file()
    controls = pd.read_csv(out / "synthfaces" / "controls.csv")
    assert "floor: does nothing" in set(controls.row)
    subprocess.run([*command, "--noise", "--noise-at", "250", "--noise-seeds", "2"], cwd=ROOT, check=True,
                   capture_output=True, timeout=600)
    noise = pd.read_csv(out / "synthfaces" / "noise" / "ccvae-f=1.csv")
    assert noise.eval_seed.nunique() == 2 and (noise.steps == 250).all()
    assert noise[list(learning_curves.MEASURES["synthfaces"])].notna().all(axis=None)
    measured = pd.read_csv(out / "noise.csv")
    assert (measured.df == 2).all()  # three evaluations of one snapshot (the curve's own and two others)
    # measures that draw samples (generations, pairs) move with the evaluation seed; accuracy over the whole test
    # set moves only where the model's classifier samples and a sample crosses a threshold, so it may not
    sampled = measured[measured.measure.isin(["conditional.accuracy", "swap.score"])]
    assert len(sampled) == 2 and (sampled.sd > 0).all() and (measured.sd >= 0).all()


def test_the_evaluation_noise_is_the_pooled_spread_over_evaluation_seeds_and_widens_the_band():
    measure = "classification.accuracy"
    curves = pd.DataFrame({"dataset": "synthfaces", "model": ["a", "a", "b"], "f": 1.0, "steps": [4000, 8000, 8000],
                           measure: [0.80, 0.90, 0.70]})
    noise = pd.DataFrame({"dataset": "synthfaces", "model": ["a", "a", "b"], "f": 1.0, "steps": 8000,
                          "eval_seed": [1, 2, 1], measure: [0.92, 0.88, 0.74]})
    found = learning_curves.evaluation_noise(curves, noise).set_index("measure").loc[measure]
    # snapshot a@8000: 0.90, 0.92, 0.88 (ss 0.0008, 2 df); b@8000: 0.70, 0.74 (ss 0.0008, 1 df); a@4000 has no noise row
    assert found.df == 3 and found.sd == pytest.approx((0.0016 / 3) ** 0.5)
    least = learning_curves.tolerances(learning_curves.evaluation_noise(curves, noise))
    assert least["synthfaces", measure] == pytest.approx(1.96 * 2**0.5 * (0.0016 / 3) ** 0.5)
    assert least["synthfaces", "swap.score"] == learning_curves.LEVEL_TOLERANCE["swap.score"]  # no noise measured


def test_the_pairing_ratio_is_one_for_independent_seeds_and_small_for_a_shared_seed_effect():
    import pairing

    rng = np.random.default_rng(0)
    rows = []
    for seed in range(20):
        shared = rng.normal(0, 1)
        for model in ("a", "b"):
            rows.append({"dataset": "d", "metric": "independent", "f": 1.0, "model": model, "seed": seed,
                         "value": rng.normal(0, 1)})
            rows.append({"dataset": "d", "metric": "shared", "f": 1.0, "model": model, "seed": seed,
                         "value": shared + rng.normal(0, 0.1)})
    frame = pd.DataFrame(rows)
    independent, _ = pairing.pairing_ratio(frame[frame.metric == "independent"])
    shared, _ = pairing.pairing_ratio(frame[frame.metric == "shared"])
    assert 0.5 < independent < 1.5 and shared < 0.05
    ratio, pairs = pairing.pairing_ratio(pd.read_csv(ROOT / "results" / "stored" / "standard" / "results.csv"))
    assert pairs > 100 and 0.9 < ratio < 1.2  # the protocol's reason for unpaired tests
