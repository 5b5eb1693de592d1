"""`python -m bench eval RUN_DIR`: run the evaluators on a trained run and store their numbers.

Writes `eval/<name>.json` (atomically) and `eval/figures/*.png` into the run directory. Every
evaluator starts from the same seeds (torch's global seed for the models' own sampling and a
torch.Generator for which test images are used), so two models are judged on the same images
and a re-run gives the same numbers.
"""

from __future__ import annotations

import hashlib
import json
import time
from pathlib import Path

import numpy as np
import torch

from bench.config import RunConfig
from bench.data import load
from bench.data.cache import cache_dir
from bench.errors import BenchError
from bench.files import atomic_write_text
from bench.presets import preset
from bench.train import build_model
from evaluators import EVALUATORS
from evaluators.common import EvalSettings, Evaluator, Resources
from evaluators.figures import draw_all, intervention_heatmap
from evaluators.oracle import load_or_train_oracle, oracle_paths


def check_names(names: list[str] | None) -> list[str]:
    unknown = sorted(set(names or []) - set(EVALUATORS))
    if unknown:
        raise BenchError(f"unknown evaluator(s) {', '.join(unknown)}; choose from {', '.join(EVALUATORS)}")
    return list(names) if names else list(EVALUATORS)


def evaluator_selection(names: list[str] | None) -> tuple[str, ...]:
    """Evaluators chosen on a command line: the given names, all when None, none for ["none"]."""
    return () if names == ["none"] else tuple(check_names(names))


def read_run(run_dir: Path) -> RunConfig:
    config_path = run_dir / "config.json"
    if not config_path.is_file():
        raise BenchError(f"{run_dir} is not a run directory (no config.json); give runs/<data set>/<model>/f=F/seed=S")
    if not (run_dir / "metrics.json").is_file():
        raise BenchError(f"{run_dir} has not finished training; run `python -m bench train` for it first")
    return RunConfig.from_json(config_path.read_text())


def load_trained_model(config: RunConfig, data, run_dir: Path, device: torch.device):
    labelled = np.load(run_dir / "labelled.npy")
    train = data.splits["train"]
    n_train = len(train) if config.train_limit is None else min(len(train), config.train_limit)
    model = build_model(config, data, labelled, n_train, device)
    state = torch.load(run_dir / "checkpoint.pt", map_location=device, weights_only=False)
    model.load_state_dict(state["model"])
    return model.eval()


def evaluate_run(
    run_dir: Path, device: torch.device, only: list[str] | None = None, data_root: str | None = None,
    cache: str | None = None, fid_weights: str | None = None, skip_done: bool = False, data=None,
    show_progress: bool = True,
) -> dict[str, dict]:
    """Run the chosen evaluators (all by default) on a finished run; returns name -> result."""
    names = check_names(only)
    config = read_run(run_dir)
    out = run_dir / "eval"
    if skip_done:
        names = [name for name in names if not (out / f"{name}.json").exists()]
    if not names:
        return {}
    data = data if data is not None else load(config.dataset, data_root, cache, config.dataset_options)
    budget = preset(config.preset)
    model = load_trained_model(config, data, run_dir, device)
    oracle, oracle_record = load_or_train_oracle(data, config.dataset_options, device, cache, budget.oracle,
                                                 show_progress)
    resources = evaluation_resources(config, data, cache, fid_weights)
    results = judge(model, data, oracle, oracle_record, budget.evaluation, resources, names, out, str(run_dir))
    torch.manual_seed(budget.evaluation.seed)
    draw_all(model, data, torch.Generator().manual_seed(budget.evaluation.seed), out / "figures")
    return results


def judge(model, data, oracle, oracle_record: dict, settings: EvalSettings, resources: Resources, names: list[str],
          out: Path, label: str) -> dict[str, dict]:
    """Each evaluator of `names` on `model`, from the same seeds, written to `out/<name>.json`."""
    out.mkdir(parents=True, exist_ok=True)
    results = {}
    for name in names:
        torch.manual_seed(settings.seed)
        generator = torch.Generator().manual_seed(settings.seed)
        started = time.perf_counter()
        result = checked(EVALUATORS[name], EVALUATORS[name].evaluate(model, data, oracle, generator, settings,
                                                                      resources))
        result["seconds"] = round(time.perf_counter() - started, 2)
        result["oracle_test_accuracy"] = oracle_record["test_accuracy"]
        atomic_write_text(out / f"{name}.json", json.dumps(result, indent=2) + "\n")
        if name == "interventions" and "matrix" in result:
            (out / "figures").mkdir(exist_ok=True)
            intervention_heatmap(result, out / "figures" / "interventions.png")
        print(f"{label} {name}: {summary_line(result)}")
        results[name] = result
    return results


