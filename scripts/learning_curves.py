"""Learning curves of every measure a claim reads, to choose the claims preset's step budget (docs/BUDGET.md).

Trains each of the paper's four models (CCVAE, M2, DIVA, MVAE) at f = 0.004 and 1 on synthfaces and
Fashion-MNIST with the claims preset's data and schedule (the same optimiser steps at every f, half of them
labelled, all at f = 1) for `--horizon` steps, keeps the weights after each step count of `--at`, and evaluates
every kept snapshot with the claims preset's evaluators and budget. A snapshot after s steps is exactly the weights
of a run of s steps (the batches of a step depend on (seed, step) only, and Adam's rate is constant), except for MVAE
before its KL anneal ends (20 % of the run: β reached 1 at step 0.2·horizon here, at 0.2·s in a run of s steps).

Each finished curve is written at once to `<out>/<data set>/<model>-f=<f>.csv` (so that a stopped measurement
keeps what it finished; a curve already written is not measured again), the controls of each data set to
`<out>/<data set>/controls.csv`. `--analyse` reads them all and applies the rule (`plateau_step`, `choose_budget`):
writes `<out>/plateaus.csv` and `<out>/learning_curves.png`.

Usage: python scripts/learning_curves.py [--work DIR] [--jobs 2] [--horizon 8000] [--at 250,500,...]
       python scripts/learning_curves.py --analyse
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.config import make_config
from bench.data import DATASETS, load
from bench.evaluate import evaluation_resources, judge, prepare
from bench.files import atomic_torch_save, atomic_write_text
from bench.presets import preset
from bench.sweep import stop_workers
from bench.train import build_model, train
from evaluators import all_metrics
from evaluators.controls import controls_for
from evaluators.oracle import load_or_train_oracle

ROOT = Path(__file__).resolve().parent.parent
PRESET = "claims"
MODELS = ("ccvae", "m2", "diva", "mvae")
FS = (0.004, 1.0)
HORIZON = 8000
AT = (250, 500, 1000, 2000, 3000, 4000, 6000, 8000)
MEASURES = {  # data set -> the results.csv names of every measure a claim reads there
    "synthfaces": ("classification.accuracy", "swap.score", "ground_truth.swap_error",
                   "ground_truth.intervention_error", "interventions.flip_rate", "interventions.leakage",
                   "conditional.accuracy", "conditional.label_gain", "fid.oracle_frechet"),
    "fashion-mnist": ("classification.accuracy", "conditional.accuracy", "conditional.label_gain",
                      "interventions.flip_rate",
                      "mutual_info.generated", "fid.oracle_frechet"),
}


@dataclass(frozen=True)
class Curve:
    """One learning curve: a model at one f on one data set, under `preset_name`, to `horizon` steps."""

    dataset: str
    model: str
    f: float
    horizon: int
    at: tuple[int, ...]
    preset_name: str = PRESET

    @property
    def evaluators(self) -> list[str]:
        return sorted({measure.split(".")[0] for measure in MEASURES[self.dataset]})

    def out(self, out: Path) -> Path:
        return out / self.dataset / f"{self.model}-f={self.f:g}.csv"


def measure_curve(curve: Curve, work: Path, out: Path) -> Path:
    """Train the curve's run (keeping the weights at every step count of `at`), evaluate each snapshot, write the
    curve's CSV; a curve whose CSV exists is left as it is."""
    torch.set_num_threads(1)
    target = curve.out(out)
    if target.is_file():
        return target
    config = make_config(curve.model, curve.dataset, curve.f, 0, curve.preset_name, optimiser_steps=curve.horizon)
    device = torch.device("cpu")
    cache = str(work / "cache")
    data = load(curve.dataset, None, cache, config.dataset_options)
    run_dir = config.run_dir(work / "runs")
    snapshots = run_dir / "snapshots"
    snapshots.mkdir(parents=True, exist_ok=True)

    def keep(steps: int, trained) -> None:
        if steps in curve.at:
            atomic_torch_save({key: value.clone() for key, value in trained.state_dict().items()},
                              snapshots / f"step={steps}.pt")

    metrics = train(config, data, run_dir, device, show_progress=False, on_epoch_end=keep)
    log = pd.read_csv(run_dir / "train_log.csv")
    chosen = preset(curve.preset_name)
    oracle, oracle_record = load_or_train_oracle(data, config.dataset_options, device, cache, chosen.oracle,
                                                 show_progress=False)
    resources = evaluation_resources(config, data, cache, None)
    labelled = np.load(run_dir / "labelled.npy")
    rows = []
    for steps in curve.at:
        evaluated = snapshots / f"eval-step={steps}"
        trained = build_model(config, data, labelled, metrics["n_labelled"] + metrics["n_unlabelled"], device)
        trained.load_state_dict(torch.load(snapshots / f"step={steps}.pt", weights_only=True))
        trained.eval()
        todo = [name for name in curve.evaluators if not (evaluated / f"{name}.json").is_file()]
        if todo:
            judge(trained, data, oracle, oracle_record, chosen, chosen.evaluation, resources, todo, evaluated,
                  f"{curve.dataset} {curve.model} f={curve.f:g} after {steps} steps")
        row = {"dataset": curve.dataset, "model": curve.model, "f": curve.f, "steps": steps,
               "train_seconds": round(float(log.loc[log.steps <= steps, "seconds"].sum()), 1)}
        rows.append(row | measures_in(evaluated, curve.dataset))
    atomic_write_text(target, pd.DataFrame(rows).to_csv(index=False, float_format="%.5g"))
    return target


