"""Scan a dataset in the Kaggle layout into a manifest: one row per image.

The scan joins the three split CSVs with the files actually on disk, decodes
every image fully (a header alone does not reveal a truncated JPEG), and
records what the expectation suite needs: size, mode, bytes, content hash,
whether it decodes, and where CSV and disk disagree.
"""

from __future__ import annotations

import hashlib
import os
from concurrent.futures import ProcessPoolExecutor
from functools import cached_property
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd
from PIL import ImageFile

from realfake.data.layout import CLASSES, CSV_COLUMNS, LABELS, SPLITS, csv_path, image_root
from realfake.errors import RealfakeError
from realfake.images import IMAGE_SUFFIXES, ImageError, decode

#: Columns of the manifest that training reads (the validated rows only).
MANIFEST_COLUMNS = ("split", "path", "id", "label", "label_str", "width", "height", "mode", "bytes", "sha256")


def read_split_csvs(root: Path) -> pd.DataFrame:
    """The three split CSVs stacked, as strings, with a ``split`` column.

    Missing columns are added as empty so the expectation suite can report
    them rather than the scan crashing on them.
    """
    frames = []
    for split in SPLITS:
        path = csv_path(root, split)
        if not path.is_file():
            continue
        df = pd.read_csv(path, dtype=str, keep_default_na=False, index_col=0)
        for col in CSV_COLUMNS:
            if col not in df.columns:
                df[col] = pd.NA
        df.insert(0, "split", split)
        frames.append(df)
    if not frames:
        return pd.DataFrame(columns=["split", *CSV_COLUMNS])
    return pd.concat(frames, ignore_index=True)


def list_image_files(root: Path) -> list[str]:
    """Image files under ``real_vs_fake/real-vs-fake/``, as paths relative to it (``train/real/1.jpg``)."""
    base = image_root(root)
    found = []
    for split in SPLITS:
        for cls in CLASSES:
            folder = base / split / cls
            if not folder.is_dir():
                continue
            with os.scandir(folder) as it:
                for entry in it:
                    if entry.name.lower().endswith(IMAGE_SUFFIXES) and entry.is_file():
                        found.append(f"{split}/{cls}/{entry.name}")
    return sorted(found)


def inspect_image(path: str) -> tuple:
    """(bytes, sha256, width, height, mode, readable, error) for one file, decoding it fully."""
    try:
        with open(path, "rb") as f:
            data = f.read()
    except OSError as exc:
        return (0, "", 0, 0, "", False, f"cannot read: {exc.strerror or exc}")
    digest = hashlib.sha256(data).hexdigest()
    try:
        # The decoder training and predict use: the size is the upright size, an unreadable file the same error.
        img = decode(data, Path(path).name)
        with img:
            return (len(data), digest, img.width, img.height, img.mode, True, "")
    except ImageError as exc:
        return (len(data), digest, 0, 0, "", False, str(exc))
    except Exception as exc:  # noqa: BLE001 - any other decoder failure makes the image unreadable too
        return (len(data), digest, 0, 0, "", False, f"{type(exc).__name__}: {exc}")


def _inspect_many(paths: list[str]) -> list[tuple]:
    return [inspect_image(p) for p in paths]


def _init_worker() -> None:
    # A truncated JPEG must fail to decode, never be padded silently.
    ImageFile.LOAD_TRUNCATED_IMAGES = False


def inspect_images(paths: list[str], workers: int | None = None, chunk: int = 256) -> list[tuple]:
    """:func:`inspect_image` over ``paths``, in parallel across ``workers`` processes."""
    workers = workers or os.cpu_count() or 1
    if workers <= 1 or len(paths) < 2 * chunk:
        _init_worker()
        return _inspect_many(paths)
    chunks = [paths[i : i + chunk] for i in range(0, len(paths), chunk)]
    with ProcessPoolExecutor(max_workers=workers, initializer=_init_worker) as pool:
        results: list[tuple] = []
        for part in pool.map(_inspect_many, chunks):
            results.extend(part)
    return results


def _folder_parts(paths: Iterable[str]) -> tuple[list[str], list[str]]:
    splits, classes = [], []
    for p in paths:
        parts = str(p).split("/")
        splits.append(parts[0] if len(parts) >= 3 else "")
        classes.append(parts[1] if len(parts) >= 3 else "")
    return splits, classes


