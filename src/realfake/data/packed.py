"""The packed store: every train and valid image decoded once into a memory-mapped uint8 array.

Decoding and cropping JPEGs every epoch costs more CPU than a GPU's training
step; reading decoded pixels from a memory map costs a copy. ``prepare``
decodes each image of the validated manifest with the same :func:`load_rgb`
that predict and the served model use, and stores the HxWx3 uint8 pixels,
row for row in manifest order, in ``<split>.npy`` (a plain NumPy file, opened
with ``mmap_mode="r"``). Training crops and flips those pixels exactly as it
would the decoded JPEG (:meth:`TrainTransform.pixels`), so both give the same
bits; the parity tests hold them to it.

Layout of ``data/packed/``::

    index.json   format, the manifest's data fingerprint, per split: count, height, width, paths digest
    train.npy    (n_train, H, W, 3) uint8
    valid.npy    (n_valid, H, W, 3) uint8

The store is written in a staging folder beside it and swapped into place
(:mod:`realfake.atomic`), so a killed ``prepare`` leaves the old store (or none),
never a half-written one.
"""

from __future__ import annotations

import hashlib
import json
import os
import time
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from realfake.atomic import clear_stale, staging_dir, swap_in
from realfake.config import build_config, is_int, require
from realfake.data.manifest import Manifest
from realfake.errors import RealfakeError
from realfake.images import load_rgb

FORMAT = "realfake-packed/1"
#: The splits training reads; evaluate and robustness score the test split from the files.
SPLITS = ("train", "valid")
INDEX = "index.json"


@dataclass(frozen=True)
class PrepareConfig:
    """The ``prepare`` section of params.yaml."""

    workers: int = 0  # decoding processes; 0 = all cores

    def __post_init__(self) -> None:
        require(is_int(self.workers) and self.workers >= 0,
                f"prepare.workers must be a non-negative integer, got {self.workers!r}.")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "PrepareConfig":
        """The config from the ``prepare`` section of params.yaml."""
        return build_config(cls, params, "prepare")


def paths_digest(paths: pd.Series) -> str:
    """A short hash of a split's image paths, in order: which rows a packed split holds."""
    return hashlib.sha256("\n".join(map(str, paths)).encode()).hexdigest()[:16]


def _decode_into(job: tuple[str, int, list[str], int, int]) -> None:
    """Decode ``files`` into rows ``start...`` of the array at ``npy`` (opened read-write)."""
    npy, start, files, height, width = job
    arr = np.load(npy, mmap_mode="r+")
    for k, path in enumerate(files):
        pixels = np.asarray(load_rgb(path))
        if pixels.shape != (height, width, 3):
            raise RealfakeError(
                f"{path} is {pixels.shape[1]}x{pixels.shape[0]}, but the manifest says {width}x{height}; "
                "the data changed after validation: rerun `dvc repro validate`."
            )
        arr[start + k] = pixels
    arr.flush()
    del arr


def _one_size(rows: pd.DataFrame, split: str) -> tuple[int, int]:
    sizes = rows.groupby(["height", "width"]).size().sort_values(ascending=False)
    if len(sizes) != 1:
        shown = ", ".join(f"{w}x{h} ({n} images)" for (h, w), n in list(sizes.items())[:4])
        raise RealfakeError(
            f"The {split} images come in {len(sizes)} sizes ({shown}); the packed store holds one size per split. "
            "Resize the images to one size, or make validation enforce it (validate.image_width/image_height)."
        )
    h, w = sizes.index[0]
    return int(h), int(w)


def prepare(manifest: Manifest, out_dir: Path, cfg: PrepareConfig = PrepareConfig(), log=print) -> dict[str, Any]:
    """Decode the train and valid images of the validated manifest into ``out_dir``; returns the index."""
    out_dir = Path(out_dir)
    clear_stale(out_dir)
    index: dict[str, Any] = {"format": FORMAT, "data_fingerprint": manifest.fingerprint, "splits": {}}
    workers = cfg.workers or os.cpu_count() or 1
    t0 = time.perf_counter()
    with staging_dir(out_dir) as tmp:
        for split in SPLITS:
            index["splits"][split] = _pack_split(manifest, split, tmp / f"{split}.npy", workers)
        (tmp / INDEX).write_text(json.dumps(index, indent=2) + "\n")
        swap_in(tmp, out_dir)
    n = sum(s["count"] for s in index["splits"].values())
    seconds = time.perf_counter() - t0
    log(f"prepare: {n} images decoded into {out_dir} in {seconds:.1f} s ({n / max(seconds, 1e-9):.0f} images/s, "
        f"{workers} processes)")
    return index


