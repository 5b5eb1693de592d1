"""Decoding image files to uint8 tensors at model resolution, in parallel, with progress."""

from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
import torch
from PIL import Image, UnidentifiedImageError
from tqdm.auto import tqdm

from bench.errors import BenchError

CHUNK = 512


class _BadImage(Exception):
    pass


def decode(path: Path, size: int, mode: str) -> np.ndarray:
    """One image resized (no crop) to size×size, as uint8 (C, size, size)."""
    try:
        with Image.open(path) as image:
            resized = image.convert(mode).resize((size, size), Image.Resampling.BILINEAR)
    except (OSError, UnidentifiedImageError, ValueError) as error:
        raise _BadImage(f"{path}: {error}") from None
    array = np.asarray(resized, dtype=np.uint8)
    return array[None] if array.ndim == 2 else array.transpose(2, 0, 1)


def _decode_chunk(paths: list[Path], size: int, mode: str) -> np.ndarray:
    return np.stack([decode(path, size, mode) for path in paths])


def load_images(paths: list[Path], size: int, mode: str, description: str, workers: int | None = None) -> torch.Tensor:
    """Decode `paths` to uint8 (N, C, size, size); a missing or corrupt file is a BenchError."""
    missing = next((path for path in paths if not path.is_file()), None)
    if missing is not None:
        raise BenchError(f"{description}: image {missing} is missing; the image folder is incomplete, re-extract it")
    chunks = [paths[i : i + CHUNK] for i in range(0, len(paths), CHUNK)]
    workers = workers or min(len(chunks), os.cpu_count() or 1)
    progress = tqdm(total=len(paths), desc=f"decoding {description}", unit="img", disable=None)
    try:
        if workers <= 1:
            results = []
            for chunk in chunks:
                results.append(_decode_chunk(chunk, size, mode))
                progress.update(len(chunk))
        else:
            with ProcessPoolExecutor(workers) as pool:
                futures = [pool.submit(_decode_chunk, chunk, size, mode) for chunk in chunks]
                results = []
                for chunk, future in zip(chunks, futures, strict=True):
                    results.append(future.result())
                    progress.update(len(chunk))
    except _BadImage as error:
        raise BenchError(f"{description}: cannot decode image {error}; replace the corrupt file") from None
    finally:
        progress.close()
    return torch.from_numpy(np.concatenate(results))