def build_manifest(root: Path, workers: int | None = None) -> pd.DataFrame:
    """One row per CSV row or image file (outer join on split and path), every image decoded.

    Columns: split, path (relative to ``real_vs_fake/real-vs-fake``), id, label,
    label_str, folder_split, folder_class, label_from_str, in_csv, file_exists,
    bytes, sha256, width, height, mode, readable, error, splits_with_hash,
    dup_in_split.
    """
    root = Path(root)
    csv = read_split_csvs(root)
    csv = csv.assign(in_csv=True)
    files = list_image_files(root)
    file_splits, _ = _folder_parts(files)
    disk = pd.DataFrame({"split": file_splits, "path": files})
    # Rows join on (split, path): a CSV row whose path points into another
    # split's folder shows up as a split/folder mismatch, not as a missing file.
    df = csv.merge(disk, on=["split", "path"], how="outer")
    df["in_csv"] = df["in_csv"].fillna(False).astype(bool)
    # A CSV row pointing at an existing file in another split's folder still has its file.
    on_disk = set(files)
    df["file_exists"] = df["path"].map(lambda p: p in on_disk).astype(bool)
    df["folder_split"], df["folder_class"] = _folder_parts(df["path"].fillna(""))

    base = image_root(root)
    exists = df["file_exists"].to_numpy()
    results = inspect_images([str(base / p) for p in df.loc[exists, "path"]], workers=workers)
    cols = ["bytes", "sha256", "width", "height", "mode", "readable", "error"]
    scanned = pd.DataFrame(results, columns=cols, index=df.index[exists])
    for col in cols:
        df[col] = scanned[col]
    df["bytes"] = df["bytes"].fillna(0).astype("int64")
    df["width"] = df["width"].fillna(0).astype("int64")
    df["height"] = df["height"].fillna(0).astype("int64")
    df["readable"] = df["readable"].astype("boolean")
    df["mode"] = df["mode"].astype("string")
    df["error"] = df["error"].fillna("file missing").astype("string")

    # Labels as the CSV states them, and as label_str implies them.
    df["label"] = pd.to_numeric(df["label"], errors="coerce").astype("Int64")
    df["label_from_str"] = df["label_str"].map(LABELS).astype("Int64")

    # Identical content: in several splits (leakage) or repeated within one.
    hashed = df["sha256"].notna() & (df["sha256"] != "")
    counts = df[hashed].groupby("sha256")["split"].nunique()
    df["splits_with_hash"] = df["sha256"].map(counts).fillna(1).astype("int64")
    df["dup_in_split"] = hashed & df.duplicated(subset=["split", "sha256"], keep="first")
    return df.sort_values(["split", "path"], kind="stable").reset_index(drop=True)


def split_summary(df: pd.DataFrame) -> pd.DataFrame:
    """Per split: image counts per class (by the CSV label) and the fake fraction."""
    rows = []
    for split in SPLITS:
        part = df[(df["split"] == split) & df["in_csv"]]
        n_real = int((part["label"] == LABELS["real"]).sum())
        n_fake = int((part["label"] == LABELS["fake"]).sum())
        n = n_real + n_fake
        rows.append(
            {"split": split, "n": n, "n_real": n_real, "n_fake": n_fake, "fake_fraction": n_fake / n if n else np.nan}
        )
    return pd.DataFrame(rows)


def fingerprint(manifest: pd.DataFrame) -> str:
    """A short content hash of a validated manifest: same images, labels and splits, same fingerprint."""
    h = hashlib.sha256()
    for split, path, label, digest in manifest[["split", "path", "label", "sha256"]].itertuples(index=False):
        h.update(f"{split}\t{path}\t{label}\t{digest}\n".encode())
    return h.hexdigest()[:16]


def split_rows(manifest: pd.DataFrame, split: str) -> pd.DataFrame:
    """The rows of one split of a validated manifest, in manifest order."""
    rows = manifest[manifest["split"] == split]
    if rows.empty:
        raise RealfakeError(f"The manifest has no '{split}' rows; rerun validation (`dvc repro validate`).")
    return rows.reset_index(drop=True)


def trusted_manifest(root: Path, workers: int | None = None) -> pd.DataFrame:
    """The manifest of a dataset known to be good (a freshly generated sample), built without
    the expectation suites: for benchmarks, and machines without Great Expectations."""
    df = build_manifest(root, workers)
    ok = df["in_csv"] & df["file_exists"] & df["readable"].fillna(False).astype(bool)
    manifest = df.loc[ok, list(MANIFEST_COLUMNS)].reset_index(drop=True)
    return manifest.assign(label=manifest["label"].astype(int))


class Manifest:
    """A validated manifest, read once: its rows by split, its fingerprint, and where its images lie.

    What the stages after validation take as their data (prepare, train, evaluate,
    robustness, register): the table is read and fingerprinted once per stage.
    """

    def __init__(self, path: Path, raw_dir: Path):
        path = Path(path)
        if not path.is_file():
            raise RealfakeError(f"{path} not found: run validation first (`dvc repro validate`).")
        self.path, self.raw_dir = path, Path(raw_dir)
        self.table = pd.read_parquet(path)

    @cached_property
    def fingerprint(self) -> str:
        """:func:`fingerprint` of the table."""
        return fingerprint(self.table)

    def rows(self, split: str) -> pd.DataFrame:
        """:func:`split_rows` of the table."""
        return split_rows(self.table, split)

    def files(self, rows: pd.DataFrame) -> list[Path]:
        """The image file of each row."""
        base = image_root(self.raw_dir)
        return [base / p for p in rows["path"]]