NOISE_STEPS = (4000, 8000)  # the fallback budget and the horizon
NOISE_SEEDS = 4  # evaluation seeds beside the preset's own, per snapshot


def measure_noise(curve: Curve, work: Path, out: Path, steps: tuple[int, ...] = NOISE_STEPS,
                  seeds: int = NOISE_SEEDS) -> Path | None:
    """The evaluators' sampling noise of one snapshot: its kept weights after each of `steps` evaluated again at
    `seeds` other evaluation seeds, written to `<out>/<data set>/noise/<model>-f=<f>.csv` (one row per step count
    and evaluation seed; the preset's own seed is the curve's row). None where the curve's snapshots are gone."""
    torch.set_num_threads(1)
    target = out / curve.dataset / "noise" / curve.out(out).name
    if target.is_file():
        return target
    config = make_config(curve.model, curve.dataset, curve.f, 0, curve.preset_name, optimiser_steps=curve.horizon)
    run_dir = config.run_dir(work / "runs")
    snapshots = run_dir / "snapshots"
    if not all((snapshots / f"step={step}.pt").is_file() for step in steps):
        return None
    device, cache, chosen = torch.device("cpu"), str(work / "cache"), preset(curve.preset_name)
    data = load(curve.dataset, None, cache, config.dataset_options)
    oracle, oracle_record = load_or_train_oracle(data, config.dataset_options, device, cache, chosen.oracle,
                                                 show_progress=False)
    resources = evaluation_resources(config, data, cache, None)
    labelled = np.load(run_dir / "labelled.npy")
    metrics = json.loads((run_dir / "metrics.json").read_text())
    rows = []
    for step in steps:
        trained = build_model(config, data, labelled, metrics["n_labelled"] + metrics["n_unlabelled"], device)
        trained.load_state_dict(torch.load(snapshots / f"step={step}.pt", weights_only=True))
        trained.eval()
        for offset in range(1, seeds + 1):
            settings = replace(chosen.evaluation, seed=chosen.evaluation.seed + offset)
            evaluated = snapshots / f"eval-step={step}-seed={settings.seed}"
            todo = [name for name in curve.evaluators if not (evaluated / f"{name}.json").is_file()]
            if todo:
                judge(trained, data, oracle, oracle_record, chosen, settings, resources, todo, evaluated,
                      f"{curve.dataset} {curve.model} f={curve.f:g} {step} steps, evaluation seed {settings.seed}")
            rows.append({"dataset": curve.dataset, "model": curve.model, "f": curve.f, "steps": step,
                         "eval_seed": settings.seed} | measures_in(evaluated, curve.dataset))
    atomic_write_text(target, pd.DataFrame(rows).to_csv(index=False, float_format="%.5g"))
    return target


def measures_in(evaluated: Path, dataset: str) -> dict[str, float]:
    """The data set's claim measures read from a folder of evaluator results (NaN where one gave no number)."""
    values = {}
    for measure in MEASURES[dataset]:
        name, key = measure.split(".")
        path = evaluated / f"{name}.json"
        number = json.loads(path.read_text()).get(key) if path.is_file() else None
        values[measure] = float(number) if isinstance(number, (int, float)) else math.nan
    return values


