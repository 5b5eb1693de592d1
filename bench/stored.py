"""Stored result sets on disk: `results/stored/<name>/` with results.csv (the long table of
`bench.results.gather`), configs.json (every run's config), provenance.json (the suite, the library versions and the
machines that produced it), notes.json, and gallery/ (one seed's figures per cell). Reading, storing and restoring
them; their tables are written by `bench.check.update` and `rerender`.
"""

from __future__ import annotations

import json
import platform
import shutil
from pathlib import Path

import pandas as pd
import torch

from bench import __version__, rundir
from bench.errors import BenchError
from bench.files import atomic_write, atomic_write_text
from bench.presets import preset
from bench.results import RESULT_COLUMNS, at_preset_seed
from bench.runtime import cpu_name, environment

GALLERY = "gallery"
"""A stored set's folder of one seed's figures per cell, laid out as a runs directory (`store_gallery`)."""


def run_environments(run_dirs: list[Path]) -> list[dict]:
    """The distinct environments the runs were trained in (the current one for runs that did not record theirs)."""
    found = [json.loads((path / rundir.ENVIRONMENT).read_text()) if (path / rundir.ENVIRONMENT).is_file()
             else environment() for path in run_dirs]
    return [json.loads(text) for text in sorted({json.dumps(env, sort_keys=True) for env in found})]


def stored_environments(record: dict) -> list[dict]:
    """A stored set's environments from its provenance (older sets: their torch, CPU and threads)."""
    parts = record.get("parts", [record])
    found = []
    for part in parts:
        found += part.get("environment") or [{"torch": part.get("torch"), "cpu": part.get("cpu"),
                                              "threads": part.get("cpu_threads")}]
    return found


def environment_differences(fresh: list[dict], stored: list[dict]) -> list[str]:
    """One line per environment field whose values differ between the fresh and the stored environments."""
    lines = []
    for field in sorted({key for env in fresh + stored for key in env}):
        ours = sorted({str(env.get(field)) for env in fresh if field in env})
        theirs = sorted({str(env.get(field)) for env in stored if field in env})
        if ours and theirs and ours != theirs:
            lines.append(f"  {field}: fresh {' / '.join(ours)}; stored {' / '.join(theirs)}")
    return lines


def read_stored(stored: Path) -> pd.DataFrame:
    path = stored / "results.csv"
    if not path.is_file():
        raise BenchError(f"no stored results at {path}; store a result set with `python -m bench check --update`")
    frame = pd.read_csv(path)
    if list(frame.columns) != RESULT_COLUMNS:
        raise BenchError(f"{path} must have the columns {', '.join(RESULT_COLUMNS)} (a set stored by an older "
                         "version of the suite: store it again with `bench check --update`)")
    return frame


def stored_sets(root: Path) -> dict[str, pd.DataFrame]:
    """Every stored set under `root` (a folder with a results.csv), at its preset's evaluation seed, by name."""
    return {path.parent.name: at_preset_seed(read_stored(path.parent)) for path in sorted(root.glob("*/results.csv"))}


def store(fresh: pd.DataFrame, runs_root: Path, stored: Path, datasets: tuple[str, ...] | None = None) -> pd.DataFrame:
    """Write `fresh` as the stored result set with the configs of its runs (atomically, file by file); returns
    what was stored. With `datasets`, only those data sets' numbers and configs are replaced: the stored set's
    others are kept, and its provenance records where each part came from."""
    finished = [path for path in rundir.run_directories(runs_root) if rundir.finished(path)]
    configs = [json.loads((path / rundir.CONFIG).read_text()) for path in finished]
    if datasets is not None:
        fresh, configs = fresh[fresh.dataset.isin(datasets)], [c for c in configs if c["dataset"] in datasets]
    record = {"runs": str(runs_root), "presets": sorted(set(fresh.preset)), "cells": len(configs),
              "suite_version": __version__, "torch": torch.__version__,
              "machine": f"{platform.machine()} {platform.processor() or platform.platform()}", "cpu": cpu_name(),
              "cpu_threads": torch.get_num_threads(), "environment": run_environments(finished)}
    if datasets is not None:
        kept, kept_configs, kept_parts = _kept_part(stored, datasets)
        record = {"parts": [*kept_parts, {**record, "datasets": sorted(datasets)}]}
        fresh, configs = pd.concat([kept, fresh], ignore_index=True), kept_configs + configs
    atomic_write_text(stored / "results.csv", fresh.to_csv(index=False))
    atomic_write_text(stored / "configs.json", json.dumps(configs, indent=1, sort_keys=True) + "\n")
    atomic_write_text(stored / "provenance.json", json.dumps(record, indent=2, default=str) + "\n")
    return fresh


