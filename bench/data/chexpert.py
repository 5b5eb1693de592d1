"""`chexpert`: CheXpert-v1.0-small chest X-rays, frontal views, 5 labels, 64×64.

Layout: `--data-root` is the folder holding `CheXpert-v1.0-small/` (or that folder itself),
with `train.csv` and `valid.csv` whose `Path` column is relative to the folder holding the
data set ("CheXpert-v1.0-small/train/patient00001/study1/view1_frontal.jpg").

- Only frontal views (`Frontal/Lateral` == "Frontal").
- Labels: Cardiomegaly, Edema, Consolidation, Atelectasis, Pleural Effusion.
  Uncertain (−1) and blank entries follow the options `uncertain` ("ones", the default, or
  "zeros") and `blank` ("zeros", the default, or "ones").
- Grey scale, replicated to 3 channels so that the CelebA networks are used unchanged (the
  paper: "used the same networks from the CelebA experiments").
- Splits: the official valid.csv (234 studies) is the test split; validation is carved from
  train by patient (5 % of patients, fixed seed), so no patient is in two splits.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import torch

from bench.data.base import DataSource, LabelledImages
from bench.data.images import load_images
from bench.errors import BenchError

LABELS = ("Cardiomegaly", "Edema", "Consolidation", "Atelectasis", "Pleural Effusion")
FOLDER = "CheXpert-v1.0-small"
SIZE = 64
VALID_PATIENT_FRACTION = 0.05
SPLIT_SEED = 0
POLICIES = {"ones": 1.0, "zeros": 0.0}


def locate(root: Path) -> Path:
    """The folder that `Path` entries are relative to (the one holding CheXpert-v1.0-small)."""
    for base in (root, root.parent):
        if (base / FOLDER / "train.csv").is_file() and (base / FOLDER / "valid.csv").is_file():
            return base
    raise BenchError(f"chexpert: no {FOLDER}/train.csv and valid.csv under {root}; "
                     f"pass --data-root the folder holding {FOLDER}/")


def policy_value(option: str, value: str) -> float:
    if value not in POLICIES:
        raise BenchError(f"chexpert: {option}='{value}' is not one of {', '.join(POLICIES)}")
    return POLICIES[value]


def read_table(path: Path, uncertain: float, blank: float) -> pd.DataFrame:
    try:
        table = pd.read_csv(path)
    except (pd.errors.ParserError, UnicodeDecodeError) as error:
        raise BenchError(f"chexpert: cannot parse {path} ({error})") from error
    missing = [c for c in ("Path", "Frontal/Lateral", *LABELS) if c not in table.columns]
    if missing:
        raise BenchError(f"chexpert: {path} lacks the column(s) {', '.join(missing)}; use the original CSV")
    table = table[table["Frontal/Lateral"] == "Frontal"].reset_index(drop=True)
    values = table[list(LABELS)].astype(float)
    table[list(LABELS)] = values.fillna(blank).replace(-1.0, uncertain)
    table["patient"] = table["Path"].str.extract(r"(patient\d+)", expand=False)
    return table


def build(source: DataSource, uncertain: str = "ones", blank: str = "zeros") -> LabelledImages:
    base = locate(source.root)
    uncertain_value, blank_value = policy_value("uncertain", uncertain), policy_value("blank", blank)
    train = read_table(base / FOLDER / "train.csv", uncertain_value, blank_value)
    test = read_table(base / FOLDER / "valid.csv", uncertain_value, blank_value)
    patients = np.array(sorted(train["patient"].dropna().unique()))
    rng = np.random.default_rng(SPLIT_SEED)
    n_valid = max(1, round(VALID_PATIENT_FRACTION * len(patients)))
    valid_patients = set(rng.choice(patients, size=n_valid, replace=False)) if len(patients) > 1 else set()
    is_valid = train["patient"].isin(valid_patients).to_numpy()
    table = pd.concat([train, test], ignore_index=True)
    images = load_images([base / path for path in table["Path"]], SIZE, "L", "chexpert")
    n_train_rows = len(train)
    order = np.arange(len(table))
    return LabelledImages(
        name="chexpert",
        images=images.expand(-1, 3, -1, -1).contiguous(),
        labels=torch.tensor(table[list(LABELS)].to_numpy(dtype=np.float32)),
        label_names=LABELS,
        task="multilabel",
        splits={"train": order[:n_train_rows][~is_valid], "valid": order[:n_train_rows][is_valid],
                "test": order[n_train_rows:]},
        notes={"source": str(base / FOLDER), "uncertain": uncertain, "blank": blank},
    )
