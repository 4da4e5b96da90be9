"""Up-sampling operators: what generators do to go up in resolution, as NumPy on HxWx3 float images.

Shared by the embedded sample (its fake generator and held-out families) and by
training's synthesised fakes (:mod:`realfake.training.synthetic`): a stride-2
transposed convolution or a sub-pixel convolution in polyphase form
(:func:`transposed_upsample`), a resize by PIL (:func:`resize_upsample`), and a
per-channel 3x3 convolution (:func:`convolve`).
"""

from __future__ import annotations

import numpy as np
from PIL import Image

LAPLACE = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=np.float64) / 4
IDENTITY3 = np.zeros((3, 3, 3))
IDENTITY3[1, 1] = 1.0
#: 1-D taps per axis of the bilinear transposed convolution on the zero-inserted signal.
BILINEAR_TAPS = (0.25, 0.75, 0.75, 0.25)


def polyphase(k4: np.ndarray, k3: np.ndarray) -> np.ndarray:
    """A 4x4 transposed convolution then a 3x3 convolution as four 3x3 polyphase kernels: (2, 2, 3, 3, 3).

    Transposed convolution: on the zero-inserted signal ``z`` (``z[2i] = x[i]``)
    ``y[n] = sum_t k4[t] z[n + t - 2]`` (with the bilinear kernel this is the
    half-pixel alignment of PIL's resize); then ``y'[m] = sum_u k3[u] y[m + u - 1]``.
    Together ``y'[m] = sum_v K[v] z[m + v - 3]`` with ``K = k4 (*) k3`` (6x6), and
    output phase ``a`` reads ``K[1 - a::2]`` at input offsets -1, 0, 1.
    """
    full = np.zeros((6, 6, 3))
    for i in range(3):
        for j in range(3):
            full[i : i + 4, j : j + 4] += k4 * k3[i, j]
    poly = np.empty((2, 2, 3, 3, 3))
    for a in (0, 1):
        for b in (0, 1):
            poly[a, b] = np.moveaxis(full[1 - a :: 2, 1 - b :: 2], -1, 0)
    return poly


def resize_upsample(base: np.ndarray, resample: int) -> np.ndarray:
    """2x up-sampling of each channel by PIL's resize with ``resample`` (float32 channels)."""
    h, w, _ = base.shape
    return np.stack(
        [np.asarray(Image.fromarray(base[..., c]).resize((2 * w, 2 * h), resample)) for c in range(3)],
        axis=-1,
    )


def transposed_upsample(base: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """2x up-sampling by per-phase kernels (2, 2, 3, K, K): a stride-2 transposed convolution, possibly
    followed by a convolution (:func:`polyphase`), or a sub-pixel convolution (pixel shuffle)."""
    from scipy.ndimage import correlate

    h, w, _ = base.shape
    out = np.empty((2 * h, 2 * w, 3), dtype=np.float32)
    for c in range(3):
        x = np.ascontiguousarray(base[..., c])
        for a in (0, 1):
            for b in (0, 1):
                out[a::2, b::2, c] = correlate(x, poly[a, b, c], mode="nearest")
    return out


def convolve(img: np.ndarray, k3: np.ndarray) -> np.ndarray:
    """Each channel of ``img`` correlated with its 3x3 kernel (edges repeated)."""
    from scipy.ndimage import correlate

    return np.stack([correlate(img[..., c], k3[..., c], mode="nearest") for c in range(3)], -1).astype(np.float32)