def _kept_part(stored: Path, replaced: tuple[str, ...]) -> tuple[pd.DataFrame, list[dict], list[dict]]:
    """What a partial update keeps of the stored set: the numbers and configs of the data sets not `replaced`, and
    the provenance of each earlier part (a set stored whole is one part), narrowed to those data sets."""
    numbers = read_stored(stored)
    numbers = numbers[~numbers.dataset.isin(replaced)]
    configs = [c for c in json.loads((stored / "configs.json").read_text()) if c["dataset"] not in replaced]
    earlier = json.loads((stored / "provenance.json").read_text())
    parts = []
    for part in earlier.get("parts", [{**earlier, "datasets": sorted(set(numbers.dataset))}]):
        datasets = [name for name in part["datasets"] if name not in replaced]
        if datasets:
            parts.append({**part, "datasets": datasets, "cells": sum(c["dataset"] in datasets for c in configs)})
    return numbers, configs, parts


def gallery_of(stored: Path) -> Path | None:
    """A stored set's gallery (`store_gallery`), where it has one."""
    return stored / GALLERY if (stored / GALLERY).is_dir() else None


def store_gallery(runs_root: Path, stored: Path, datasets: tuple[str, ...] | None = None) -> int:
    """Keep what the models do visible without their checkpoints: for each cell (data set, model, f) of the
    finished runs under `runs_root` that drew figures, its smallest seed's figures (each PNG cut to a 64-colour
    palette: a tenth of a megabyte per run), training log and evaluations, in `<stored>/gallery/` laid out as a
    runs directory (`bench.rundir`), so that the report reads it as it reads runs. A cell already stored with a
    smaller seed keeps it; a larger seed's copy is replaced. Returns how many runs' figures it wrote."""
    from PIL import Image

    chosen: dict[tuple[str, str, float], tuple[rundir.RunIdentity, Path]] = {}
    for run in rundir.run_directories(runs_root):
        identity = rundir.read_identity(run)
        drew = any((run / rundir.EVAL / rundir.FIGURES).glob("*.png"))
        if rundir.finished(run) and drew and (datasets is None or identity.dataset in datasets):
            cell = (identity.dataset, identity.model, identity.f)
            if cell not in chosen or identity.seed < chosen[cell][0].seed:
                chosen[cell] = (identity, run)
    written = 0
    for identity, run in chosen.values():
        target = rundir.run_dir(stored / GALLERY, identity.dataset, identity.model, identity.f, identity.seed)
        kept = [int(path.name.removeprefix("seed=")) for path in target.parent.glob("seed=*")]
        if kept and min(kept) <= identity.seed:
            continue
        for path in sorted((run / rundir.EVAL / rundir.FIGURES).glob("*.png")):
            palette = Image.open(path).convert("RGB").quantize(64, dither=Image.Dither.NONE)
            atomic_write(target / rundir.EVAL / rundir.FIGURES / path.name,
                         lambda handle, image=palette: image.save(handle, "PNG", optimize=True))
        for path in sorted((run / rundir.EVAL).glob("*.json")):
            atomic_write_text(target / rundir.EVAL / path.name, path.read_text())
        for name in (rundir.TRAIN_LOG, rundir.CONFIG, rundir.METRICS):  # metrics.json last: the copy is whole
            if (run / name).is_file():
                atomic_write_text(target / name, (run / name).read_text())
        for other in (path for path in target.parent.glob("seed=*") if path != target):
            shutil.rmtree(other)
        written += 1
    return written


