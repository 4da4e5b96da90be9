"""Probes of the sample's files that tests use: global statistics a detector must not be able to
use, and the spectral fingerprint it should find (a linear probe's ROC-AUC on each)."""

from __future__ import annotations

import os
from functools import lru_cache
from pathlib import Path
from typing import Any, Iterable

import numpy as np
from PIL import Image

from realfake.data.layout import csv_path, image_root


def shortcut_features(paths: Iterable[str | os.PathLike]) -> np.ndarray:
    """Global statistics a detector must *not* be able to use: (n, 7).

    Per image: channel means (3), channel standard deviations (3), JPEG file size in bytes (1).
    """
    feats = []
    for p in paths:
        with Image.open(p) as im:
            arr = np.asarray(im.convert("RGB"), dtype=np.float32).reshape(-1, 3)
        feats.append(np.concatenate([arr.mean(0), arr.std(0), [os.path.getsize(p)]]))
    return np.asarray(feats, dtype=np.float64).reshape(-1, 7)


@lru_cache(maxsize=8)
def _radial_bins(h: int, w: int, bins: int) -> tuple[np.ndarray, np.ndarray]:
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.fftfreq(w)[None, :]
    r = np.sqrt(fx**2 + fy**2) / np.sqrt(0.5)  # 0 at DC, 1 at the (0.5, 0.5) corner
    idx = np.minimum((r * bins).astype(np.int64), bins - 1).ravel()
    counts = np.bincount(idx, minlength=bins).astype(np.float64)
    return idx, np.maximum(counts, 1)


def spectral_features(paths: Iterable[str | os.PathLike], bins: int = 64) -> np.ndarray:
    """Azimuthally averaged log power spectrum of the grayscale image: (n, bins).

    Radial bins run from DC to the (0.5, 0.5) corner, so the Nyquist peaks of
    an up-sampling fingerprint fall into the last bins.
    """
    feats = []
    for p in paths:
        with Image.open(p) as im:
            g = np.asarray(im.convert("L"), dtype=np.float32)
        g = g - g.mean()
        power = np.abs(np.fft.fft2(g)) ** 2
        idx, counts = _radial_bins(g.shape[0], g.shape[1], bins)
        feats.append(np.log(np.bincount(idx, weights=power.ravel(), minlength=bins) / counts + 1e-3))
    return np.asarray(feats, dtype=np.float64).reshape(-1, bins)


def split_files(root: str | os.PathLike, split: str) -> tuple[list[Path], np.ndarray]:
    """Image paths and labels (1 = real, 0 = fake) of one split, in CSV order."""
    import pandas as pd

    frame = pd.read_csv(csv_path(Path(root), split), index_col=0, dtype={"id": str})
    return [image_root(Path(root)) / p for p in frame["path"]], frame["label"].to_numpy()


def probe_auc(
    root: str | os.PathLike,
    features: Any = spectral_features,
    train_split: str = "train",
    eval_split: str = "test",
) -> float:
    """ROC-AUC (real = positive) of StandardScaler + LogisticRegression on ``features(paths)``.

    Trained on ``train_split`` and scored on ``eval_split``: with
    :func:`shortcut_features` it measures how much global statistics give away
    (should be near 0.5), with :func:`spectral_features` how visible the
    up-sampling fingerprint is.
    """
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import roc_auc_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    x_train, y_train = split_files(root, train_split)
    x_eval, y_eval = split_files(root, eval_split)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=5000))
    model.fit(features(x_train), y_train)
    return float(roc_auc_score(y_eval, model.predict_proba(features(x_eval))[:, 1]))
