"""The dataset contract: the exact layout of Kaggle's "140k Real and Fake Faces".

After download and unzip the dataset root holds::

    train.csv  valid.csv  test.csv
    real_vs_fake/real-vs-fake/{train,valid,test}/{real,fake}/<id>.jpg

Every source (embedded sample, Kaggle, an existing directory) lands in this
layout, so every later stage is source-agnostic.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

SPLITS: tuple[str, ...] = ("train", "valid", "test")
CLASSES: tuple[str, ...] = ("real", "fake")
#: label 1 = real, 0 = fake, as in the Kaggle CSVs.
LABELS: dict[str, int] = {"real": 1, "fake": 0}
IMAGE_ROOT = Path("real_vs_fake") / "real-vs-fake"
#: CSV columns after the unnamed leading index column.
CSV_COLUMNS: tuple[str, ...] = ("original_path", "id", "label", "label_str", "path")


def csv_path(root: Path, split: str) -> Path:
    """The CSV of ``split`` in a dataset root."""
    return Path(root) / f"{split}.csv"


def image_root(root: Path) -> Path:
    """The folder the CSVs' ``path`` column is relative to."""
    return Path(root) / IMAGE_ROOT


def layout_problems(root: Path) -> list[str]:
    """What is missing for ``root`` to be a dataset in the Kaggle layout (empty if none)."""
    root = Path(root)
    if not root.is_dir():
        return [f"{root} is not a directory"]
    problems = []
    for split in SPLITS:
        if not csv_path(root, split).is_file():
            problems.append(f"missing {split}.csv")
        for cls in CLASSES:
            folder = image_root(root) / split / cls
            if not folder.is_dir():
                problems.append(f"missing folder {IMAGE_ROOT / split / cls}/")
    return problems


def is_fake(label) -> np.ndarray:
    """1 where a Kaggle label means fake (label 0), else 0: the positive class of every metric."""
    return (np.asarray(label) == LABELS["fake"]).astype(int)
