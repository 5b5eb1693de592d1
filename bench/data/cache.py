"""Decode and resize once; later loads read one file from the cache directory.

The cache directory is `--cache-dir`, else $BENCH_CACHE, else ~/.cache/ccvae-bench. Files are
written to a temporary name and renamed, so an interrupted build never leaves a bad entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch

from bench.data.base import LabelledImages
from bench.files import atomic_torch_save, cached_build

CACHE_FORMAT = 1


def cache_dir(explicit: str | os.PathLike | None = None) -> Path:
    if explicit:
        return Path(explicit).expanduser()
    if os.environ.get("BENCH_CACHE"):
        return Path(os.environ["BENCH_CACHE"]).expanduser()
    return Path.home() / ".cache" / "ccvae-bench"


def cache_key(name: str, params: dict) -> str:
    text = json.dumps({"format": CACHE_FORMAT, "name": name, **params}, sort_keys=True, default=str)
    return f"{name}-{hashlib.sha256(text.encode()).hexdigest()[:16]}.pt"


def _to_payload(data: LabelledImages) -> dict:
    return {
        "name": data.name, "images": data.images, "labels": data.labels,
        "label_names": list(data.label_names), "task": data.task,
        "splits": {k: torch.as_tensor(v) for k, v in data.splits.items()},
        "factors": data.factors, "factor_names": list(data.factor_names), "notes": data.notes,
    }


def _from_payload(payload: dict) -> LabelledImages:
    return LabelledImages(
        name=payload["name"], images=payload["images"], labels=payload["labels"],
        label_names=tuple(payload["label_names"]), task=payload["task"],
        splits={k: v.numpy().astype(np.int64) for k, v in payload["splits"].items()},
        factors=payload["factors"], factor_names=tuple(payload["factor_names"]),
        notes=payload["notes"],
    )


def cached(name: str, params: dict, build: Callable[[], LabelledImages], directory: Path) -> LabelledImages:
    """Load `name` with `params` from the cache, building and storing it on a miss (`bench.files.cached_build`)."""
    return cached_build(directory / cache_key(name, params), build,
                        lambda data, path: atomic_torch_save(_to_payload(data), path),
                        lambda path: _from_payload(torch.load(path, weights_only=True)), f"{name} data set")
