"""Learning curves on synthfaces: where each model's measures stop improving, to choose the `standard` budget.

Trains each model at f = 0.2 and 1 on the `standard` preset's data and schedule (all 20,000 training images at
32×32, batch 100, lr 1e-3, labelled batches recycled to half of the steps) for `--epochs` epochs, keeps the
weights at the end of each epoch of `--at`, and evaluates every kept snapshot with the standard preset's
evaluators and budget: test accuracy, the ground truth's swap, intervention and reconstruction errors, the
interventions' flip rate and leakage. The floors are the "does nothing" control of the same evaluators.

One caveat: MVAE anneals its KL weight over the first 20 % of *its run's* steps, so its snapshot at epoch e of a
long run saw a faster-finished anneal than a run of e epochs would; every other model's snapshot at epoch e is
exactly the weights a run of e epochs would end with (the data order of an epoch depends on (seed, epoch) only).

Usage: python docs/learning_curves.py [--work DIR] [--jobs 2] [--epochs 12] [--at 1,2,3,4,6,8,10,12]
Writes docs/learning_curves.csv (one row per model, f, epoch) and docs/learning_curves.png; resumable (a finished
model × f is not retrained, an evaluated snapshot is not re-evaluated).
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import sys
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.config import make_config
from bench.data import load
from bench.evaluate import evaluation_resources, judge, prepare
from bench.files import atomic_torch_save, atomic_write_text
from bench.presets import preset
from bench.train import build_model, evaluate, train
from evaluators.controls import controls_for
from evaluators.oracle import load_or_train_oracle

PRESET = "standard"
DATASET = "synthfaces"
MODELS = ("ccvae", "m2", "diva", "mvae", "csvae", "mccvae")
FS = (0.2, 1.0)
EVALUATORS = ["ground_truth", "interventions"]
MEASURES = {  # column -> (evaluator, result key)
    "swap_error": ("ground_truth", "swap_error"),
    "intervention_error": ("ground_truth", "intervention_error"),
    "reconstruction_error": ("ground_truth", "reconstruction_error"),
    "capture": ("ground_truth", "capture"),
    "flip_rate": ("interventions", "flip_rate"),
    "leakage": ("interventions", "leakage"),
}
HERE = Path(__file__).parent


def curve(model: str, f: float, epochs: int, at: list[int], work: Path) -> list[dict]:
    """Train `model` at `f` for `epochs` (keeping the weights after each epoch of `at`), then evaluate them."""
    torch.set_num_threads(1)
    config = make_config(model, DATASET, f, 0, PRESET, epochs)
    device = torch.device("cpu")
    data = load(DATASET, None, str(work / "cache"), config.dataset_options)
    run_dir = config.run_dir(work / "runs")
    snapshots = run_dir / "snapshots"

    def keep(epoch: int, trained) -> None:
        if epoch in at:
            atomic_torch_save({key: value.clone() for key, value in trained.state_dict().items()},
                              snapshots / f"epoch={epoch}.pt")

    snapshots.mkdir(parents=True, exist_ok=True)
    metrics = train(config, data, run_dir, device, show_progress=False, on_epoch_end=keep)
    log = pd.read_csv(run_dir / "train_log.csv").set_index("epoch")
    steps_per_epoch = _steps_per_epoch(config, data, run_dir)
    oracle, oracle_record = load_or_train_oracle(data, config.dataset_options, device, str(work / "cache"),
                                                 preset(PRESET).oracle, show_progress=False)
    resources = evaluation_resources(config, data, str(work / "cache"), None)
    settings = preset(PRESET).evaluation
    labelled = np.load(run_dir / "labelled.npy")
    rows = []
    for epoch in at:
        out = snapshots / f"eval-epoch={epoch}"
        evaluated = all((out / f"{name}.json").is_file() for name in EVALUATORS)
        trained = build_model(config, data, labelled, metrics["n_labelled"] + metrics["n_unlabelled"],
                              device)
        trained.load_state_dict(torch.load(snapshots / f"epoch={epoch}.pt", weights_only=True))
        trained.eval()
        if not evaluated:
            judge(trained, data, oracle, oracle_record, preset(PRESET), settings, resources, EVALUATORS, out,
                  f"{model} f={f:g} epoch {epoch}")
        row = {"model": model, "f": f, "epoch": epoch, "steps": epoch * steps_per_epoch,
               "train_seconds": round(float(log.loc[:epoch, "seconds"].sum()), 1),
               "accuracy": evaluate(trained, data, "test", device)}
        for column, (name, key) in MEASURES.items():
            row[column] = json.loads((out / f"{name}.json").read_text()).get(key)
        rows.append(row)
    return rows


def floors(work: Path) -> list[dict]:
    """The "does nothing" control's numbers on the same evaluators and budget (f and epoch left empty)."""
    config = make_config("ccvae", DATASET, 1.0, 0, PRESET)
    device = torch.device("cpu")
    data = load(DATASET, None, str(work / "cache"), config.dataset_options)
    oracle, oracle_record = load_or_train_oracle(data, config.dataset_options, device, str(work / "cache"),
                                                 preset(PRESET).oracle, show_progress=False)
    resources = evaluation_resources(config, data, str(work / "cache"), None)
    rows = []
    for control in controls_for(data, oracle):
        names = [name for name in EVALUATORS if name in control.judges]
        out = work / "controls" / control.row.replace(" ", "_").replace(":", "")
        missing = [name for name in names if not (out / f"{name}.json").is_file()]
        if missing:
            judge(control.to(device), data, oracle, oracle_record, preset(PRESET), preset(PRESET).evaluation, resources,
                  missing, out, control.row)
        row = {"model": control.row}
        for column, (name, key) in MEASURES.items():
            row[column] = json.loads((out / f"{name}.json").read_text()).get(key) if name in names else None
        rows.append(row)
    return rows


