"""`mnist` and `fashion-mnist`: one 10-class label (the paper's appendix D.6).

The four IDX files are read with torchvision's reader. They are looked for, in order, under
`--data-root` in torchvision's layout (`<root>/MNIST/raw/`, `<root>/FashionMNIST/raw/`) or
flat (`<root>/`, `<root>/<name>/`), gzipped or not; for Fashion-MNIST with no root, in Debian's
`dataset-fashion-mnist` package (/usr/share/datasets/fashion-mnist); otherwise torchvision
downloads them into the cache directory when the machine is online.

Images are 28×28 grey scale, zero-padded to 32×32 (the 32-pixel networks of `bench.nets`).
The official test set is the test split; the last 10 % of the official training set is
the validation split.
"""

from __future__ import annotations

import gzip
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torchvision.datasets import MNIST, FashionMNIST
from torchvision.datasets.mnist import read_image_file, read_label_file

from bench.data.base import DataSource, LabelledImages
from bench.errors import BenchError

FILES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}
SOURCES = {
    "mnist": {"torchvision": MNIST, "folder": "MNIST",
              "classes": tuple(str(d) for d in range(10)), "debian": None},
    "fashion-mnist": {"torchvision": FashionMNIST, "folder": "FashionMNIST",
                      "classes": ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal",
                                  "Shirt", "Sneaker", "Bag", "Ankle boot"),
                      "debian": Path("/usr/share/datasets/fashion-mnist")},
}
VALID_FRACTION = 0.1
PADDED_SIZE = 32


def _candidate_dirs(name: str, root: Path) -> list[Path]:
    folder = SOURCES[name]["folder"]
    return [root / folder / "raw", root / folder, root / name, root]


def _find_file(directory: Path, stem: str) -> Path | None:
    for candidate in (directory / stem, directory / f"{stem}.gz"):
        if candidate.is_file():
            return candidate
    return None


def find_files(name: str, root: Path | None) -> dict[str, Path] | None:
    """The four IDX files of `name` under `root` (or the Debian package), or None."""
    directories = _candidate_dirs(name, root) if root else []
    if root is None and SOURCES[name]["debian"] is not None:
        directories.append(SOURCES[name]["debian"])
    for directory in directories:
        found = {key: _find_file(directory, stem) for key, stem in FILES.items()}
        if all(found.values()):
            return found  # type: ignore[return-value]
        if root is not None and any(found.values()):
            missing = [FILES[key] for key, path in found.items() if path is None]
            raise BenchError(f"{name}: {directory} is incomplete, missing {', '.join(missing)}; "
                             "put all four IDX files there")
    return None


def _read_idx(path: Path, reader) -> torch.Tensor:
    try:
        if path.suffix != ".gz":
            return reader(str(path))
        with tempfile.TemporaryDirectory() as scratch:
            plain = Path(scratch) / path.stem
            with gzip.open(path, "rb") as source, open(plain, "wb") as target:
                shutil.copyfileobj(source, target)
            return reader(str(plain))
    except Exception as error:
        raise BenchError(f"{path} is not a readable IDX file ({error}); re-download it") from error


def _download(name: str, directory: Path) -> dict[str, Path]:
    dataset_class = SOURCES[name]["torchvision"]
    try:
        dataset_class(str(directory), train=True, download=True)
        dataset_class(str(directory), train=False, download=True)
    except Exception as error:
        hint = " or `apt-get install dataset-fashion-mnist`" if name == "fashion-mnist" else ""
        raise BenchError(f"{name}: no files found and the download failed ({type(error).__name__}); "
                         f"pass --data-root DIR holding the four IDX files{hint}") from error
    return find_files(name, directory)  # type: ignore[return-value]


def build_mnist(source: DataSource) -> LabelledImages:
    return build("mnist", source.root, source.downloads)


def build_fashion_mnist(source: DataSource) -> LabelledImages:
    return build("fashion-mnist", source.root, source.downloads)


def fashion_mnist_found(root: Path | None) -> bool:
    """Whether Fashion-MNIST's files are under `root` (or, with no root, in Debian's package)."""
    return find_files("fashion-mnist", root) is not None


def build(name: str, root: Path | None, download_dir: Path) -> LabelledImages:
    files = find_files(name, root)
    if files is None:
        if root is not None:
            raise BenchError(f"{name}: no IDX files under {root} (looked in "
                             f"{', '.join(str(d) for d in _candidate_dirs(name, root))}); "
                             "check --data-root")
        files = _download(name, download_dir)
    train_images = _read_idx(files["train_images"], read_image_file)
    test_images = _read_idx(files["test_images"], read_image_file)
    train_labels = _read_idx(files["train_labels"], read_label_file)
    test_labels = _read_idx(files["test_labels"], read_label_file)
    if len(train_images) != len(train_labels) or len(test_images) != len(test_labels):
        raise BenchError(f"{name}: image and label files disagree in length; re-download them")
    images = torch.cat([train_images, test_images]).unsqueeze(1)
    pad = (PADDED_SIZE - images.shape[-1]) // 2
    images = F.pad(images, (pad, pad, pad, pad))
    classes = torch.cat([train_labels, test_labels]).long()
    n_train_official = len(train_images)
    n_valid = round(VALID_FRACTION * n_train_official)
    order = np.arange(len(images))
    return LabelledImages(
        name=name,
        images=images.contiguous(),
        labels=F.one_hot(classes, 10).float(),
        label_names=SOURCES[name]["classes"],
        task="multiclass",
        splits={"train": order[: n_train_official - n_valid],
                "valid": order[n_train_official - n_valid : n_train_official],
                "test": order[n_train_official:]},
        notes={"source": str(files["train_images"].parent)},
    )
