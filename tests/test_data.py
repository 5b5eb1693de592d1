"""Loaders on small files in the exact real layouts, the synthetic set, the cache, the split."""

from __future__ import annotations

import gzip
import math
import struct
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from bench.data import celeba, chexpert, labelled_indices, load, synthfaces, unlabelled_indices
from bench.data.cache import cache_dir
from bench.errors import BenchError

# ----------------------------------------------------------------------------- synthfaces


def test_synthfaces_is_deterministic_and_seeded():
    a, b = synthfaces.build(None, 60, 10, 10, seed=3), synthfaces.build(None, 60, 10, 10, seed=3)
    c = synthfaces.build(None, 60, 10, 10, seed=4)
    assert torch.equal(a.images, b.images) and torch.equal(a.factors, b.factors)
    assert not torch.equal(a.images, c.images)
    assert a.images.shape == (80, 3, 64, 64) and a.images.dtype == torch.uint8
    assert [len(a.splits[s]) for s in ("train", "valid", "test")] == [60, 10, 10]


def test_synthfaces_labels_are_thresholds_of_characteristics_that_vary_within_each_class():
    data = synthfaces.build(None, 3000, 10, 10, seed=0)
    factors, labels = data.factors.numpy(), data.labels.numpy()
    assert len(data.label_names) >= 6 and set(synthfaces.CONTEXT) <= set(data.factor_names)
    for j, threshold in enumerate(synthfaces.THRESHOLDS):
        np.testing.assert_array_equal(labels[:, j], factors[:, j] > threshold)
        for value in (0, 1):
            within = factors[labels[:, j] == value, j]
            assert within.std() > 0.05 * (factors[:, j].max() - factors[:, j].min())
    beard, tie = data.label_names.index("Beard"), data.label_names.index("Wearing_Necktie")
    assert np.corrcoef(labels[:, beard], labels[:, tie])[0, 1] > 0.3
    assert abs(np.corrcoef(labels[:, 0], labels[:, 1])[0, 1]) < 0.1


def test_synthfaces_characteristic_changes_the_image_and_context_moves_it():
    base = synthfaces.sample_factors(1, np.random.default_rng(0))
    for column in range(len(synthfaces.FACTORS)):
        low, high = base.copy(), base.copy()
        values = synthfaces.sample_factors(2000, np.random.default_rng(1))[:, column]
        low[0, column], high[0, column] = np.quantile(values, [0.05, 0.55])  # hue is cyclic
        difference = np.abs(synthfaces.render(low).astype(int) - synthfaces.render(high).astype(int))
        assert difference.mean() > 0.2, synthfaces.FACTORS[column]


def test_synthfaces_renders_fast():
    factors = synthfaces.sample_factors(2000, np.random.default_rng(0))
    started = time.perf_counter()
    synthfaces.render(factors[:1000]), synthfaces.render(factors[1000:])
    assert time.perf_counter() - started < 6.0  # 20k in < 30 s on one core, with margin


# ----------------------------------------------------------------------------- cache


def test_second_load_comes_from_the_cache(tmp_path):
    options = {"n_train": 50, "n_valid": 10, "n_test": 10}
    first = load("synthfaces", cache_dir=tmp_path, options=options)
    files = list(tmp_path.glob("synthfaces-*.pt"))
    assert len(files) == 1
    started = time.perf_counter()
    second = load("synthfaces", cache_dir=tmp_path, options=options)
    assert time.perf_counter() - started < 2
    assert torch.equal(first.images, second.images) and first.label_names == second.label_names
    files[0].write_bytes(b"truncated")  # a damaged entry is rebuilt, not trusted
    assert torch.equal(load("synthfaces", cache_dir=tmp_path, options=options).images, first.images)


def test_cache_directory_from_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("BENCH_CACHE", str(tmp_path / "env"))
    assert cache_dir() == tmp_path / "env"
    assert cache_dir(tmp_path / "flag") == tmp_path / "flag"


def test_unknown_dataset_and_option_are_clear_errors(tmp_path):
    with pytest.raises(BenchError, match="unknown data set 'cifar'"):
        load("cifar", cache_dir=tmp_path)
    with pytest.raises(BenchError, match="has no option 'size'"):
        load("synthfaces", cache_dir=tmp_path, options={"size": 3})
    with pytest.raises(BenchError, match="needs --data-root"):
        load("celeba", cache_dir=tmp_path)
    with pytest.raises(BenchError, match="does not exist"):
        load("celeba", tmp_path / "nowhere", cache_dir=tmp_path)