def _steps_per_epoch(config, data, run_dir: Path) -> int:
    from bench.data import unlabelled_indices
    from bench.train import epoch_schedule

    labelled = np.load(run_dir / "labelled.npy")
    train_split = data.splits["train"][: config.train_limit]
    return len(epoch_schedule(labelled, unlabelled_indices(train_split, labelled), config.batch_size, config.seed,
                              0, config.labelled_share))


def _prepare(work: Path) -> None:
    torch.set_num_threads(1)
    config = make_config("ccvae", DATASET, 1.0, 0, PRESET)
    data = load(DATASET, None, str(work / "cache"), config.dataset_options)
    prepare(config, data, torch.device("cpu"), str(work / "cache"), EVALUATORS)


CHOICE_MEASURES = {"accuracy": True, "swap_error": False, "intervention_error": False, "reconstruction_error": False,
                   "flip_rate": True}  # measure -> higher is better
SHARE = 0.9  # a measure has stopped improving once it has made this share of its improvement over the curve


def plateau_epochs(frame: pd.DataFrame, share: float = SHARE) -> pd.DataFrame:
    """Per model, f and measure: the first kept epoch at which the measure has made `share` of its improvement from
    the first kept epoch to its best over the curve."""
    rows = []
    for (model, f), curve in frame[frame.f.notna()].groupby(["model", "f"]):
        curve = curve.sort_values("epoch")
        for measure, higher in CHOICE_MEASURES.items():
            values = curve[measure].to_numpy(dtype=float) * (1 if higher else -1)
            if np.isnan(values).all():
                continue
            start, best = values[0], np.nanmax(values)
            reached = curve.epoch.to_numpy()[np.nanargmax(values >= start + share * (best - start))]
            rows.append({"model": model, "f": f, "measure": measure, "epoch": int(reached)})
    return pd.DataFrame(rows)


def plot(frame: pd.DataFrame, out: Path) -> None:
    """One panel per measure against optimiser steps, a line per model and f, the floor as a dotted line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    curves, controls = frame[frame.f.notna()], frame[frame.f.isna()]
    columns = ["accuracy", *MEASURES]
    figure, axes = plt.subplots(2, 4, figsize=(18, 7.5))
    colours = {model: plt.get_cmap("tab10")(index) for index, model in enumerate(MODELS)}
    for axis, column in zip(axes.flat, columns, strict=False):
        for (model, f), line in curves.groupby(["model", "f"]):
            axis.plot(line.steps, line[column], marker="o", markersize=3, color=colours.get(model),
                      linestyle="-" if f == 1 else "--", label=f"{model}, f = {f:g}")
        for _, control in controls.iterrows():
            if pd.notna(control[column]):
                axis.axhline(control[column], color="grey" if control.model.startswith("floor") else "seagreen",
                             linestyle=":", linewidth=1)
        axis.set_title(column.replace("_", " "))
        axis.set_xlabel("optimiser steps")
    axes.flat[-1].axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    axes.flat[-1].legend(handles, labels, fontsize=8, loc="center")
    figure.suptitle("synthfaces, standard preset's data and schedule (solid: f = 1, dashed: f = 0.2; dotted: "
                    "the floor \"does nothing\" (grey) and the renderer (green))", fontsize=10)
    figure.tight_layout()
    figure.savefig(out, dpi=80)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--work", type=Path, default=Path("runs/learning-curves"))
    parser.add_argument("--jobs", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=12)
    parser.add_argument("--at", default="1,2,3,4,6,8,10,12")
    parser.add_argument("--models", default=",".join(MODELS))
    parser.add_argument("--out", type=Path, default=HERE / "learning_curves.csv")
    args = parser.parse_args()
    at = [int(epoch) for epoch in args.at.split(",")]
    config = make_config("ccvae", DATASET, 1.0, 0, PRESET)
    load(DATASET, None, str(args.work / "cache"), config.dataset_options)  # build the data cache once
    context = multiprocessing.get_context("spawn")
    jobs = [(model, f) for model in args.models.split(",") for f in FS]
    rows = []
    with ProcessPoolExecutor(args.jobs, mp_context=context) as pool:
        # the oracle and the factor reader, built by one worker while the other trains (the runs wait for them)
        prepared = pool.submit(_prepare, args.work)
        futures = {pool.submit(curve, model, f, args.epochs, at, args.work): (model, f) for model, f in jobs}
        for future in as_completed(futures):
            rows += future.result()
            print(f"done: {futures[future]}", file=sys.stderr, flush=True)
        prepared.result()
    frame = pd.concat([pd.DataFrame(rows), pd.DataFrame(floors(args.work))], ignore_index=True)
    frame = frame.sort_values(["model", "f", "epoch"], na_position="last")
    atomic_write_text(args.out, frame.to_csv(index=False, float_format="%.4f"))
    plot(frame, args.out.with_suffix(".png"))
    plateaus = plateau_epochs(frame)
    atomic_write_text(args.out.with_name("learning_curves_plateaus.csv"), plateaus.to_csv(index=False))
    print(plateaus.pivot_table(index=["model", "f"], columns="measure", values="epoch").to_string())
    print(f"wrote {args.out}, {args.out.with_suffix('.png')} and learning_curves_plateaus.csv")


if __name__ == "__main__":
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    main()
