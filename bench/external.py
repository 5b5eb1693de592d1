"""Models trained elsewhere: `python -m bench eval --model mypkg.mod:MyVAE --checkpoint FILE --dataset D`.

The class has the interface of `bench/api.py` and is built as ``MyVAE(spec, **options)`` from the data
set's spec (every training label counts as labelled: how the model was trained is not known here) and
the `--model-option`s; the checkpoint is its state dict, this suite's own `checkpoint.pt` (a dict with
the state dict under "model"), or, with `--trust-checkpoint`, a whole module saved with `torch.save(model)`.
A checkpoint is read with torch's restricted unpickler (`weights_only=True`): tensors and plain containers,
no code. A whole pickled module is code (loading it runs whatever the file names), so it is refused with one
line unless `--trust-checkpoint` says to run it; the run directory remembers that choice. The evaluation writes
an ordinary run directory, `<runs>/<data set>/<name>/f=<f>/seed=0/`, whose `external.json` names the class
and the checkpoint (with its SHA-256) and whose `metrics.json` says `evaluated_only`: the tables show
it as the row "<name> (evaluated only)", judged by every evaluator on the same images as every model.
"""

from __future__ import annotations

import hashlib
import importlib
import json
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from bench import rundir, scoring
from bench.api import missing_members
from bench.config import RunConfig, check_rate
from bench.data.base import LabelledImages
from bench.errors import BenchError
from bench.files import UnreadableFile, UntrustedFile, atomic_write_text, load_tensors
from bench.presets import preset

SHOWN_KEYS = 5  # how many mismatched checkpoint keys an error names


@dataclass(frozen=True)
class ExternalModel:
    """Where a model trained elsewhere comes from."""

    target: str  # "package.module:Class"
    checkpoint: str
    checkpoint_sha256: str
    options: dict[str, Any]
    trusted: bool = False  # --trust-checkpoint: the checkpoint may run code when loaded (a whole pickled module)


def import_class(target: str) -> type:
    """The class named "package.module:Class", or a one-line error."""
    module_name, colon, class_name = target.partition(":")
    if not colon or not module_name or not class_name:
        from bench.models import MODELS  # the registry, read for the error's hint only

        if target in MODELS:  # one of this suite's models, trained elsewhere: say how to name its class
            options = "".join(f" --model-option {key}={value}" for key, value in MODELS[target].options.items())
            raise BenchError(f"--model takes a class: for the suite's '{target}' give --model {MODELS[target].target}"
                             f"{options} (and --name for its rows)")
        raise BenchError(f"--model '{target}' must name a class as package.module:Class")
    try:
        module = importlib.import_module(module_name)
    except ImportError as error:
        raise BenchError(f"--model '{target}': cannot import module '{module_name}' ({error}); is it on PYTHONPATH?"
                         ) from None
    if not isinstance(getattr(module, class_name, None), type):
        raise BenchError(f"--model '{target}': module '{module_name}' has no class '{class_name}'")
    return getattr(module, class_name)


def load_model(source: ExternalModel, data: LabelledImages, device: torch.device) -> nn.Module:
    """The model of `source`, built for `data` and filled from its checkpoint; one-line errors for a class that
    lacks interface members and for a checkpoint that does not match the class."""
    model_class = import_class(source.target)
    path = Path(source.checkpoint)
    if not path.is_file():
        raise BenchError(f"checkpoint {path} not found; give the file torch.save wrote")
    try:
        saved = load_tensors(path, map_location=device, trust=source.trusted)
    except UntrustedFile as error:
        raise BenchError(f"checkpoint {path} holds more than tensors and would run code when loaded ({error}); "
                         "save a state dict (torch.save(model.state_dict(), FILE)), or, only if you trust the file, "
                         "pass --trust-checkpoint to load it as a whole module (that runs the file's code)") from None
    except UnreadableFile as error:
        raise BenchError(f"{error}; give the file torch.save wrote (its state dict, or this suite's checkpoint.pt)"
                         ) from None
    if isinstance(saved, nn.Module):
        if not isinstance(saved, model_class):
            raise BenchError(f"checkpoint {path} holds a {type(saved).__name__}, not the {source.target} of --model")
        return _conforming(saved, source).to(device).eval()
    return _from_state_dict(model_class, source, data, saved, path).to(device).eval()


def _conforming(model: nn.Module, source: ExternalModel) -> nn.Module:
    missing = missing_members(model)
    if missing:
        raise BenchError(f"{source.target} lacks the interface member(s) {', '.join(missing)} (see bench/api.py)")
    return model


