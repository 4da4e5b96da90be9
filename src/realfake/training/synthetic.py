"""Synthesised fakes: real training images passed through a randomly drawn up-sampler, labelled fake.

The idea of AutoGAN (Zhang et al., WIFS 2019): a detector that sees one generator
learns that generator's fingerprint; one that also sees many random up-samplers
learns up-sampling traces in general. Each synthesised fake is a real image
down-sampled 2x (box filter), then brought back up by an architecture drawn at
random (nearest, bilinear or bicubic resize, a transposed convolution with random
taps, or a sub-pixel convolution with random phase kernels), then a random 3x3
convolution, sensor-like noise, and JPEG re-compression in the dataset's quality
range (so a missing JPEG trace never gives the class away). Nothing here knows
the sample's generators: it works unchanged on the real dataset.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from PIL import Image

from realfake.config import is_number, require
from realfake.detector.perturb import noisy
from realfake.upsamplers import (
    BILINEAR_TAPS,
    IDENTITY3,
    LAPLACE,
    convolve,
    polyphase,
    resize_upsample,
    transposed_upsample,
)

ARCHITECTURES = ("nearest", "bilinear", "bicubic", "transposed", "subpixel")
_RESIZE = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


@dataclass(frozen=True)
class Synthetic:
    """``train.synthetic``: how often a fake training item is replaced by a synthesised fake."""

    prob: float = 0.25  # share of the fake training items replaced; 0 = off
    jpeg_quality: tuple[int, int] = (85, 95)  # re-compression quality range (the dataset's)

    def __post_init__(self) -> None:
        require(is_number(self.prob) and 0 <= self.prob <= 1,
                f"train.synthetic.prob must be in [0, 1], got {self.prob!r}.")
        q = self.jpeg_quality
        require(len(q) == 2 and 1 <= q[0] <= q[1] <= 100,
                f"train.synthetic.jpeg_quality must be two qualities lo <= hi in 1..100, got {q!r}.")


def synthesise(img: np.ndarray, rng: np.random.Generator, jpeg_quality: tuple[int, int] = (85, 95),
               generator: bool = True) -> np.ndarray:
    """A fake made from decoded HxWx3 uint8 pixels ``img`` (even H and W) by a random up-sampler (:func:`upsampled`),
    with sensor-like noise and re-compression; with ``generator`` false, the same photo only enlarged."""
    up = upsampled(img, rng, generator)
    sigma, seed = rng.uniform(0.5, 3.0), int(rng.integers(2**63))  # sensor-like noise, the perturbations' own
    out = Image.fromarray(noisy(torch.from_numpy(up), sigma, seed).to(torch.uint8).numpy(), "RGB")
    buf = io.BytesIO()
    out.save(buf, format="JPEG", quality=int(rng.integers(jpeg_quality[0], jpeg_quality[1] + 1)))
    with Image.open(io.BytesIO(buf.getvalue())) as decoded:
        return np.asarray(decoded.convert("RGB"))


class Synthesised(Sequence):
    """Image ``i`` of ``pixels`` (decoded HxWx3 uint8, e.g. a split's reals) passed through a random up-sampler
    (:func:`synthesise`; with ``generator`` false, only enlarged), drawn from stream ``(seed, stream, i)``: the same
    image for the same index, in whichever loader process makes it."""

    def __init__(self, pixels: Sequence, seed: int, stream: int, jpeg_quality: tuple[int, int] = (85, 95),
                 generator: bool = True):
        self.pixels, self.seed, self.stream, self.jpeg_quality = pixels, seed, stream, jpeg_quality
        self.generator = generator

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, i):  # type: ignore[override]
        return synthesise(self.pixels[i], np.random.default_rng([self.seed, self.stream, i]), self.jpeg_quality,
                          self.generator)


def upsampled(img: np.ndarray, rng: np.random.Generator, generator: bool = True) -> np.ndarray:
    """``img`` (HxWx3 uint8, even H and W) box-filtered to half its size and brought back up, as float32: by a random
    up-sampler (:func:`random_upsample`) and, nine times in ten, a random 3x3 convolution; with ``generator`` false,
    by a nearest, bilinear or bicubic resize and nothing after it: what a real photo becomes when it is enlarged 2x."""
    h, w, _ = img.shape
    x = img[: h // 2 * 2, : w // 2 * 2].astype(np.float32)
    base = (x[0::2, 0::2] + x[1::2, 0::2] + x[0::2, 1::2] + x[1::2, 1::2]) / 4  # box-filter down-sampling (exact)
    if not generator:
        return resize_upsample(base, list(_RESIZE.values())[int(rng.integers(len(_RESIZE)))]).astype(np.float32)
    up = random_upsample(base, rng)
    if rng.random() < 0.9:
        up = convolve(up, random_post_kernel(rng))
    return up


def random_upsample(base: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """2x up-sampling of a float HxWx3 image by an architecture and weights drawn from ``rng``."""
    arch = ARCHITECTURES[int(rng.integers(len(ARCHITECTURES)))]
    if arch in _RESIZE:
        return resize_upsample(base, _RESIZE[arch]).astype(np.float32)
    if arch == "transposed":  # random positive taps; each phase's 2x2 block sums to 1 (DC gain 1)
        k4 = np.empty((4, 4, 3))
        for a in (0, 1):
            for b in (0, 1):
                k4[a::2, b::2] = rng.dirichlet(np.full(4, rng.uniform(1.0, 8.0)), size=3).T.reshape(2, 2, 3)
        return transposed_upsample(base, polyphase(k4, IDENTITY3))
    # sub-pixel convolution: a kernel per output phase around the bilinear one, each summing to 1
    bilinear = np.outer(BILINEAR_TAPS, BILINEAR_TAPS)[..., None] + np.zeros((1, 1, 3))
    poly = polyphase(bilinear, IDENTITY3)
    noise = rng.normal(0, rng.uniform(0.03, 0.2), poly.shape)
    return transposed_upsample(base, poly + noise - noise.mean(axis=(-2, -1), keepdims=True))


def random_post_kernel(rng: np.random.Generator) -> np.ndarray:
    """A 3x3 kernel per channel: identity, a random zero-sum perturbation, random sharpening or smoothing."""
    jitter = rng.normal(0, rng.uniform(0.01, 0.15), (3, 3, 3))
    jitter -= jitter.mean(axis=(0, 1))
    return IDENTITY3 + jitter + rng.uniform(-0.3, 1.0) * LAPLACE[..., None]
