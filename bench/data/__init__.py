"""The data sets: one registry entry each, the cache and the supervision split.

`DATASETS` is the registry (name → `DatasetEntry`): the module that builds the data set, its task,
its options, the image sizes it can be loaded at, whether it needs `--data-root` and how to get
it. `load(name, ...)` returns a `LabelledImages` for any entry, building it once and reading it
from the cache afterwards. `python -m bench data --list` prints the registry.

To add a data set: write `bench/data/<name>.py` with `build(source: DataSource, **options)` and
add one entry below (ARCHITECTURE.md, "How to add a data set").
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType
from typing import Any

import torch

from bench.api import Task
from bench.data import cache
from bench.data.base import SPLITS, DataSource, LabelledImages
from bench.data.split import check_rate, labelled_indices, unlabelled_indices
from bench.errors import BenchError
from bench.files import atomic_torch_save, cached_build
from bench.registry import Registry
from bench.registry import load as load_target


@dataclass(frozen=True)
class DatasetEntry:
    """One data set.

    builder          "module:function" with the signature build(source: DataSource, **options)
    task             "multilabel" or "multiclass"
    labels           what its labels are, for people
    image_sizes      the sizes (square side) it can be loaded at, its default first; an
                     `image_size` option chooses among several
    options          its options and their defaults (`--dataset-option NAME=VALUE`)
    needs_root       True when it is read only from files under `--data-root`
    obtain           how to get its files
    in_default_grid  part of `run --all`'s default grid (where `found` says its files are here)
    found            "module:function" (root: Path | None) -> bool, or None: always available
    truth            a module that renders the true answer of every operation from the factors
                     (`render_at`, `with_label`, `factors_for_labels`, `labels_from_factors`), or None
    """

    name: str
    builder: str
    task: Task
    labels: str
    image_sizes: tuple[int, ...]
    options: dict[str, Any] = field(default_factory=dict)
    needs_root: bool = False
    obtain: str = ""
    in_default_grid: bool = False
    found: str | None = None
    truth: str | None = None

    def image_size(self, options: dict[str, Any]) -> int:
        return int(options.get("image_size", self.image_sizes[0]))

    def available(self, root: Path | None) -> bool:
        """Whether its files can be read here without a download (always, for a rendered set)."""
        if self.found is None:
            return not self.needs_root or root is not None
        return bool(_target(self.found)(root))


DATASETS: Registry[DatasetEntry] = Registry("data set", {entry.name: entry for entry in (
    DatasetEntry(
        "synthfaces", "bench.data.synthfaces:build", "multilabel",
        "7 binary labels, each a threshold on a rendered continuous characteristic; 4 context factors",
        image_sizes=(64, 32),
        options={"n_train": 20_000, "n_valid": 2_000, "n_test": 2_000, "seed": 0, "image_size": 64},
        obtain="nothing to get: rendered from a seed (~10 s for 24,000 images)",
        in_default_grid=True, truth="bench.data.synthfaces",
    ),
    DatasetEntry(
        "fashion-mnist", "bench.data.mnist:build_fashion_mnist", "multiclass", "10 classes",
        image_sizes=(32,),
        obtain="apt-get install dataset-fashion-mnist (found automatically), or the four IDX files under "
               "--data-root, or downloaded by torchvision when online",
        in_default_grid=True, found="bench.data.mnist:fashion_mnist_found",
    ),
    DatasetEntry(
        "mnist", "bench.data.mnist:build_mnist", "multiclass", "10 classes",
        image_sizes=(32,),
        obtain="the four IDX files under --data-root (flat, or torchvision's MNIST/raw/), or downloaded by "
               "torchvision when online",
    ),
    DatasetEntry(
        "celeba", "bench.data.celeba:build", "multilabel", "the paper's 18 attributes",
        image_sizes=(64,), needs_root=True,
        obtain="CelebA's Align&Cropped images with list_attr_celeba and list_eval_partition (torchvision's .txt "
               "layout or the CSV layout) under --data-root",
    ),
    DatasetEntry(
        "chexpert", "bench.data.chexpert:build", "multilabel",
        "Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion",
        image_sizes=(64,), options={"uncertain": "ones", "blank": "zeros"}, needs_root=True,
        obtain="CheXpert-v1.0-small; --data-root is the folder holding CheXpert-v1.0-small/",
    ),
)})


def _target(target: str):
    return load_target(target, f"data set function '{target}'")


def truth_of(data: LabelledImages) -> ModuleType | None:
    """The module that renders a data set's true answers (its registry entry's `truth`), or None."""
    name = DATASETS[data.name].truth if data.name in DATASETS and data.factors is not None else None
    return importlib.import_module(name) if name else None


def dataset_options(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data set's options with `overrides` applied; unknown names and unsupported sizes are errors."""
    chosen = DATASETS[name]
    options = dict(chosen.options)
    for key, value in (overrides or {}).items():
        if key not in options:
            known = ", ".join(options) or "none"
            raise BenchError(f"{name} has no option '{key}' (its options: {known})")
        options[key] = type(options[key])(value)
    size = chosen.image_size(options)
    if size not in chosen.image_sizes:
        raise BenchError(f"{name} image_size {size} is not supported; use one of "
                         f"{', '.join(map(str, chosen.image_sizes))} (the networks' sizes)")
    return options


