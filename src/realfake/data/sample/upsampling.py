"""The two up-samplers that tell the sample's classes apart, and their seeded weights.

Real images go through an ideal resampler (:func:`ideal_upsample`, Lanczos); fake
ones through a GAN-like one (:func:`gan_upsample`): a stride-2 transposed
convolution with a seeded 4x4 kernel, then a seeded 3x3 convolution, in polyphase
form. The held-out families (:func:`heldout_upsample`) are other up-sampling
architectures (nearest, bilinear, bicubic resize, a random transposed
convolution, sub-pixel convolution), each followed by its own seeded 3x3
convolution. Every 3x3 kernel's sharpening is calibrated so that its fakes
compress to the same JPEG size as reals (:func:`_calibrate_sharpen`); sensor
noise (:func:`sensor_noise`) is the same for both classes.
"""

from __future__ import annotations

import io
import zlib
from functools import lru_cache

import numpy as np
from PIL import Image

from realfake.data.sample.config import (
    STREAM_CALIBRATION,
    STREAM_HELDOUT_WEIGHTS,
    STREAM_WEIGHTS,
)
from realfake.data.sample.drawing import render_face
from realfake.upsamplers import (
    IDENTITY3,
    LAPLACE,
    convolve,
    polyphase,
    resize_upsample,
)
from realfake.upsamplers import (
    transposed_upsample as gan_upsample,
)

# Fingerprint and noise calibration (see the package docstring and the tests).
_SHARED_KERNEL_JITTER = 0.10  # std of the seeded perturbation of the 4x4 kernel
_CHANNEL_KERNEL_JITTER = 0.03  # extra per-channel perturbation
_PHASE_GAIN_JITTER = 0.003  # std of the gain mismatch between the four output phases
_POST_KERNEL_JITTER = 0.04  # std of the seeded zero-sum 3x3 perturbation
_CALIBRATION_IMAGES = 24  # faces used to calibrate the fake up-sampler's sharpening
_CALIBRATION_SIZE = 256
_CALIBRATION_QUALITY = 90
_CALIBRATION_STEPS = 12
_SENSOR_NOISE = (1.0, 3.0)  # full-resolution noise std range (both classes)
_HELDOUT_POST_KERNEL_JITTER = 0.06  # std of the held-out family's seeded zero-sum 3x3 perturbation
_RESIZE_CONV_JITTER = 0.15  # std of the seeded zero-sum 3x3 perturbation after a resize (resize-then-convolve)
_SUBPIXEL_JITTER = 0.12  # std of the seeded zero-sum perturbation of each sub-pixel phase kernel
_TCONV_CONCENTRATION = 3.0  # Dirichlet concentration of the random transposed-convolution taps per phase
#: The transposed-convolution families: their 1-D taps per axis on the zero-inserted signal.
_FAMILY_TAPS = {"nearest": (0.0, 1.0, 1.0, 0.0), "bilinear": (0.25, 0.75, 0.75, 0.25)}



