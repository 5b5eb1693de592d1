"""`python -m bench eval RUN_DIR`: run the evaluators on a trained run and store their numbers.

Writes `eval/<name>.json` (atomically) and `eval/figures/*.png` into the run directory. Every
evaluator starts from the same seeds (torch's global seed for the models' own sampling and a
torch.Generator for which test images are used), so two models are judged on the same images
and a re-run gives the same numbers.

Each evaluator draws as many samples as the run's preset sets in its budget (`Preset.budgets`). The evaluation
seed is the preset's (`EvalSettings.seed`) unless another is asked for: an evaluation at
seed S draws other test images, pairs and generations, and is written to `eval/seed=S/` (no figures),
so that the tables can tell the spread over training seeds from the spread of the evaluators' samples.
"""

from __future__ import annotations

import json
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from bench import rundir
from bench.budgets import EvalSettings
from bench.config import RunConfig
from bench.data import load
from bench.data.cache import cache_dir
from bench.errors import BenchError
from bench.external import load_model, read_source
from bench.files import UnreadableFile, UntrustedFile, atomic_write_text, load_tensors
from bench.presets import Preset, preset
from bench.train import build_model
from evaluators import EVALUATORS
from evaluators.common import Evaluator, Resources
from evaluators.figures import draw_all
from evaluators.oracle import load_or_train_oracle, oracle_paths


def evaluator_selection(names: list[str] | None) -> tuple[str, ...]:
    """Evaluators chosen on a command line: the given names, all when None, none for ["none"]."""
    return () if names == ["none"] else tuple(EVALUATORS.chosen(names))


def read_run(run_dir: Path) -> RunConfig:
    config_path = run_dir / rundir.CONFIG
    if not config_path.is_file():
        raise BenchError(f"{run_dir} is not a run directory (no {rundir.CONFIG}); give "
                         "runs/<data set>/<model>/f=F/seed=S")
    if not rundir.finished(run_dir):
        raise BenchError(f"{run_dir} has not finished training; run `python -m bench train` for it first")
    return RunConfig.from_json(config_path.read_text())


def load_trained_model(config: RunConfig, data, run_dir: Path, device: torch.device):
    source = read_source(run_dir)
    if source is not None:  # trained elsewhere (`bench eval --model`)
        return load_model(source, data, device)
    labelled = np.load(run_dir / rundir.LABELLED)
    train = data.splits["train"]
    n_train = len(train) if config.train_limit is None else min(len(train), config.train_limit)
    model = build_model(config, data, labelled, n_train, device)
    try:
        state = load_tensors(run_dir / rundir.CHECKPOINT, map_location=device)  # runs no code from the file
    except UntrustedFile as error:
        raise BenchError(f"{run_dir / rundir.CHECKPOINT} holds more than tensors ({error}); this suite's checkpoints "
                         "never do, so it was not written by this suite: it is not loaded") from None
    except UnreadableFile as error:
        raise BenchError(f"{error}; train the run again (delete {run_dir} first)") from None
    model.load_state_dict(state["model"])
    return model.eval()


def evaluation_preset(name: str) -> Preset:
    """The preset called `name`, its budgets checked against the evaluators' registry: a budget for no evaluator,
    or of another kind than the evaluator's, would be dropped or misread silently."""
    chosen = preset(name)
    problems = chosen.problems(EVALUATORS)
    if problems:
        raise BenchError(f"preset '{name}' sets {'; '.join(problems)}: fix its budgets in bench/presets.py")
    return chosen


def evaluation_dir(eval_root: Path, eval_seed: int | None, preset_name: str) -> Path:
    """Where the evaluations at `eval_seed` go (`bench.rundir.evaluation_dir`, the preset's evaluation seed its own)."""
    return rundir.evaluation_dir(eval_root, eval_seed, preset(preset_name).evaluation.seed)


def evaluation_settings(preset_name: str, eval_seed: int | None) -> EvalSettings:
    """The settings the evaluators share (batch size, seed) at `eval_seed` (None: the preset's own seed)."""
    shared = preset(preset_name).evaluation
    return shared if eval_seed is None else replace(shared, seed=eval_seed)


def evaluate_run(
    run_dir: Path, device: torch.device, only: list[str] | None = None, data_root: str | None = None,
    cache: str | None = None, fid_weights: str | None = None, skip_done: bool = False, data=None,
    show_progress: bool = True, eval_seed: int | None = None,
) -> dict[str, dict]:
    """Run the chosen evaluators (all by default) on a finished run at `eval_seed` (None: the preset's);
    returns name -> result."""
    names = EVALUATORS.chosen(only)
    config = read_run(run_dir)
    out = evaluation_dir(run_dir / rundir.EVAL, eval_seed, config.preset)
    if skip_done:
        names = [name for name in names if not (out / f"{name}.json").exists()]
    if not names:
        return {}
    data = data if data is not None else load(config.dataset, data_root, cache, config.dataset_options)
    chosen = evaluation_preset(config.preset)
    model = load_trained_model(config, data, run_dir, device)
    oracle, oracle_record = load_or_train_oracle(data, config.dataset_options, device, cache, chosen.oracle,
                                                 show_progress)
    resources = evaluation_resources(config, data, cache, fid_weights)
    settings = evaluation_settings(config.preset, eval_seed)
    results = judge(model, data, oracle, oracle_record, chosen, settings, resources, names, out, str(run_dir))
    if out == run_dir / rundir.EVAL:  # the figures show the preset's evaluation seed
        torch.manual_seed(chosen.evaluation.seed)
        draw_all(model, data, torch.Generator().manual_seed(chosen.evaluation.seed), out / rundir.FIGURES)
    return results


