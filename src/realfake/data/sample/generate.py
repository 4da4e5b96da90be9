"""Writing the sample: every image of every split, and the held-out family, in the Kaggle layout.

Each image has its own random generator derived from ``(seed, split, class,
index)``, so the output is byte-identical whatever the number of worker
processes. Ids, CSV rows and their shuffled order come from their own streams.
"""

from __future__ import annotations

import os
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from realfake.data.layout import CLASSES, CSV_COLUMNS, LABELS, SPLITS, csv_path, image_root
from realfake.data.sample.config import (
    MAX_REAL_ID,
    STREAM_HELDOUT_IDS,
    STREAM_HELDOUT_IMAGE,
    STREAM_IDS,
    STREAM_IMAGE,
    STREAM_SHUFFLE,
    SampleConfig,
)
from realfake.data.sample.drawing import render_face
from realfake.data.sample.heldout import write_heldout_index
from realfake.data.sample.upsampling import (
    gan_upsample,
    heldout_upsample,
    ideal_upsample,
    polyphase_weights,
    sensor_noise,
    to_uint8,
)
from realfake.errors import RealfakeError

FAKE_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
FAKE_ID_LENGTH = 10
REAL_ORIGINAL_PREFIX = "/kaggle/input/flickrfaceshq-dataset-nvidia-part-1/"
FAKE_ORIGINAL_PREFIX = "/kaggle/input/1-million-fake-faces/1m_faces_00/"


def _render_image(cfg: SampleConfig, split_index: int, class_index: int, index: int) -> tuple[np.ndarray, int]:
    """One image of the sample as uint8 HxWx3 and its JPEG quality."""
    ss = np.random.SeedSequence([cfg.seed, STREAM_IMAGE, split_index, class_index, index])
    content_ss, noise_ss, quality_ss = ss.spawn(3)
    base = render_face(np.random.default_rng(content_ss), cfg.image_size // 2)
    img = ideal_upsample(base)
    if CLASSES[class_index] == "fake" and cfg.strength > 0:
        gan = gan_upsample(base, polyphase_weights(cfg.seed))
        img += np.float32(cfg.strength) * (gan - img)
    img = sensor_noise(img, np.random.default_rng(noise_ss))
    quality = int(np.random.default_rng(quality_ss).integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    return to_uint8(img), quality


def _write_image(task: tuple[int, int, int, str], cfg: SampleConfig, out_dir: str) -> int:
    split_index, class_index, index, rel = task
    arr, quality = _render_image(cfg, split_index, class_index, index)
    path = os.path.join(out_dir, rel)
    Image.fromarray(arr, "RGB").save(path, format="JPEG", quality=quality)
    return 1


def _render_heldout(cfg: SampleConfig, family: str, index: int) -> tuple[np.ndarray, int]:
    """One held-out fake: the same content, noise and quality distributions, another up-sampler.

    Image ``index`` of every family has the same content: families differ only in the up-sampler.
    """
    ss = np.random.SeedSequence([cfg.seed, STREAM_HELDOUT_IMAGE, index])
    content_ss, noise_ss, quality_ss = ss.spawn(3)
    base = render_face(np.random.default_rng(content_ss), cfg.image_size // 2)
    img = ideal_upsample(base)
    if cfg.strength > 0:
        gan = heldout_upsample(base, cfg.seed, family)
        img += np.float32(cfg.strength) * (gan - img)
    img = sensor_noise(img, np.random.default_rng(noise_ss))
    quality = int(np.random.default_rng(quality_ss).integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    return to_uint8(img), quality


def _write_heldout(task: tuple[str, int, str], cfg: SampleConfig, out_dir: str) -> int:
    family, index, rel = task
    arr, quality = _render_heldout(cfg, family, index)
    Image.fromarray(arr, "RGB").save(os.path.join(out_dir, rel), format="JPEG", quality=quality)
    return 1


def _heldout_ids(cfg: SampleConfig) -> list[str]:
    """Fake-style ids for the held-out images of every family, distinct from every id of the main sample."""
    taken = set(_draw_ids(cfg)[1])
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_HELDOUT_IDS]))
    alphabet = np.array(list(FAKE_ID_ALPHABET))
    ids: list[str] = []
    n = cfg.heldout.size * len(cfg.heldout.families)
    while len(ids) < n:
        for row in rng.integers(0, len(alphabet), size=(n - len(ids), FAKE_ID_LENGTH)):
            fid = "".join(alphabet[row])
            if fid not in taken:
                taken.add(fid)
                ids.append(fid)
    return ids


def _draw_ids(cfg: SampleConfig) -> tuple[list[str], list[str]]:
    n = cfg.total_per_class
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_IDS]))
    real = [f"{i:05d}" for i in (rng.choice(MAX_REAL_ID, size=n, replace=False) + 1)]
    alphabet = np.array(list(FAKE_ID_ALPHABET))
    fake: list[str] = []
    seen: set[str] = set()
    while len(fake) < n:
        draws = rng.integers(0, len(alphabet), size=(n - len(fake), FAKE_ID_LENGTH))
        for row in draws:
            fid = "".join(alphabet[row])
            if fid not in seen:
                seen.add(fid)
                fake.append(fid)
    return real, fake


