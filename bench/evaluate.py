"""`python -m bench eval RUN_DIR`: run the evaluators on a trained run and store their numbers.

Writes `eval/<name>.json` (atomically) and `eval/figures/*.png` into the run directory. Every
evaluator starts from the same seeds (torch's global seed for the models' own sampling and a
torch.Generator for which test images are used), so two models are judged on the same images
and a re-run gives the same numbers.
"""

from __future__ import annotations

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
from evaluators.common import Evaluator, Resources
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
    settings = budget.evaluation
    resources = Resources(fid_weights=fid_weights, gp_cache=gp_cache_path(config, data, cache))
    out.mkdir(exist_ok=True)
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
            intervention_heatmap(result["matrix"], result["labels"], result["condition_number"],
                                 out / "figures" / "interventions.png")
        print(f"{run_dir} {name}: {summary_line(result)}")
        results[name] = result
    torch.manual_seed(settings.seed)
    draw_all(model, data, torch.Generator().manual_seed(settings.seed), out / "figures")
    return results


def checked(evaluator: Evaluator, result: dict) -> dict:
    """`result`, unless it holds keys its evaluator does not declare (they would be dropped from every table)."""
    undeclared = evaluator.undeclared(result)
    if undeclared:
        raise BenchError(f"evaluator {evaluator.name} returned undeclared key(s) {', '.join(undeclared)}; declare "
                         f"each in its EVALUATOR's metrics or details (evaluators/{evaluator.name}.py)")
    return result


def gp_cache_path(config: RunConfig, data, cache: str | None) -> Path:
    """Where the GP head of this run's oracle is cached (mutual_info adds the GPConfig to the name)."""
    weights, _ = oracle_paths(data, config.dataset_options, preset(config.preset).oracle, cache_dir(cache))
    return weights.with_suffix(".gp.pt")


def prepare(config: RunConfig, data, device: torch.device, cache: str | None, only: list[str] | None = None) -> None:
    """Build what every run of this data set shares (the oracle; the GP head for multi-class data) once,
    before parallel workers would each wait for it."""
    names = check_names(only)
    oracle, _ = load_or_train_oracle(data, config.dataset_options, device, cache, preset(config.preset).oracle)
    if data.task == "multiclass" and "mutual_info" in names:
        from evaluators.mutual_info import GPConfig, gp_head_for

        gp_head_for(oracle, data, gp_cache_path(config, data, cache), GPConfig())


def summary_line(result: dict) -> str:
    if "unavailable" in result:
        return f"— ({result['unavailable']})"
    shown = {key: value for key, value in result.items()
             if isinstance(value, (int, float)) and key not in ("seconds", "oracle_test_accuracy")}
    text = ", ".join(f"{key} {value:.4g}" for key, value in shown.items())
    if result.get("fid_unavailable"):
        text += f"; FID — ({result['fid_unavailable']})"
    return text