def measure_controls(dataset: str, work: Path, out: Path, preset_name: str = PRESET) -> Path:
    """The controls (floor, ceilings) of the data set on the same evaluators and budget: `controls.csv`."""
    torch.set_num_threads(1)
    target = out / dataset / "controls.csv"
    if target.is_file():
        return target
    config = make_config("ccvae", dataset, 1.0, 0, preset_name)
    device, cache, chosen = torch.device("cpu"), str(work / "cache"), preset(preset_name)
    data = load(dataset, None, cache, config.dataset_options)
    oracle, oracle_record = load_or_train_oracle(data, config.dataset_options, device, cache, chosen.oracle,
                                                 show_progress=False)
    prepare(config, data, device, cache, sorted({m.split(".")[0] for m in MEASURES[dataset]}))
    resources = evaluation_resources(config, data, cache, None)
    rows = []
    for control in controls_for(data, oracle):
        names = [name for name in sorted({m.split(".")[0] for m in MEASURES[dataset]}) if name in control.judges]
        evaluated = work / "controls" / dataset / control.row.replace(" ", "_").replace(":", "")
        todo = [name for name in names if not (evaluated / f"{name}.json").is_file()]
        if todo:
            judge(control.to(device), data, oracle, oracle_record, chosen, chosen.evaluation, resources, todo,
                  evaluated, f"{dataset} {control.row}")
        rows.append({"dataset": dataset, "row": control.row} | measures_in(evaluated, dataset))
    atomic_write_text(target, pd.DataFrame(rows).to_csv(index=False, float_format="%.5g"))
    return target


# ------------------------------------------------------------------------------------------------- the rule
BAND_SHARE = 0.1
"""A measure has levelled off at step s when from s on every snapshot is within a band around its value at the
horizon: this share of the measure's range over the curve, or its `LEVEL_TOLERANCE` where that is wider."""
LEVEL_TOLERANCE = {"fid.oracle_frechet": 0.05}  # log ratio: 5 % of the distance
DEFAULT_TOLERANCE = 0.01  # rates and errors in [0, 1] and nats of mutual information: one point
LEVEL_TOLERANCE |= {"swap.score": 0.02}  # |Δ log p| in nats, whose range is about 0–2


def plateau_step(steps: np.ndarray, values: np.ndarray, log_scale: bool = False,
                 tolerance: float = DEFAULT_TOLERANCE, share: float = BAND_SHARE) -> int | None:
    """The first snapshot's step count from which the measure stays within its band around the last snapshot's
    value (module's rule; a curve that dips and recovers has not levelled off until it stops moving); None where the
    measure has no numbers."""
    keep = ~np.isnan(values)
    if not keep.any():
        return None
    steps, values = steps[keep], (np.log(values[keep]) if log_scale else values[keep])
    band = max(share * float(values.max() - values.min()), tolerance)
    inside = np.abs(values - values[-1]) <= band
    outside = np.flatnonzero(~inside)
    return int(steps[outside[-1] + 1]) if outside.size else int(steps[0])


NOISE_Z = 1.96
"""The band is at least NOISE_Z · √2 · σ, σ the evaluators' sampling noise of one snapshot (`evaluation_noise`):
two snapshots evaluated with independent noise then differ by more than the band in 5 % of cases only."""


def evaluation_noise(curves: pd.DataFrame, noise: pd.DataFrame) -> pd.DataFrame:
    """Per data set and measure: the evaluators' sampling noise σ of one snapshot on the measure's scale (log for a
    log-scale one), the standard deviation over evaluation seeds of the same kept weights pooled over snapshots
    (the curve's own row at the preset's seed included), with its degrees of freedom."""
    if noise.empty:
        return pd.DataFrame(columns=["dataset", "measure", "sd", "df"])
    declared = all_metrics()
    snapshot = ["dataset", "model", "f", "steps"]
    together = pd.concat([noise, curves.merge(noise[snapshot].drop_duplicates(), on=snapshot)], ignore_index=True)
    rows = []
    for dataset, here in together.groupby("dataset"):
        for measure in (name for name in MEASURES[dataset] if name in here.columns):
            values = here[[*snapshot, measure]].dropna()
            if declared[measure].log_scale:
                values[measure] = np.log(values[measure])
            groups = values.groupby(snapshot)[measure]
            ss, df = float(groups.apply(lambda v: ((v - v.mean()) ** 2).sum()).sum()), int((groups.size() - 1).sum())
            rows.append({"dataset": dataset, "measure": measure, "sd": math.sqrt(ss / df) if df else math.nan,
                         "df": df})
    return pd.DataFrame(rows)