def _plan(cfg: SampleConfig) -> dict[str, Any]:
    """Ids, relative paths and shuffled CSV rows for every split."""
    ids = dict(zip(CLASSES, _draw_ids(cfg)))
    start = 0
    tasks: list[tuple[int, int, int, str]] = []
    frames: dict[str, list[dict[str, Any]]] = {}
    for si, split in enumerate(SPLITS):
        n = cfg.sizes.of(split)
        rows = []
        for ci, cls in enumerate(CLASSES):
            for k in range(n):
                iid = ids[cls][start + k]
                rel = f"{split}/{cls}/{iid}.jpg"
                original = (
                    f"{REAL_ORIGINAL_PREFIX}{iid}.png" if cls == "real" else f"{FAKE_ORIGINAL_PREFIX}{iid}.jpg"
                )
                rows.append(
                    {"original_path": original, "id": iid, "label": LABELS[cls], "label_str": cls, "path": rel}
                )
                tasks.append((si, ci, k, rel))
        start += n
        order = np.random.default_rng(np.random.SeedSequence([cfg.seed, STREAM_SHUFFLE, si])).permutation(len(rows))
        frames[split] = [rows[i] for i in order]
    return {"tasks": tasks, "rows": frames}


def _check_out_dir(out_dir: Path) -> None:
    if out_dir.exists():
        if not out_dir.is_dir():
            raise RealfakeError(f"{out_dir} exists and is not a directory; pick an empty or new folder")
        if any(out_dir.iterdir()):
            raise RealfakeError(f"{out_dir} is not empty; remove it or pick another folder for the sample")


def generate_sample(
    out_dir: Path,
    cfg: SampleConfig,
    workers: int | None = None,
    progress: bool = False,
) -> dict[str, dict[str, int]]:
    """Write the sample into ``out_dir`` (new or empty) in the Kaggle layout.

    Returns the counts ``{split: {"real": n, "fake": n}}``. ``workers`` is the
    number of processes (``None``: ``os.cpu_count()``); the files are
    byte-identical whatever the number.
    """
    import pandas as pd

    out_dir = Path(out_dir)
    if not isinstance(cfg, SampleConfig):
        raise TypeError(f"cfg must be a SampleConfig, got {type(cfg).__name__}")
    _check_out_dir(out_dir)
    plan = _plan(cfg)
    tasks = plan["tasks"]
    for split in SPLITS:
        for cls in CLASSES:
            (image_root(out_dir) / split / cls).mkdir(parents=True, exist_ok=True)

    work = partial(_write_image, cfg=cfg, out_dir=str(image_root(out_dir)))
    _run_tasks(work, tasks, workers, progress, "sample images")

    for split in SPLITS:
        frame = pd.DataFrame(plan["rows"][split], columns=list(CSV_COLUMNS))
        frame["label"] = frame["label"].astype("int64")
        frame.to_csv(csv_path(out_dir, split), index=True)
    return {split: {cls: cfg.sizes.of(split) for cls in CLASSES} for split in SPLITS}


def _run_tasks(work, tasks: list, workers: int | None, progress: bool, desc: str) -> None:
    """``work(task)`` for every task, in ``workers`` processes (None: all cores)."""
    n_workers = (os.cpu_count() or 1) if workers is None else int(workers)
    n_workers = max(1, min(n_workers, len(tasks)))
    bar = None
    if progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=len(tasks), desc=desc, unit="img")
    try:
        if n_workers == 1:
            for task in tasks:
                work(task)
                if bar is not None:
                    bar.update(1)
        else:
            import multiprocessing as mp

            chunk = max(1, min(32, len(tasks) // (n_workers * 8)))
            # spawn: safe when the caller holds threads (torch, tqdm, mlflow).
            with mp.get_context("spawn").Pool(n_workers) as pool:
                for done in pool.imap_unordered(work, tasks, chunksize=chunk):
                    if bar is not None:
                        bar.update(done)
    finally:
        if bar is not None:
            bar.close()


def generate_heldout(
    out_dir: Path,
    cfg: SampleConfig,
    workers: int | None = None,
    progress: bool = False,
) -> int:
    """Write ``cfg.heldout.size`` held-out fakes of each family into ``out_dir`` (new or empty); return how many.

    Layout: ``<family>/<id>.jpg`` (a folder per family, so one can be named as a new generator's folder:
    ``update.fakes``), ``heldout.csv`` (``id,label,label_str,family,path``
    with ``path`` relative to ``out_dir``; label 0 = fake as in the Kaggle CSVs)
    and ``info.json`` (what generated them). Byte-identical for the same
    ``cfg`` whatever the number of workers; size 0 writes the index only.
    """
    if not isinstance(cfg, SampleConfig):
        raise TypeError(f"cfg must be a SampleConfig, got {type(cfg).__name__}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    ids, size = _heldout_ids(cfg), cfg.heldout.size
    rows = [
        {"id": iid, "label": LABELS["fake"], "label_str": "fake", "family": cfg.heldout.families[k // size],
         "path": f"{cfg.heldout.families[k // size]}/{iid}.jpg"}
        for k, iid in enumerate(ids)
    ]
    for family in dict.fromkeys(r["family"] for r in rows):
        (out_dir / family).mkdir(parents=True, exist_ok=True)
    tasks = [(r["family"], k % size, r["path"]) for k, r in enumerate(rows)]
    if tasks:
        _run_tasks(partial(_write_heldout, cfg=cfg, out_dir=str(out_dir)), tasks, workers, progress, "held-out fakes")
    info = {
        "source": "sample",
        "families": list(cfg.heldout.families) if rows else [],
        "size": len(rows),
        "seed": cfg.seed,
        "strength": cfg.strength,
        "note": "" if rows else "data.sample.heldout.size is 0: no held-out fakes",
    }
    write_heldout_index(out_dir, rows, info)
    return len(rows)