CONTROLS = "controls"  # <runs>/<data set>/controls/<control>/: the controls' evaluations


def controls_dir(runs_root: Path, dataset: str, control: str) -> Path:
    return runs_root / dataset / CONTROLS / control.replace(": ", "-").replace(" ", "_")


def evaluate_controls(config: RunConfig, data, runs_root: Path, device: torch.device, cache: str | None = None,
                      fid_weights: str | None = None, only: list[str] | None = None) -> None:
    """Judge the data set's controls (`evaluators/controls.py`) with the evaluators and budget of `config`'s
    preset, once: each writes `<runs_root>/<data set>/controls/<control>/control.json` and `eval/<name>.json`."""
    from evaluators.controls import controls_for

    names = check_names(only)
    budget = preset(config.preset)
    oracle, oracle_record = load_or_train_oracle(data, config.dataset_options, device, cache, budget.oracle)
    resources = evaluation_resources(config, data, cache, fid_weights)
    for control in controls_for(data, oracle):
        directory = controls_dir(runs_root, config.dataset, control.row)
        todo = [name for name in names if name in control.judges and not (directory / "eval" / f"{name}.json").exists()]
        if not todo:
            continue
        record = {"row": control.row, "dataset": config.dataset, "preset": config.preset,
                  "dataset_options": config.dataset_options, "seed": budget.evaluation.seed}
        atomic_write_text(directory / "control.json", json.dumps(record, indent=2, sort_keys=True) + "\n")
        judge(control.to(device), data, oracle, oracle_record, budget.evaluation, resources, todo,
              directory / "eval", f"{config.dataset} {control.row}")


def checked(evaluator: Evaluator, result: dict) -> dict:
    """`result`, unless it is unfit to store: an undeclared key would be dropped from every table, a NaN or
    infinite metric would pass for a number, a missing one would say nothing about why."""
    problems = evaluator.problems(result)
    if problems:
        raise BenchError(f"evaluator {evaluator.name} returned {'; '.join(problems)}: declare every key in its "
                         f"EVALUATOR, and give a missing metric a reason (evaluators/{evaluator.name}.py)")
    return result


def evaluation_resources(config: RunConfig, data, cache: str | None, fid_weights: str | None) -> Resources:
    """What the evaluators of a run of `config` share: FID weights, and caches beside the data set's oracle for
    mutual_info's GP head (mutual_info adds the GPConfig to the name) and for the real images' Inception features."""
    oracle_weights, _ = oracle_paths(data, config.dataset_options, preset(config.preset).oracle, cache_dir(cache))
    weights = hashlib.sha256(str(Path(fid_weights).resolve()).encode()).hexdigest()[:8] if fid_weights else "hub"
    return Resources(fid_weights=fid_weights, gp_cache=oracle_weights.with_suffix(".gp.pt"),
                     fid_cache=oracle_weights.with_suffix(f".fid-{weights}.pt"))


def prepare(config: RunConfig, data, device: torch.device, cache: str | None, only: list[str] | None = None) -> None:
    """Build what every run of this data set shares (the oracle; the GP head for multi-class data) once,
    before parallel workers would each wait for it."""
    names = check_names(only)
    oracle, _ = load_or_train_oracle(data, config.dataset_options, device, cache, preset(config.preset).oracle)
    if data.task == "multiclass" and "mutual_info" in names:
        from evaluators.mutual_info import GPConfig, gp_head_for

        gp_head_for(oracle, data, evaluation_resources(config, data, cache, None).gp_cache, GPConfig())


def summary_line(result: dict) -> str:
    if "unavailable" in result:
        return f"— ({result['unavailable']})"
    shown = {key: value for key, value in result.items()
             if isinstance(value, (int, float)) and key not in ("seconds", "oracle_test_accuracy")}
    text = ", ".join(f"{key} {value:.4g}" for key, value in shown.items())
    missing = [f"{key[: -len('_unavailable')]} — ({reason})" for key, reason in result.items()
               if key.endswith("_unavailable")]
    return "; ".join([text, *missing])