def _pack_split(manifest: Manifest, split: str, npy: Path, workers: int) -> dict[str, Any]:
    """Decode one split into ``npy`` with ``workers`` processes; its entry of the index."""
    rows = manifest.rows(split)
    height, width = _one_size(rows, split)
    arr = np.lib.format.open_memmap(npy, mode="w+", dtype=np.uint8, shape=(len(rows), height, width, 3))
    del arr  # the header and the file's length are written; workers fill the rows
    files = [str(f) for f in manifest.files(rows)]
    chunk = max(64, -(-len(files) // (workers * 8)))
    jobs = [(str(npy), i, files[i : i + chunk], height, width) for i in range(0, len(files), chunk)]
    if workers <= 1 or len(jobs) == 1:
        for job in jobs:
            _decode_into(job)
    else:
        with ProcessPoolExecutor(max_workers=workers) as pool:
            list(pool.map(_decode_into, jobs))
    return {"count": len(rows), "height": height, "width": width, "paths_digest": paths_digest(rows["path"])}


class PackedSplit:
    """One split of the packed store, checked against the manifest rows it must hold.

    Indexing gives a read-only HxWx3 uint8 view of one image. The memory map is
    opened lazily in each process (DataLoader workers share the page cache, and
    nothing large is pickled).
    """

    def __init__(self, out_dir: Path, split: str, rows: pd.DataFrame, data_fingerprint: str):
        out_dir = Path(out_dir)
        again = f"rerun `dvc repro prepare` (or `dvc repro --force prepare`) to rebuild {out_dir}"
        try:
            index = json.loads((out_dir / INDEX).read_text())
        except FileNotFoundError:
            raise RealfakeError(f"{out_dir / INDEX} not found: the packed store is missing; {again}.") from None
        except (OSError, ValueError) as exc:
            raise RealfakeError(f"{out_dir / INDEX} cannot be read ({exc}); {again}.") from None
        if not isinstance(index, dict) or index.get("format") != FORMAT or split not in index.get("splits", {}):
            raise RealfakeError(f"{out_dir} is not a realfake packed store with a '{split}' split; {again}.")
        if index["data_fingerprint"] != data_fingerprint:
            raise RealfakeError(
                f"{out_dir} was made from other data (fingerprint {index['data_fingerprint']}, the manifest's is "
                f"{data_fingerprint}); {again}."
            )
        meta = index["splits"][split]
        if meta["count"] != len(rows) or meta["paths_digest"] != paths_digest(rows["path"]):
            raise RealfakeError(f"{out_dir}/{split}.npy does not hold the manifest's {split} rows; {again}.")
        self.path = out_dir / f"{split}.npy"
        self.shape = (int(meta["count"]), int(meta["height"]), int(meta["width"]), 3)
        self._arr: np.ndarray | None = None
        self._open()  # fail here, with the store named, rather than in a loader worker

    def _open(self) -> np.ndarray:
        if self._arr is None:
            again = f"rerun `dvc repro --force prepare` to rebuild {self.path.parent}"
            try:
                arr = np.load(self.path, mmap_mode="r")
            except FileNotFoundError:
                raise RealfakeError(f"{self.path} not found; {again}.") from None
            except (OSError, ValueError) as exc:
                raise RealfakeError(f"{self.path} cannot be read ({exc}); it may be truncated: {again}.") from None
            if arr.dtype != np.uint8 or arr.shape != self.shape:
                raise RealfakeError(
                    f"{self.path} holds {arr.dtype} {arr.shape}, not uint8 {self.shape} as {INDEX} says; {again}."
                )
            self._arr = arr
        return self._arr

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, i: int) -> np.ndarray:
        return self._open()[i]

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "_arr": None}