def restore(stored: Path, runs_root: Path) -> str:
    """Rebuild the run directories of a stored set's runs from its configs.json and results.csv: config.json,
    metrics.json and each evaluator's numbers at every stored evaluation seed (no checkpoint, no figures; every file
    says `restored_from`). A sweep over the same grid then takes those cells as done and trains only the others,
    so a long sweep stored part-way (`check --update`) goes on in another checkout. A run directory that exists is
    left as it is. The control rows are restored too (control.json and their numbers), so that tables, claims and a
    resumed sweep see them: the sweep judges only a control that is missing."""
    numbers = read_stored(stored)
    configs = json.loads((stored / "configs.json").read_text())
    provenance = json.loads((stored / "provenance.json").read_text()) if (stored / "provenance.json").is_file() else {}
    environments = stored_environments(provenance) if provenance else []
    rundir.mark_runs_root(runs_root)
    origin, written = {"restored_from": str(stored)}, 0
    by_cell = {cell: group for cell, group in numbers[numbers.f.notna()].groupby(["dataset", "model", "f", "seed"])}
    for config in configs:
        run = rundir.run_dir(runs_root, config["dataset"], config["model"], config["f"], config["seed"])
        rows = by_cell.get((config["dataset"], config["model"], float(config["f"]), config["seed"]))
        if rows is None or run.exists():
            continue
        own = preset(config["preset"]).evaluation.seed
        atomic_write_text(run / rundir.CONFIG, json.dumps(config, indent=2, sort_keys=True) + "\n")
        if environments:
            atomic_write_text(run / rundir.ENVIRONMENT, json.dumps(environments[0], indent=2) + "\n")
        _restore_evaluations(run / rundir.EVAL, rows, own, origin, every_evaluator=True)
        trained = rows[(rows.eval_seed == own) & ~rows.metric.str.contains(".", regex=False)]
        metrics = {**dict(zip(trained.metric, trained.value, strict=True)), "epochs": config["epochs"], **origin}
        atomic_write_text(run / rundir.METRICS, json.dumps(metrics, indent=2) + "\n")  # last: the run is finished
        written += 1
    controls = _restore_controls(numbers, configs, runs_root, origin)
    return f"restored {written} runs and {controls} control rows of {stored} into {runs_root}"


def _restore_evaluations(eval_root: Path, rows: pd.DataFrame, own_seed: int, origin: dict,
                         every_evaluator: bool) -> None:
    """eval/<evaluator>.json (eval/seed=S/ for another evaluation seed) from a stored cell's rows: for every
    registered evaluator (a run: one without numbers counts as evaluated), or only those with numbers (a control)."""
    from evaluators import EVALUATORS

    for eval_seed, group in rows.groupby("eval_seed"):
        out = rundir.evaluation_dir(eval_root, int(eval_seed), own_seed)
        values = dict(zip(group.metric, group.value, strict=True))
        for name in EVALUATORS:
            found = {metric[len(name) + 1:]: value for metric, value in values.items()
                     if metric.startswith(f"{name}.")}
            if found or every_evaluator:
                atomic_write_text(out / f"{name}.json", json.dumps({**found, **origin}, indent=2) + "\n")


def _restore_controls(numbers: pd.DataFrame, configs: list[dict], runs_root: Path, origin: dict) -> int:
    """The stored control rows (f NaN) as control directories: control.json and eval/<evaluator>.json per
    evaluation seed; a control directory that exists is left as it is."""
    options = {config["dataset"]: config["dataset_options"] for config in configs}
    written = 0
    for (dataset, row, preset_name), rows in numbers[numbers.f.isna()].groupby(["dataset", "model", "preset"]):
        directory = rundir.controls_dir(runs_root, dataset, row)
        if directory.exists():
            continue
        own = preset(preset_name).evaluation.seed
        _restore_evaluations(directory / rundir.EVAL, rows, own, origin, every_evaluator=False)
        record = {"row": row, "dataset": dataset, "preset": preset_name, "dataset_options": options.get(dataset, {}),
                  "seed": own, **origin}
        atomic_write_text(directory / rundir.CONTROL, json.dumps(record, indent=2, sort_keys=True) + "\n")  # last
        written += 1
    return written