def judge(model, data, oracle, oracle_record: dict, chosen: Preset, settings: EvalSettings, resources: Resources,
          names: list[str], out: Path, label: str) -> dict[str, dict]:
    """Each evaluator of `names` on `model` at its budget of the preset, from the same seeds, written to
    `out/<name>.json`."""
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        evaluator = EVALUATORS[name]
        torch.manual_seed(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        started = time.perf_counter()
        result = checked(evaluator, evaluator.evaluate(model, data, oracle, generator, settings, resources,
                                                       chosen.budget_for(evaluator)))
        result["seconds"] = round(time.perf_counter() - started, 2)
        result["oracle_test_accuracy"] = oracle_record["test_accuracy"]
        atomic_write_text(out / f"{name}.json", json.dumps(result, indent=2) + "\n")
        if evaluator.draw is not None and "unavailable" not in result:
            evaluator.draw(result, out / rundir.FIGURES)
        print(f"{label} {name}: {summary_line(result)}")
        results[name] = result
    return results


def evaluate_controls(config: RunConfig, data, runs_root: Path, device: torch.device, cache: str | None = None,
                      fid_weights: str | None = None, only: list[str] | None = None,
                      eval_seed: int | None = None) -> None:
    """Judge the data set's controls (`evaluators/controls.py`) with the evaluators and budget of `config`'s
    preset, once per evaluation seed: each writes `<runs_root>/<data set>/controls/<control>/control.json` and
    `eval/<name>.json` (`eval/seed=S/<name>.json` for another evaluation seed than the preset's)."""
    from evaluators.controls import controls_for

    names = EVALUATORS.chosen(only)
    chosen = evaluation_preset(config.preset)
    settings = evaluation_settings(config.preset, eval_seed)
    oracle, oracle_record = load_or_train_oracle(data, config.dataset_options, device, cache, chosen.oracle)
    resources = evaluation_resources(config, data, cache, fid_weights)
    for control in controls_for(data, oracle):
        directory = rundir.controls_dir(runs_root, config.dataset, control.row)
        out = evaluation_dir(directory / rundir.EVAL, eval_seed, config.preset)
        todo = [name for name in names if name in control.judges and not (out / f"{name}.json").exists()]
        if not todo:
            continue
        record = {"row": control.row, "dataset": config.dataset, "preset": config.preset,
                  "dataset_options": config.dataset_options, "seed": chosen.evaluation.seed}
        atomic_write_text(directory / rundir.CONTROL, json.dumps(record, indent=2, sort_keys=True) + "\n")
        judge(control.to(device), data, oracle, oracle_record, chosen, settings, resources, todo, out,
              f"{config.dataset} {control.row}")


def checked(evaluator: Evaluator, result: dict) -> dict:
    """`result`, unless it is unfit to store: an undeclared key would be dropped from every table, a NaN or
    infinite metric would pass for a number, a missing one would say nothing about why."""
    problems = evaluator.problems(result)
    if problems:
        raise BenchError(f"evaluator {evaluator.name} returned {'; '.join(problems)}: declare every key in its "
                         f"EVALUATOR, and give a missing metric a reason (evaluators/{evaluator.name}.py)")
    return result


def evaluation_resources(config: RunConfig, data, cache: str | None, fid_weights: str | None) -> Resources:
    """What the evaluators of a run of `config` share: the FID weights, and the data set's oracle file, beside
    which each evaluator caches what it builds once (`Resources.cache_file`)."""
    oracle_weights, _ = oracle_paths(data, config.dataset_options, preset(config.preset).oracle, cache_dir(cache))
    return Resources(cache=oracle_weights, fid_weights=fid_weights)


def prepare(config: RunConfig, data, device: torch.device, cache: str | None, only: list[str] | None = None) -> None:
    """Build what every run of this data set shares once, before parallel workers would each wait for it: the
    oracle, then each chosen evaluator's own (its `prepare` hook: the GP head, the factor reader)."""
    names = EVALUATORS.chosen(only)
    chosen = evaluation_preset(config.preset)
    oracle, _ = load_or_train_oracle(data, config.dataset_options, device, cache, chosen.oracle)
    resources = evaluation_resources(config, data, cache, None)
    for evaluator in (EVALUATORS[name] for name in names):
        if evaluator.prepare is not None:
            evaluator.prepare(data, oracle, resources, chosen.budget_for(evaluator), device)


def summary_line(result: dict) -> str:
    if "unavailable" in result:
        return f"— ({result['unavailable']})"
    shown = {key: value for key, value in result.items()
             if isinstance(value, (int, float)) and key not in ("seconds", "oracle_test_accuracy")}
    text = ", ".join(f"{key} {value:.4g}" for key, value in shown.items())
    missing = [f"{key[: -len('_unavailable')]} — ({reason})" for key, reason in result.items()
               if key.endswith("_unavailable")]
    return "; ".join([text, *missing])