def sensor_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Add full-resolution sensor noise (luma + chroma), one distribution for both classes.

    Triangular noise (the difference of two uniforms, std 1/sqrt(6) before
    scaling): close enough to Gaussian after JPEG and several times cheaper.
    """
    h, w, _ = img.shape
    sigma = rng.uniform(*_SENSOR_NOISE) * np.sqrt(6.0)
    n = rng.random((h, w, 4), dtype=np.float32)
    n -= rng.random((h, w, 4), dtype=np.float32)
    img = img + n[..., :3] * np.float32(sigma * 0.6)
    img += n[..., 3:] * np.float32(sigma * 0.8)
    return img


def to_uint8(img: np.ndarray) -> np.ndarray:
    """Round and clip to uint8 pixels."""
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _jpeg_size(img: np.ndarray, quality: int) -> int:
    buf = io.BytesIO()
    Image.fromarray(to_uint8(img), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.tell()


def _calibrate_sharpen(seed: int, pre, k3_jitter: np.ndarray) -> float:
    """The sharpening of the 3x3 kernel for which fakes compress to the same JPEG size as reals.

    The GAN-like up-sampler blurs the upper half of the content band and adds
    spectral replicas above it; how these balance in bytes depends on the
    seeded kernels, so a small fixed set of calibration faces is rendered and
    the sharpening is found by bisection on the mean log JPEG size. The result
    depends only on ``seed`` (like the rest of the generator's weights). ``pre(base)``
    is the up-sampler before the 3x3 convolution; a 4x4 kernel stands for its transposed
    convolution.
    """
    from scipy.ndimage import correlate

    if isinstance(pre, np.ndarray):
        k4 = pre
        pre = lambda base: gan_upsample(base, polyphase(k4, IDENTITY3))  # noqa: E731
    identity = IDENTITY3
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM_CALIBRATION]))
    parts, target = [], 0.0
    for _ in range(_CALIBRATION_IMAGES):
        base = render_face(rng, _CALIBRATION_SIZE // 2)
        noise = sensor_noise(np.zeros((_CALIBRATION_SIZE,) * 2 + (3,), np.float32), rng)
        target += np.log(_jpeg_size(ideal_upsample(base) + noise, _CALIBRATION_QUALITY))
        up = pre(base)
        fixed = np.stack(
            [correlate(up[..., c], identity[..., c] + k3_jitter[..., c], mode="nearest") for c in range(3)], -1
        )
        lap = np.stack([correlate(up[..., c], LAPLACE, mode="nearest") for c in range(3)], -1)
        parts.append((fixed + noise, lap))
    target /= len(parts)

    def excess(sharpen: float) -> float:
        size = sum(np.log(_jpeg_size(f + np.float32(sharpen) * lp, _CALIBRATION_QUALITY)) for f, lp in parts)
        return size / len(parts) - target

    lo, hi = -1.5, 2.5
    for _ in range(_CALIBRATION_STEPS):
        mid = (lo + hi) / 2
        if excess(mid) > 0:
            hi = mid
        else:
            lo = mid
    return (lo + hi) / 2


@lru_cache(maxsize=16)
def _generator_weights(seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The fake generator's seeded weights: a 4x4x3 transposed-conv kernel and a 3x3x3 conv kernel.

    The 4x4 kernel is the bilinear one plus a seeded perturbation that keeps
    each polyphase component's DC gain (its "shape" changes the spectral
    replicas) and a small seeded gain mismatch between the four phases (the
    checkerboard peaks at the Nyquist frequencies). The 3x3 kernel is the
    identity plus a seeded zero-sum perturbation plus a sharpening term
    calibrated so that the fakes' JPEG sizes match the reals'.
    """
    rng = np.random.default_rng(np.random.SeedSequence([seed, STREAM_WEIGHTS]))
    tap = np.array([0.25, 0.75, 0.75, 0.25])
    jitter = rng.normal(0, _SHARED_KERNEL_JITTER, (4, 4, 1)) + rng.normal(0, _CHANNEL_KERNEL_JITTER, (4, 4, 3))
    k4 = np.outer(tap, tap)[..., None] + np.zeros((1, 1, 3))
    gains = 1 + rng.normal(0, _PHASE_GAIN_JITTER, (2, 2, 1))
    gains /= gains.mean()
    for a in (0, 1):
        for b in (0, 1):
            j = jitter[a::2, b::2]
            k4[a::2, b::2] = (k4[a::2, b::2] + j - j.mean(axis=(0, 1))) * gains[a, b]
    k3_jitter = rng.normal(0, _POST_KERNEL_JITTER, (3, 3, 3))
    k3_jitter -= k3_jitter.mean(axis=(0, 1))  # zero sum: DC gain exactly 1
    sharpen = _calibrate_sharpen(seed, k4, k3_jitter)
    k3 = k3_jitter + sharpen * LAPLACE[..., None]
    k3[1, 1] += 1.0
    return k4, k3


@lru_cache(maxsize=16)
def polyphase_weights(seed: int) -> np.ndarray:
    """The fake generator of data-set ``seed`` in polyphase form (see :func:`gan_upsample`)."""
    return polyphase(*_generator_weights(seed))


__all__ = ["gan_upsample", "heldout_upsample", "ideal_upsample", "polyphase_weights", "sensor_noise", "to_uint8"]


def ideal_upsample(base: np.ndarray) -> np.ndarray:
    """2x up-sampling by an ideal resampler (Lanczos, per channel): how the reals are made."""
    return resize_upsample(base, Image.LANCZOS)


def heldout_upsample(base: np.ndarray, seed: int, family: str) -> np.ndarray:
    """2x up-sampling by held-out ``family`` of data-set ``seed`` (see HELDOUT_FAMILIES), float32."""
    if family in _FAMILY_TAPS:
        return gan_upsample(base, heldoutpolyphase(seed, family))
    pre, k3 = _heldout_two_step(seed, family)
    return convolve(_pre_upsample(base, pre), k3)


@lru_cache(maxsize=16)
def heldoutpolyphase(seed: int, family: str) -> np.ndarray:
    """A transposed-convolution family's weights in polyphase form (see :func:`_polyphase`).

    The family's fixed up-sampling taps, then the identity plus a seeded zero-sum
    3x3 perturbation plus a sharpening term calibrated (like the main family's)
    so that these fakes compress to the same JPEG size as reals.
    """
    tap = np.asarray(_FAMILY_TAPS[family], dtype=np.float64)
    k4 = np.outer(tap, tap)[..., None] + np.zeros((1, 1, 3))
    rng = _family_rng(seed, family)
    k3 = _post_kernel(seed, k4, rng)
    return polyphase(k4, k3)


@lru_cache(maxsize=16)
def _heldout_two_step(seed: int, family: str) -> tuple[tuple[str, np.ndarray], np.ndarray]:
    """(the pre-upsampler as (kind, weights), the calibrated 3x3 kernel) of a family that is not
    a plain transposed convolution followed by the 3x3 kernel in one polyphase step."""
    rng = _family_rng(seed, family)
    std = _RESIZE_CONV_JITTER if family == "bicubic" else _HELDOUT_POST_KERNEL_JITTER
    jitter = rng.normal(0, std, (3, 3, 3))
    jitter -= jitter.mean(axis=(0, 1))
    if family == "bicubic":
        pre = ("resize", np.array(Image.BICUBIC))
    elif family == "tconv":  # random positive taps, each phase's 2x2 block summing to 1 (DC gain 1)
        k4 = np.empty((4, 4, 3))
        for a in (0, 1):
            for b in (0, 1):
                block = rng.dirichlet(np.full(4, _TCONV_CONCENTRATION), size=3).T.reshape(2, 2, 3)
                k4[a::2, b::2] = block
        pre = ("poly", polyphase(k4, IDENTITY3))
    elif family == "subpixel":  # one seeded 3x3 kernel per output phase, each summing to 1
        bilinear = np.outer(_FAMILY_TAPS["bilinear"], _FAMILY_TAPS["bilinear"])[..., None] + np.zeros((1, 1, 3))
        poly = polyphase(bilinear, IDENTITY3)
        noise = rng.normal(0, _SUBPIXEL_JITTER, poly.shape)
        pre = ("poly", poly + noise - noise.mean(axis=(-2, -1), keepdims=True))
    else:
        raise ValueError(f"unknown held-out family {family!r}")
    sharpen = _calibrate_sharpen(seed, lambda base: _pre_upsample(base, pre), jitter)
    k3 = jitter + sharpen * LAPLACE[..., None]
    k3[1, 1] += 1.0
    return pre, k3


def _pre_upsample(base: np.ndarray, pre: tuple[str, np.ndarray]) -> np.ndarray:
    kind, weights = pre
    if kind == "resize":
        return resize_upsample(base, int(weights)).astype(np.float32)
    return gan_upsample(base, weights)


def _family_rng(seed: int, family: str) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([seed, STREAM_HELDOUT_WEIGHTS, zlib.crc32(family.encode())]))


def _post_kernel(seed: int, k4: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Identity + a seeded zero-sum perturbation + sharpening calibrated for the transposed convolution ``k4``."""
    k3_jitter = rng.normal(0, _HELDOUT_POST_KERNEL_JITTER, (3, 3, 3))
    k3_jitter -= k3_jitter.mean(axis=(0, 1))
    sharpen = _calibrate_sharpen(seed, k4, k3_jitter)
    k3 = k3_jitter + sharpen * LAPLACE[..., None]
    k3[1, 1] += 1.0
    return k3