def tolerances(noise_sd: pd.DataFrame) -> dict[tuple[str, str], float]:
    """(data set, measure) -> the band's least half-width: the declared tolerance, or NOISE_Z · √2 · σ where wider."""
    chosen = {}
    for dataset, measures in MEASURES.items():
        for measure in measures:
            sd = noise_sd.loc[(noise_sd.dataset == dataset) & (noise_sd.measure == measure), "sd"]
            from_noise = NOISE_Z * math.sqrt(2) * float(sd.iloc[0]) if len(sd) and sd.notna().all() else 0.0
            chosen[dataset, measure] = max(LEVEL_TOLERANCE.get(measure, DEFAULT_TOLERANCE), from_noise)
    return chosen


def plateaus(curves: pd.DataFrame, least: dict[tuple[str, str], float] | None = None) -> pd.DataFrame:
    """Per data set, model, f and measure: the step at which it levelled off (None: no numbers), with the band's
    least half-width `least[data set, measure]` (default: the declared tolerances)."""
    declared = all_metrics()
    rows = []
    for (dataset, model, f), curve in curves.groupby(["dataset", "model", "f"]):
        curve = curve.sort_values("steps")
        for measure in MEASURES[dataset]:
            metric = declared[measure]
            tolerance = (least or {}).get((dataset, measure), LEVEL_TOLERANCE.get(measure, DEFAULT_TOLERANCE))
            step = plateau_step(curve.steps.to_numpy(), curve[measure].to_numpy(dtype=float), metric.log_scale,
                                tolerance)
            last, previous = curve[measure].iloc[-1], curve.loc[curve.steps <= curve.steps.max() / 2, measure]
            rows.append({"dataset": dataset, "model": model, "f": f, "measure": measure, "tolerance": tolerance,
                         "levelled_at": step, "at_half_horizon": previous.iloc[-1] if len(previous) else math.nan,
                         "at_horizon": last})
    return pd.DataFrame(rows)


def choose_budget(levels: pd.DataFrame, horizon: int, candidates: tuple[int, ...]) -> tuple[int, pd.DataFrame]:
    """The least candidate step count at most half the horizon at which every measure has levelled off, and the
    measures that had not by then (all levelled: an empty frame); where none qualifies, half the horizon."""
    allowed = [step for step in candidates if step <= horizon / 2] or [min(candidates)]
    for step in allowed:
        late = levels[levels.levelled_at.notna() & (levels.levelled_at > step)]
        if late.empty:
            return step, late
    budget = max(allowed)
    return budget, levels[levels.levelled_at.notna() & (levels.levelled_at > budget)]


def read_curves(out: Path) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """The curves, the controls and the noise measurements written under `out` (empty frames where none)."""
    def together(pattern: str) -> pd.DataFrame:
        frames = [pd.read_csv(path) for path in sorted(out.glob(pattern))]
        return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()

    return together("*/*-f=*.csv"), together("*/controls.csv"), together("*/noise/*-f=*.csv")


