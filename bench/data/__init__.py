"""Data sources, the cache and the supervision split.

`load(name, ...)` returns a `LabelledImages` for any registered data set, decoding it once
and reading it from the cache afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from bench.data import cache
from bench.data.base import SPLITS, LabelledImages
from bench.data.split import check_rate, labelled_indices, unlabelled_indices
from bench.errors import BenchError

DATASETS = ("synthfaces", "fashion-mnist", "mnist", "celeba", "chexpert")
NEEDS_ROOT = {"celeba", "chexpert"}
TASKS = {"synthfaces": "multilabel", "fashion-mnist": "multiclass", "mnist": "multiclass", "celeba": "multilabel",
         "chexpert": "multilabel"}
OPTIONS = {
    "synthfaces": {"n_train": 20_000, "n_valid": 2_000, "n_test": 2_000, "seed": 0, "image_size": 64},
    "fashion-mnist": {},
    "mnist": {},
    "celeba": {},
    "chexpert": {"uncertain": "ones", "blank": "zeros"},
}


def dataset_options(name: str, overrides: dict[str, Any] | None = None) -> dict[str, Any]:
    """The data set's options with `overrides` applied; unknown names are an error."""
    check_name(name)
    options = dict(OPTIONS[name])
    for key, value in (overrides or {}).items():
        if key not in options:
            known = ", ".join(options) or "none"
            raise BenchError(f"{name} has no option '{key}' (its options: {known})")
        options[key] = type(options[key])(value)
    return options


def check_name(name: str) -> str:
    if name not in DATASETS:
        raise BenchError(f"unknown data set '{name}'; choose one of {', '.join(DATASETS)}")
    return name


def load(
    name: str,
    data_root: str | Path | None = None,
    cache_dir: str | Path | None = None,
    options: dict[str, Any] | None = None,
) -> LabelledImages:
    """Load data set `name` (decoded once, then from the cache)."""
    options = dataset_options(name, options)
    root = Path(data_root).expanduser() if data_root else None
    if root is not None and not root.is_dir():
        raise BenchError(f"--data-root {root} does not exist; give the folder that holds the {name} files")
    if name in NEEDS_ROOT and root is None:
        raise BenchError(f"{name} needs --data-root DIR (see the README's data set table for how to get it)")
    directory = cache.cache_dir(cache_dir)

    def build() -> LabelledImages:
        if name == "synthfaces":
            from bench.data import synthfaces
            return synthfaces.build(**options)
        if name in ("mnist", "fashion-mnist"):
            from bench.data import mnist
            return mnist.build(name, root, directory / "downloads")
        if name == "celeba":
            from bench.data import celeba
            return celeba.build(root)  # type: ignore[arg-type]
        from bench.data import chexpert
        return chexpert.build(root, **options)  # type: ignore[arg-type]

    source = {"root": str(root.resolve()) if root else None}
    return cache.cached(name, {**options, **source}, build, directory)


__all__ = [
    "DATASETS", "SPLITS", "TASKS", "LabelledImages", "check_rate", "dataset_options", "labelled_indices",
    "load", "unlabelled_indices",
]