def _from_state_dict(model_class: type, source: ExternalModel, data: LabelledImages, saved: Any, path: Path
                     ) -> nn.Module:
    state = saved.get("model", saved) if isinstance(saved, dict) else None
    if not isinstance(state, dict) or not all(isinstance(value, torch.Tensor) for value in state.values()):
        raise BenchError(f"checkpoint {path} holds neither a state dict nor a whole module; save one with "
                         "torch.save(model.state_dict(), FILE) or torch.save(model, FILE)")
    train = data.splits["train"]
    try:
        model = model_class(data.spec(train, len(train)), **source.options)
    except TypeError as error:
        raise BenchError(f"{source.target} could not be built from the data set's spec and options "
                         f"{source.options}: {error}") from None
    expected = _conforming(model, source).state_dict()
    missing = sorted(set(expected) - set(state))
    unexpected = sorted(set(state) - set(expected))
    reshaped = sorted(key for key in set(expected) & set(state) if expected[key].shape != state[key].shape)
    problems = [f"{label} {', '.join(keys[:SHOWN_KEYS])}{' …' if len(keys) > SHOWN_KEYS else ''} ({len(keys)})"
                for label, keys in (("missing", missing), ("unexpected", unexpected), ("other shapes", reshaped))
                if keys]
    if problems:
        raise BenchError(f"checkpoint {path} does not match {source.target} built with options {source.options}: "
                         f"{'; '.join(problems)}. {image_size_hint(data)}")
    model.load_state_dict(state)
    return model


def image_size_hint(data: LabelledImages) -> str:
    """Which image size the model was built for, and which presets give which (weights trained at another size
    fit no layer whose shape depends on it)."""
    from bench.config import preset_dataset_options
    from bench.data import DATASETS
    from bench.presets import PRESETS

    side = data.images.shape[-1]
    sizes: dict[int, list[str]] = {}
    for name in PRESETS:
        sizes.setdefault(DATASETS[data.name].image_size(preset_dataset_options(name, data.name)), []).append(name)
    choices = "; ".join(f"{size}×{size}: {', '.join(names)}" for size, names in sorted(sizes.items()))
    return (f"It was built for {side}×{side} {data.name} images; the preset decides the size ({choices}) and "
            "--dataset-option image_size=N overrides it: pass the one the weights were trained at")


def write_run(source: ExternalModel, model: nn.Module, data: LabelledImages, dataset: str, preset_name: str,
              dataset_options: dict[str, Any], name: str, f: float, runs_root: Path,
              device: torch.device) -> Path:
    """The run directory of an external model: config.json, external.json and metrics.json (test accuracy where
    the model classifies, and the majority baseline), ready for `bench.evaluate.evaluate_run`."""
    config = RunConfig(model=name, dataset=dataset, f=check_rate(f), seed=0, preset=preset(preset_name).name,
                       epochs=0, batch_size=0, lr=0.0, train_limit=None, labelled_share=None,
                       model_options=source.options, dataset_options=dataset_options)
    run_dir = config.run_dir(runs_root)
    found = run_dir / rundir.EXTERNAL
    if (run_dir / rundir.CONFIG).exists() and not found.exists():
        raise BenchError(f"{run_dir} holds a run trained by this suite; choose another --name")
    run_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(run_dir / rundir.CONFIG, config.to_json() + "\n")
    atomic_write_text(found, json.dumps(asdict(source), indent=2, sort_keys=True) + "\n")
    test = torch.as_tensor(data.splits["test"])
    metrics: dict[str, Any] = {"evaluated_only": True, "majority_accuracy": scoring.majority_accuracy(
        data.labels[torch.as_tensor(data.splits["train"])], data.labels[test], data.task)}
    if model.capabilities.classify:
        with torch.no_grad():
            metrics["test_accuracy"] = scoring.accuracy(scoring.predict(model, data.images[test].to(device)),
                                                        data.labels[test], data.task)
    atomic_write_text(run_dir / rundir.METRICS, json.dumps(metrics, indent=2) + "\n")
    return run_dir


def external_run(target: str, checkpoint: str, dataset: str, preset_name: str, dataset_overrides: dict[str, Any],
                 model_options: dict[str, Any], name: str | None, f: float, runs_root: Path, device: torch.device,
                 data_root: str | None = None, cache: str | None = None, trusted: bool = False
                 ) -> tuple[Path, LabelledImages]:
    """`bench eval --model`: load the data set, build the model from its checkpoint and write its run directory;
    returns the directory and the data set (loaded once, for the evaluation)."""
    from bench.config import preset_dataset_options
    from bench.data import load

    import_class(target)  # a wrong --model fails before the data set is loaded
    options = preset_dataset_options(preset_name, dataset, dataset_overrides)
    data = load(dataset, data_root, cache, options)
    source = external_source(target, checkpoint, model_options, trusted)
    model = load_model(source, data, device)
    row = name or target.rpartition(":")[2].lower()
    return write_run(source, model, data, dataset, preset_name, options, row, f, runs_root, device), data


def external_source(target: str, checkpoint: str, options: dict[str, Any], trusted: bool = False) -> ExternalModel:
    path = Path(checkpoint)
    digest = hashlib.sha256(path.read_bytes()).hexdigest() if path.is_file() else ""
    return ExternalModel(target, str(path.resolve()), digest, options, trusted)


def read_source(run_dir: Path) -> ExternalModel | None:
    """The external model of a run directory, or None for a run this suite trained."""
    path = run_dir / rundir.EXTERNAL
    return ExternalModel(**json.loads(path.read_text())) if path.is_file() else None