def plot(curves: pd.DataFrame, controls: pd.DataFrame, target: Path) -> None:
    """A row of panels per data set, one per measure against optimiser steps; a line per model (solid f = 1,
    dashed f = 0.004); the floor dotted grey, the best ceiling dotted green."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    datasets = [name for name in MEASURES if name in set(curves.dataset)]
    columns = max(len(MEASURES[name]) for name in datasets)
    figure, axes = plt.subplots(len(datasets), columns, figsize=(2.6 * columns, 2.6 * len(datasets)), squeeze=False)
    colours = {model: plt.get_cmap("tab10")(index) for index, model in enumerate(MODELS)}
    declared = all_metrics()
    for row, dataset in zip(axes, datasets, strict=True):
        here = curves[curves.dataset == dataset]
        for axis, measure in zip(row, [*MEASURES[dataset], *[None] * columns], strict=False):
            if measure is None:
                axis.axis("off")
                continue
            for (model, f), line in here.groupby(["model", "f"]):
                axis.plot(line.steps, line[measure], marker="o", markersize=2.5, color=colours.get(model),
                          linestyle="-" if f == 1 else "--", label=f"{model}, f = {f:g}")
            for _, control in controls[controls.dataset == dataset].iterrows():
                if pd.notna(control.get(measure)):
                    axis.axhline(control[measure], linestyle=":", linewidth=1,
                                 color="grey" if control.row.startswith("floor") else "seagreen")
            if declared[measure].log_scale:
                axis.set_yscale("log")
            axis.set_title(f"{dataset}: {declared[measure].label}", fontsize=8)
            axis.set_xlabel("optimiser steps", fontsize=7)
            axis.tick_params(labelsize=7)
    handles, labels = axes[0][0].get_legend_handles_labels()
    figure.legend(handles, labels, fontsize=7, loc="lower right", ncol=2)
    figure.tight_layout()
    figure.savefig(target, dpi=80)


def analyse(out: Path, horizon: int, at: tuple[int, ...]) -> str:
    curves, controls, noise = read_curves(out)
    if curves.empty:
        return f"no curves under {out} yet"
    noise_sd = evaluation_noise(curves, noise)
    atomic_write_text(out / "noise.csv", noise_sd.to_csv(index=False, float_format="%.5g"))
    levels = plateaus(curves, tolerances(noise_sd))
    atomic_write_text(out / "plateaus.csv", levels.to_csv(index=False, float_format="%.5g"))
    plot(curves, controls, out / "learning_curves.png")
    budget, late = choose_budget(levels, horizon, at)
    measured = curves.groupby(["dataset", "model", "f"]).ngroups
    lines = [f"{measured} curves; budget by the rule: {budget} steps"]
    lines += [f"  not levelled off by then: {r.dataset} {r.model} f={r.f:g} {r.measure} (at {r.levelled_at:.0f})"
              for r in late.itertuples()]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=ROOT / "runs" / "learning-curves")
    parser.add_argument("--out", type=Path, default=ROOT / "results" / "curves")
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--horizon", type=int, default=HORIZON)
    parser.add_argument("--at", default=",".join(map(str, AT)))
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--fs", default=",".join(map(str, FS)))
    parser.add_argument("--datasets", default=",".join(MEASURES))
    parser.add_argument("--preset", default=PRESET)
    parser.add_argument("--analyse", action="store_true", help="apply the rule to the curves measured so far")
    parser.add_argument("--noise", action="store_true",
                        help="evaluate the kept snapshots of the curves at other evaluation seeds (the rule's noise)")
    parser.add_argument("--noise-at", default=",".join(map(str, NOISE_STEPS)), help="the snapshots --noise evaluates")
    parser.add_argument("--noise-seeds", type=int, default=NOISE_SEEDS, help="evaluation seeds per snapshot")
    args = parser.parse_args()
    at = tuple(int(step) for step in args.at.split(","))
    if args.analyse:
        print(analyse(args.out, args.horizon, at))
        return
    datasets = [name for name in args.datasets.split(",") if name in DATASETS]
    slowest_first = sorted(args.models.split(","), key=lambda name: ("mvae", "m2").index(name) - 2
                           if name in ("mvae", "m2") else 0)  # the longest curves do not end last
    curves = [Curve(dataset, model, float(f), args.horizon, at, args.preset) for dataset in datasets
              for model in slowest_first for f in args.fs.split(",")]
    context = multiprocessing.get_context("spawn")
    pool = ProcessPoolExecutor(args.jobs, mp_context=context)
    signal.signal(signal.SIGTERM, _interrupted)  # `kill PID` stops the workers too, as Ctrl-C does
    try:
        if args.noise:
            noise_at = tuple(int(step) for step in args.noise_at.split(","))
            futures = {pool.submit(measure_noise, curve, args.work, args.out, noise_at, args.noise_seeds): curve
                       for curve in curves}
        else:  # the controls first, one data set per worker: they build the oracle and helpers the curves then read
            futures = {pool.submit(measure_controls, dataset, args.work, args.out, args.preset): dataset
                       for dataset in datasets}
            futures |= {pool.submit(measure_curve, curve, args.work, args.out): curve for curve in curves}
        for future in as_completed(futures):
            print(f"done: {future.result() or f'{futures[future]}: no snapshots kept'}", file=sys.stderr,
                  flush=True)
    except BaseException:
        stop_workers(pool)  # a stopped curve resumes from its checkpoint with the same command
        raise
    pool.shutdown()
    print(analyse(args.out, args.horizon, at))


def _interrupted(signum, frame) -> None:
    raise KeyboardInterrupt


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
