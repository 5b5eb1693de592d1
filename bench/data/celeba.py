"""`celeba`: CelebA's aligned faces, 18 labels, resized from 178×218 to 64×64 without crop.

Both layouts users have are found under `--data-root` (or its `celeba/` folder):

- torchvision's: `img_align_celeba/*.jpg`, `list_attr_celeba.txt`, `list_eval_partition.txt`;
- the widely shared CSV one: `list_attr_celeba.csv`, `list_eval_partition.csv` and
  `img_align_celeba/` or `img_align_celeba/img_align_celeba/` (one folder deeper).

Only the attribute file, the partition file and the images are read; other annotation files
may be missing or differ (torchvision's own class refuses that, so it is not used). The
official partition gives train/valid/test. Labels are attribute == 1.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.data.base import DataSource, LabelledImages
from bench.data.images import load_images
from bench.errors import BenchError

LABELS = (
    "Arched_Eyebrows", "Bags_Under_Eyes", "Bangs", "Black_Hair", "Blond_Hair", "Brown_Hair",
    "Bushy_Eyebrows", "Chubby", "Eyeglasses", "Heavy_Makeup", "Male", "No_Beard", "Pale_Skin",
    "Receding_Hairline", "Smiling", "Wavy_Hair", "Wearing_Necktie", "Young",
)
SIZE = 64
HELP = "download CelebA's aligned images with list_attr_celeba and list_eval_partition"


def _first_existing(directory: Path, names: tuple[str, ...]) -> Path | None:
    return next((directory / name for name in names if (directory / name).is_file()), None)


def locate(root: Path) -> tuple[Path, Path, Path]:
    """(attribute file, partition file, image folder) under `root`, or a BenchError."""
    for directory in (root, root / "celeba", root / "CelebA"):
        attributes = _first_existing(directory, ("list_attr_celeba.txt", "list_attr_celeba.csv"))
        partition = _first_existing(directory, ("list_eval_partition.txt", "list_eval_partition.csv"))
        if attributes is None and partition is None:
            continue
        if attributes is None or partition is None:
            missing = "list_attr_celeba.(txt|csv)" if attributes is None else "list_eval_partition.(txt|csv)"
            raise BenchError(f"celeba: {directory} lacks {missing}; {HELP}")
        for images in (directory / "img_align_celeba" / "img_align_celeba", directory / "img_align_celeba"):
            if images.is_dir() and any(images.glob("*.jpg")):
                return attributes, partition, images
        raise BenchError(f"celeba: no img_align_celeba/ folder with .jpg images in {directory}; {HELP}")
    raise BenchError(f"celeba: no list_attr_celeba.(txt|csv) under {root} or {root / 'celeba'}; "
                     f"check --data-root ({HELP})")


def read_attributes(path: Path) -> pd.DataFrame:
    """Attributes indexed by file name, values −1/1 (or 0/1)."""
    try:
        if path.suffix == ".csv":
            table = pd.read_csv(path).set_index("image_id")
        else:
            lines = path.read_text().splitlines()
            header = lines[1].split()
            rows = [line.split() for line in lines[2:] if line.strip()]
            table = pd.DataFrame([row[1:] for row in rows], index=[row[0] for row in rows],
                                 columns=header).astype(int)
    except (KeyError, ValueError, IndexError) as error:
        raise BenchError(f"celeba: cannot parse {path} ({error}); is it the original attribute file?") from error
    missing = [label for label in LABELS if label not in table.columns]
    if missing:
        raise BenchError(f"celeba: {path} lacks the column(s) {', '.join(missing)}; use the original attribute file")
    return table


def read_partition(path: Path) -> pd.Series:
    """Partition (0 train, 1 valid, 2 test) indexed by file name."""
    try:
        if path.suffix == ".csv":
            table = pd.read_csv(path)
            return table.set_index("image_id")["partition"].astype(int)
        table = pd.read_csv(path, sep=r"\s+", header=None, names=["image_id", "partition"])
        return table.set_index("image_id")["partition"].astype(int)
    except (KeyError, ValueError) as error:
        raise BenchError(f"celeba: cannot parse {path} ({error}); it needs image_id and partition columns") from error


def build(source: DataSource) -> LabelledImages:
    attribute_file, partition_file, image_dir = locate(source.root)
    attributes = read_attributes(attribute_file)
    partition = read_partition(partition_file)
    names = [name for name in attributes.index if name in partition.index]
    if not names:
        raise BenchError(f"celeba: {attribute_file} and {partition_file} share no image names")
    labels = torch.tensor((attributes.loc[names, list(LABELS)].to_numpy() == 1).astype(np.float32))
    images = load_images([image_dir / name for name in names], SIZE, "RGB", "celeba")
    part = partition.loc[names].to_numpy()
    return LabelledImages(
        name="celeba", images=images, labels=labels, label_names=LABELS, task="multilabel",
        splits={split: np.flatnonzero(part == code) for split, code in (("train", 0), ("valid", 1), ("test", 2))},
        notes={"source": str(image_dir)},
    )