# ----------------------------------------------------------------------------- split


def test_supervision_split_sizes_seed_and_disjointness():
    train = np.arange(100, 1100)
    split = labelled_indices(train, 0.06, seed=1, batch_size=20)
    assert len(split) == math.ceil(0.06 * 1000) and np.all(np.isin(split, train))
    np.testing.assert_array_equal(split, labelled_indices(train, 0.06, seed=1, batch_size=20))
    assert not np.array_equal(split, labelled_indices(train, 0.06, seed=2, batch_size=20))
    assert len(labelled_indices(train, 0.004, seed=1, batch_size=20)) == 20  # never below one batch
    np.testing.assert_array_equal(labelled_indices(train, 1.0, seed=1, batch_size=20), train)
    rest = unlabelled_indices(train, split)
    assert len(rest) + len(split) == 1000 and not set(rest) & set(split)


@pytest.mark.parametrize("f", [0.0, -0.1, 1.5, float("nan")])
def test_supervision_rate_outside_unit_interval(f):
    with pytest.raises(BenchError, match=r"outside \(0, 1\]"):
        labelled_indices(np.arange(10), f, 0, 2)


# ----------------------------------------------------------------------------- MNIST family


def write_idx(path: Path, array: np.ndarray, gz: bool) -> None:
    magic = 2051 if array.ndim == 3 else 2049
    header = struct.pack(">I", magic) + b"".join(struct.pack(">I", n) for n in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.parent.mkdir(parents=True, exist_ok=True)
    if gz:
        with gzip.open(f"{path}.gz", "wb") as handle:
            handle.write(payload)
    else:
        path.write_bytes(payload)


def make_idx_dir(directory: Path, gz: bool, n_train: int = 30, n_test: int = 10) -> None:
    rng = np.random.default_rng(0)
    write_idx(directory / "train-images-idx3-ubyte", rng.integers(0, 256, (n_train, 28, 28)), gz)
    write_idx(directory / "train-labels-idx1-ubyte", np.arange(n_train) % 10, gz)
    write_idx(directory / "t10k-images-idx3-ubyte", rng.integers(0, 256, (n_test, 28, 28)), gz)
    write_idx(directory / "t10k-labels-idx1-ubyte", np.arange(n_test) % 10, gz)


@pytest.mark.parametrize(("name", "subdir", "gz"), [
    ("mnist", "MNIST/raw", False), ("fashion-mnist", "FashionMNIST/raw", True), ("mnist", "", True),
])
def test_mnist_family_from_data_root(tmp_path, name, subdir, gz):
    make_idx_dir(tmp_path / "root" / subdir, gz)
    data = load(name, tmp_path / "root", cache_dir=tmp_path / "cache")
    assert data.images.shape == (40, 1, 32, 32) and data.task == "multiclass"
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [27, 3, 10]
    np.testing.assert_array_equal(data.labels.argmax(1).numpy(), np.r_[np.arange(30) % 10, np.arange(10) % 10])
    assert torch.all(data.images[:, :, :2] == 0)  # zero padding 28 -> 32


def test_mnist_incomplete_root_names_the_missing_files(tmp_path):
    make_idx_dir(tmp_path / "root", gz=False)
    (tmp_path / "root" / "t10k-labels-idx1-ubyte").unlink()
    with pytest.raises(BenchError, match="missing t10k-labels-idx1-ubyte"):
        load("mnist", tmp_path / "root", cache_dir=tmp_path / "cache")


def test_mnist_corrupt_file(tmp_path):
    make_idx_dir(tmp_path / "root", gz=False)
    (tmp_path / "root" / "train-images-idx3-ubyte").write_bytes(b"\x00\x00\x08\x03garbage")
    with pytest.raises(BenchError, match="not a readable IDX file"):
        load("mnist", tmp_path / "root", cache_dir=tmp_path / "cache")


DEBIAN_FASHION = Path("/usr/share/datasets/fashion-mnist")


@pytest.mark.skipif(not DEBIAN_FASHION.is_dir(), reason="dataset-fashion-mnist not installed")
def test_fashion_mnist_from_the_debian_package(tmp_path):
    data = load("fashion-mnist", cache_dir=tmp_path)
    assert data.images.shape == (70000, 1, 32, 32)
    assert [len(data.splits[s]) for s in ("train", "valid", "test")] == [54000, 6000, 10000]
    assert data.label_names[0] == "T-shirt/top"
    assert torch.all(data.labels.sum(0) == 7000)  # 7,000 images per class


# ----------------------------------------------------------------------------- CelebA

ALL_CELEBA = (
    "5_o_Clock_Shadow Arched_Eyebrows Attractive Bags_Under_Eyes Bald Bangs Big_Lips Big_Nose Black_Hair "
    "Blond_Hair Blurry Brown_Hair Bushy_Eyebrows Chubby Double_Chin Eyeglasses Goatee Gray_Hair Heavy_Makeup "
    "High_Cheekbones Male Mouth_Slightly_Open Mustache Narrow_Eyes No_Beard Oval_Face Pale_Skin Pointy_Nose "
    "Receding_Hairline Rosy_Cheeks Sideburns Smiling Straight_Hair Wavy_Hair Wearing_Earrings Wearing_Hat "
    "Wearing_Lipstick Wearing_Necklace Wearing_Necktie Young"
).split()


def make_celeba(root: Path, layout: str, n: int = 6) -> np.ndarray:
    """A tiny CelebA in torchvision's layout ("txt") or the CSV one ("csv"); returns ±1 attributes."""
    rng = np.random.default_rng(0)
    attributes = rng.choice([-1, 1], size=(n, len(ALL_CELEBA)))
    names = [f"{i + 1:06d}.jpg" for i in range(n)]
    partition = [0, 0, 0, 1, 2, 2][:n]
    if layout == "txt":
        folder = root / "celeba"
        images = folder / "img_align_celeba"
        lines = [str(n), " ".join(ALL_CELEBA)] + [
            f"{name} " + " ".join(f"{v:2d}" for v in row) for name, row in zip(names, attributes, strict=True)]
        images.mkdir(parents=True)
        (folder / "list_attr_celeba.txt").write_text("\n".join(lines) + "\n")
        (folder / "list_eval_partition.txt").write_text(
            "".join(f"{name} {p}\n" for name, p in zip(names, partition, strict=True)))
    else:
        folder = root
        images = folder / "img_align_celeba" / "img_align_celeba"
        images.mkdir(parents=True)
        header = "image_id," + ",".join(ALL_CELEBA)
        rows = [f"{name}," + ",".join(str(v) for v in row) for name, row in zip(names, attributes, strict=True)]
        (folder / "list_attr_celeba.csv").write_text("\n".join([header, *rows]) + "\n")
        (folder / "list_eval_partition.csv").write_text(
            "image_id,partition\n" + "".join(f"{name},{p}\n" for name, p in zip(names, partition, strict=True)))
    for i, name in enumerate(names):
        pixels = np.full((218, 178, 3), 40 * i, np.uint8)
        pixels[:109] = 255  # top half white: resizing without crop keeps it the top half
        Image.fromarray(pixels).save(images / name)
    return attributes


@pytest.mark.parametrize("layout", ["txt", "csv"])
def test_celeba_both_layouts(tmp_path, layout):
    attributes = make_celeba(tmp_path / "root", layout)
    data = load("celeba", tmp_path / "root", cache_dir=tmp_path / "cache")
    assert data.images.shape == (6, 3, 64, 64) and data.label_names == celeba.LABELS
    columns = [ALL_CELEBA.index(label) for label in celeba.LABELS]
    np.testing.assert_array_equal(data.labels.numpy(), attributes[:, columns] == 1)
    assert [list(data.splits[s]) for s in ("train", "valid", "test")] == [[0, 1, 2], [3], [4, 5]]
    assert torch.all(data.images[:, :, :30] == 255) and torch.all(data.images[:, :, 34:] != 255)


def test_celeba_does_not_need_other_annotation_files(tmp_path):
    make_celeba(tmp_path / "root", "txt")
    assert not any((tmp_path / "root" / "celeba").glob("identity*"))
    assert len(load("celeba", tmp_path / "root", cache_dir=tmp_path / "cache").images) == 6


def test_celeba_corrupt_image_missing_column_missing_partition(tmp_path):
    make_celeba(tmp_path / "a", "csv")
    (tmp_path / "a" / "img_align_celeba" / "img_align_celeba" / "000003.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(BenchError, match=r"cannot decode image .*000003.jpg"):
        load("celeba", tmp_path / "a", cache_dir=tmp_path / "cache")
    make_celeba(tmp_path / "b", "csv")
    attribute_file = tmp_path / "b" / "list_attr_celeba.csv"
    attribute_file.write_text(attribute_file.read_text().replace("Smiling", "Grinning"))
    with pytest.raises(BenchError, match=r"lacks the column.*Smiling"):
        load("celeba", tmp_path / "b", cache_dir=tmp_path / "cache")
    make_celeba(tmp_path / "c", "txt")
    (tmp_path / "c" / "celeba" / "list_eval_partition.txt").unlink()
    with pytest.raises(BenchError, match="lacks list_eval_partition"):
        load("celeba", tmp_path / "c", cache_dir=tmp_path / "cache")


# ----------------------------------------------------------------------------- CheXpert

CHEXPERT_COLUMNS = [
    "Path", "Sex", "Age", "Frontal/Lateral", "AP/PA", "No Finding", "Enlarged Cardiomediastinum",
    "Cardiomegaly", "Lung Opacity", "Lung Lesion", "Edema", "Consolidation", "Pneumonia", "Atelectasis",
    "Pneumothorax", "Pleural Effusion", "Pleural Other", "Fracture", "Support Devices",
]


def make_chexpert(root: Path, patients: int = 40) -> None:
    folder = root / chexpert.FOLDER
    rows = {"train": [], "valid": []}
    for split, count in (("train", patients), ("valid", 3)):
        for p in range(count):
            for view in ("frontal", "lateral"):
                relative = f"{chexpert.FOLDER}/{split}/patient{p + 1:05d}/study1/view1_{view}.jpg"
                (root / relative).parent.mkdir(parents=True, exist_ok=True)
                Image.fromarray(np.full((320, 390), (7 * p) % 256, np.uint8)).save(root / relative)
                labels = {"Cardiomegaly": "1.0", "Edema": "-1.0", "Consolidation": "",
                          "Atelectasis": "0.0", "Pleural Effusion": "1.0" if p % 2 else ""}
                values = {"Path": relative, "Sex": "Female", "Age": "50",
                          "Frontal/Lateral": view.capitalize(), "AP/PA": "AP" if view == "frontal" else "", **labels}
                rows[split].append(",".join(values.get(c, "") for c in CHEXPERT_COLUMNS))
    for split, lines in rows.items():
        (folder / f"{split}.csv").write_text(",".join(CHEXPERT_COLUMNS) + "\n" + "\n".join(lines) + "\n")


def test_chexpert_layout_frontal_views_policies_and_patient_split(tmp_path):
    make_chexpert(tmp_path)
    data = load("chexpert", tmp_path, cache_dir=tmp_path / "cache")
    assert data.images.shape == (43, 3, 64, 64)  # frontal only, grey replicated to 3 channels
    assert torch.equal(data.images[:, 0], data.images[:, 2])
    assert data.label_names == chexpert.LABELS
    # Cardiomegaly 1, Edema -1 -> 1 (uncertain = ones), Consolidation blank -> 0, Atelectasis 0
    assert torch.all(data.labels[:, :4] == torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert len(data.splits["test"]) == 3 and len(data.splits["valid"]) == 2  # 5 % of 40 patients
    zeros = load("chexpert", tmp_path, cache_dir=tmp_path / "cache", options={"uncertain": "zeros", "blank": "ones"})
    assert torch.all(zeros.labels[:, :4] == torch.tensor([1.0, 0.0, 1.0, 0.0]))
    with pytest.raises(BenchError, match=r"uncertain='maybe' is not one of ones, zeros"):
        load("chexpert", tmp_path, cache_dir=tmp_path / "cache", options={"uncertain": "maybe"})


def test_chexpert_missing_column_and_missing_folder(tmp_path):
    make_chexpert(tmp_path / "a", patients=3)
    train_csv = tmp_path / "a" / chexpert.FOLDER / "train.csv"
    train_csv.write_text(train_csv.read_text().replace("Edema", "Oedema"))
    with pytest.raises(BenchError, match=r"lacks the column.*Edema"):
        load("chexpert", tmp_path / "a", cache_dir=tmp_path / "cache")
    (tmp_path / "b").mkdir()
    with pytest.raises(BenchError, match=r"no CheXpert-v1\.0-small/train\.csv"):
        load("chexpert", tmp_path / "b", cache_dir=tmp_path / "cache")
