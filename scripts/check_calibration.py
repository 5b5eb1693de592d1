"""How often `bench check` raises a false alarm, and what it catches: the measurements behind docs/CHECK.md.

On the stored sets under results/stored (each seed left out in turn and checked against the others):
    in sample        every stored set with the calibration learnt from all of them (no alarm by construction)
                     and with none (the t limits alone)
    out of sample    each set with the calibration learnt from the other sets only (`cross_validated`)
Simulated, on each stored set with several rates as the template (its cells' means and moderated spreads),
`--checks` checks of one fresh seed drawn like the stored ones, per noise:
    even             every cell's variance its model's typical one, normal seeds
    uneven           each cell's variance drawn around its model's with the set's own prior degrees of freedom d₀
    uneven, heavy    the same with Student-t seeds of 3 degrees of freedom (tails like a model that collapses now
                     and then), scaled to the same variance
each with and without the stored calibration; and the sensitivity: a fresh seed drawn from the set's cells with
one model's accuracy 0.05 lower at every rate, the share of checks that flag it.

Writes results/check_calibration.csv and results/check_calibration.md.
Usage: python scripts/check_calibration.py [--checks 200] [--stored results/stored] [--out results]
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import pandas as pd

from bench import regression
from bench.calibration import cross_validated, false_alarms, simulated_false_alarms
from bench.check import default_tolerances, read_calibration, scales
from bench.files import atomic_write_text
from bench.stored import stored_sets

ROOT = Path(__file__).resolve().parent.parent
NOISES = {"even": {"d0": math.inf, "tail_df": None}, "uneven": {"d0": None, "tail_df": None},
          "uneven, heavy tails (t, 3 df)": {"d0": None, "tail_df": 3.0}}
DROP = 0.05
DROPPED = ("ccvae", "m2", "diva", "mvae")


def rate(rows: pd.DataFrame) -> dict:
    return {"checks": len(rows), "alarms": int(rows.alarm.sum()), "rate": float(rows.alarm.mean())}


def left_out(sets: dict[str, pd.DataFrame], calibration: regression.Calibration) -> list[dict]:
    tolerances, judged = default_tolerances(), scales()
    found = []
    for name, stored in sets.items():
        for label, used in (("calibrated", calibration), ("not calibrated", regression.UNCALIBRATED)):
            rows = false_alarms(stored, tolerances, judged, used)
            found.append({"measurement": "false alarms, seeds left out (in sample)", "set": name,
                          "condition": label, **rate(rows)})
    rows = cross_validated(sets, tolerances, judged)
    for name, mine in rows.groupby("set"):
        found.append({"measurement": "false alarms, seeds left out (out of sample)", "set": name,
                      "condition": "calibrated on the other sets", **rate(mine)})
    return found


def simulated(sets: dict[str, pd.DataFrame], calibration: regression.Calibration, checks: int) -> list[dict]:
    tolerances, judged = default_tolerances(), scales()
    found = []
    for name, stored in sets.items():
        runs = stored[stored.f.notna()]
        if runs.f.nunique() < 2:
            continue
        for noise, settings in NOISES.items():
            for label, used in (("calibrated", calibration), ("not calibrated", regression.UNCALIBRATED)):
                share = simulated_false_alarms(runs, tolerances, judged, checks, seed=0,
                                                          calibration=used, **settings)
                found.append({"measurement": f"false alarms, simulated: {noise}", "set": name, "condition": label,
                              "checks": checks, "alarms": round(share * checks), "rate": share})
    return found


def sensitivity(sets: dict[str, pd.DataFrame], calibration: regression.Calibration, checks: int) -> list[dict]:
    judged, rng = scales(), np.random.default_rng(0)
    found = []
    for name, stored in sets.items():
        runs = stored[stored.f.notna()]
        if runs.f.nunique() < 2:
            continue
        for dataset, mine in runs.groupby("dataset"):
            noise = regression.moderated(regression.cell_spreads(mine, judged))
            noise = noise[noise.sd > 0]
            for model in (m for m in DROPPED if m in set(noise.model)):
                hits = 0
                for _ in range(checks):
                    drawn = noise.scaled_mean + rng.normal(0, 1, len(noise)) * noise.sd
                    fresh = noise[regression.SEEDS_OF].assign(
                        seed=-1, value=[math.exp(v) if judged.log_scale(m) else v
                                        for m, v in zip(noise.metric, drawn, strict=True)])
                    fresh.loc[(fresh.model == model) & (fresh.metric == "classification.accuracy"), "value"] -= DROP
                    models = regression.judge_models(mine, fresh, judged, calibration)
                    hit = models[(models.model == model) & (models.metric == "classification.accuracy")]
                    hits += bool(len(hit)) and hit.verdict.iloc[0] == "WORSE"
                found.append({"measurement": f"flagged: accuracy {DROP} lower at every rate", "set": name,
                              "condition": f"{dataset}, {model}", "checks": checks, "alarms": hits,
                              "rate": hits / checks})
    return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--checks", type=int, default=200, help="simulated checks per noise and set")
    parser.add_argument("--stored", type=Path, default=ROOT / "results" / "stored")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    args = parser.parse_args()
    sets = stored_sets(args.stored)
    calibration, source = read_calibration(args.stored / "quick")
    if source is None:
        raise SystemExit(f"no calibration.csv under {args.stored}: run `python -m bench check --calibrate` first")
    rows = [*left_out(sets, calibration), *simulated(sets, calibration, args.checks),
            *sensitivity(sets, calibration, max(args.checks // 4, 1))]
    table = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(args.out / "check_calibration.csv", table.to_csv(index=False, float_format="%.4g"))
    shown = table.assign(rate=[f"{r:.1%}" for r in table.rate])
    d0 = {name: regression.prior_df(regression.cell_spreads(regression.counted_once(s[s.f.notna()]), scales()))
          for name, s in sets.items()}
    text = ("# bench check: false alarms and sensitivity, measured\n\n"
            f"Written by `python scripts/check_calibration.py --checks {args.checks}` from {len(sets)} stored sets "
            f"({', '.join(sets)}) and {source.name}. The prior's degrees of freedom each set gives: "
            + ", ".join(f"{name} {value:.2f}" for name, value in d0.items())
            + f". A false alarm is a check with any number or model flagged; the rule allows "
            f"{regression.FALSE_ALARM:.0%}.\n\n" + shown.to_markdown(index=False) + "\n")
    atomic_write_text(args.out / "check_calibration.md", text)
    print(text)


if __name__ == "__main__":
    main()