def default_datasets(data_root: str | Path | None = None) -> tuple[str, ...]:
    """The data sets of `run --all`'s default grid whose files are here."""
    root = Path(data_root).expanduser() if data_root else None
    return tuple(name for name, chosen in DATASETS.items() if chosen.in_default_grid and chosen.available(root))


def load(
    name: str,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    options: dict[str, Any] | None = None,
) -> LabelledImages:
    """Load data set `name` (built once, then from the cache)."""
    chosen = DATASETS[name]
    options = dataset_options(name, options)
    root = Path(data_root).expanduser() if data_root else None
    if root is not None and not root.is_dir():
        raise BenchError(f"--data-root {root} does not exist; give the folder that holds the {name} files")
    if chosen.needs_root and root is None:
        raise BenchError(f"{name} needs --data-root DIR ({chosen.obtain})")
    directory = cache.cache_dir(cache_dir)
    source = DataSource(root, directory / "downloads")
    key = {**options, "root": str(root.resolve()) if root else None}
    return cached(name, key, lambda: _target(chosen.builder)(source, **options), directory)


def cached(name: str, params: dict, build: Callable[[], LabelledImages], directory: Path) -> LabelledImages:
    """Decode and resize once: `name` with `params` from the cache, built and stored on a miss (written to a
    temporary name and renamed, so an interrupted build never leaves a bad entry: `bench.files.cached_build`)."""
    return cached_build(directory / cache.cache_key(name, params), build,
                        lambda data, path: atomic_torch_save(data.to_payload(), path),
                        lambda path: LabelledImages.from_payload(torch.load(path, weights_only=True)),
                        f"{name} data set")


def describe_registry() -> str:
    """The registry as a table: what each data set is, its sizes and options, and how to get it."""
    from tabulate import tabulate

    def grid(chosen: DatasetEntry) -> str:
        return ("yes" if chosen.found is None else "where found") if chosen.in_default_grid else "no"

    rows = [[chosen.name, chosen.task, chosen.labels, "/".join(map(str, chosen.image_sizes)),
             ", ".join(f"{key}={value}" for key, value in chosen.options.items()) or "—",
             "yes" if chosen.needs_root else "no", grid(chosen), chosen.obtain] for chosen in DATASETS.values()]
    headers = ["name", "task", "labels", "sizes", "options (defaults)", "needs --data-root", "run --all",
               "how to get it"]
    return tabulate(rows, headers=headers, tablefmt="simple", maxcolwidths=[None, None, 28, None, 28, None, None, 44])


__all__ = [
    "DATASETS", "SPLITS", "DataSource", "DatasetEntry", "LabelledImages", "check_rate", "dataset_options",
    "default_datasets", "describe_registry", "entry", "labelled_indices", "load", "unlabelled_indices",
]
