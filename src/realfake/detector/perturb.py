"""The perturbations users' photos go through (blur, JPEG, down-then-up scaling, noise), in one place.

Augmentation (:class:`realfake.detector.preprocess.Augment`), the spectral probe's training windows and
the validation mix (:mod:`realfake.training.spectral`, :mod:`realfake.training.decide`) and the robustness
stage (:mod:`realfake.evaluation.robustness`) all perturb with these. Two implementations of the same four
steps:

- :func:`perturb_image`: one step on one PIL image (a loader process's work);
- :func:`perturb_batch`: a batch of uint8 pixels on its device, as tensor operations, each image by its own
  *draw* (a row of :data:`DRAW`, 0 = that step off): where the model runs on CUDA, the probe's windows and the
  mix are made there in batches instead of one PIL image at a time on the CPU.

A draw fixes everything random about an image's perturbation (:meth:`Augment.draw
<realfake.detector.preprocess.Augment.draw>` draws it from the image's own random numbers), so the two
implementations apply the same steps with the same strengths, and a batch's result does not depend on which
images share it. The steps run in :data:`STEPS` order, and the pixels are whole levels after each, as PIL
keeps them:

- ``blur``: Gaussian, sigma in pixels (PIL's box approximation; on tensors the Gaussian truncated at 3 sigma,
  edges replicated: within half a level of PIL's from sigma 1 on, a little stronger below);
- ``jpeg``: re-compression at a quality in 1..100 (libjpeg; torchvision's ``encode_jpeg``/``decode_jpeg``,
  nvJPEG on CUDA; torchvision 0.29 deprecates them for TorchCodec's, which this project does not install yet);
- ``downscale``: bicubic down by the factor (anti-aliased) and back up;
- ``noise``: additive Gaussian, sigma in 0..255 units, its numbers from a torch generator seeded by the draw's
  seed (:func:`noisy`), on both paths: on a CPU the two give the same pixels.
"""

from __future__ import annotations

import math

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image, ImageFilter

from realfake.errors import RealfakeError
from realfake.images import recompress

#: The steps, in the order a draw applies them.
STEPS = ("blur", "jpeg", "downscale", "noise")
#: The columns of a draw: each step's strength (0 = off), then the noise's seed.
DRAW = (*STEPS, "seed")


def perturb_image(img: Image.Image, kind: str, strength: float, seed: int | None = None) -> Image.Image:
    """One step of :data:`STEPS` on an RGB image, at ``strength``; ``noise`` takes its numbers from ``seed``."""
    img = img.convert("RGB") if img.mode != "RGB" else img
    if kind == "blur":
        return img.filter(ImageFilter.GaussianBlur(float(strength)))
    if kind == "jpeg":
        return recompress(img, int(strength))
    if kind == "downscale":
        w, h = img.size
        small = img.resize((max(1, round(w * strength)), max(1, round(h * strength))), Image.BICUBIC)
        return small.resize((w, h), Image.BICUBIC)
    if kind != "noise":
        raise RealfakeError(f"unknown perturbation kind {kind!r}; use one of {', '.join(STEPS)}.")
    if seed is None:
        raise RealfakeError("noise perturbation needs a seed for its random numbers (the same seed, the same noise).")
    y = torch.from_numpy(np.array(img)).permute(2, 0, 1).float()
    return Image.fromarray(noisy(y, float(strength), int(seed)).permute(1, 2, 0).to(torch.uint8).numpy(), "RGB")


def apply_draw(img: Image.Image, draw: np.ndarray) -> Image.Image:
    """``img`` perturbed by one draw (a row of :data:`DRAW`), one PIL step at a time."""
    for kind, strength in zip(STEPS, draw[: len(STEPS)]):
        if strength > 0:
            img = perturb_image(img, kind, float(strength), int(draw[-1]) if kind == "noise" else None)
    return img


def perturb_batch(x: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    """``x`` (B, H, W, 3) uint8, each image perturbed by its row of ``draws`` (B, 5), on ``x``'s device."""
    if draws.shape != (len(x), len(DRAW)):
        raise RealfakeError(f"perturb_batch takes one draw ({', '.join(DRAW)}) per image: draws of shape "
                            f"{tuple(draws.shape)} for {len(x)} images.")
    draws = draws.double().cpu()
    if not draws[:, : len(STEPS)].gt(0).any():
        return x
    y = x.permute(0, 3, 1, 2).float()  # (B, 3, H, W)
    for column, step in enumerate((_blur, _jpeg, _downscale, _noise)):
        rows = torch.nonzero(draws[:, column] > 0).flatten()
        if len(rows):
            idx = rows.to(y.device)
            y[idx] = step(y[idx], draws[rows])
    return y.permute(0, 2, 3, 1).to(torch.uint8).contiguous()


def _levels(y: torch.Tensor) -> torch.Tensor:
    """Whole pixel levels in [0, 255], as an 8-bit image holds them."""
    return y.round_().clamp_(0, 255)


def gaussian_kernels(sigmas: torch.Tensor, device: torch.device) -> torch.Tensor:
    """One normalised 1-D Gaussian per sigma, (n, k), all truncated at 3 of the largest sigma."""
    radius = max(1, math.ceil(3 * float(sigmas.max())))
    t = torch.arange(-radius, radius + 1, dtype=torch.float32, device=device)
    k = torch.exp(-0.5 * (t / sigmas.float().to(device)[:, None]) ** 2)
    return k / k.sum(1, keepdim=True)


def _blur(y: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    n, c, h, w = y.shape
    k = gaussian_kernels(draws[:, 0], y.device).repeat_interleave(c, 0)  # (n*c, k): each channel its image's
    r = k.shape[1] // 2
    z = F.pad(y.reshape(1, n * c, h, w), (r, r, r, r), mode="replicate")
    z = F.conv2d(z, k[:, None, None, :], groups=n * c)  # along rows
    z = F.conv2d(z, k[:, None, :, None], groups=n * c)  # along columns
    return _levels(z.reshape(n, c, h, w))


def _jpeg(y: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    from torchvision.io import decode_jpeg, encode_jpeg

    images, quality = y.to(torch.uint8), draws[:, 1].round().long()
    out = torch.empty_like(y)
    for q in quality.unique().tolist():  # one call per quality: nvJPEG encodes the list as a batch
        rows = torch.nonzero(quality == q).flatten().tolist()
        data = encode_jpeg([images[i].contiguous() for i in rows], quality=int(q))
        if y.device.type == "cuda":
            decoded = decode_jpeg(data, device=y.device)
        else:
            decoded = [decode_jpeg(d) for d in data]
        for i, d in zip(rows, decoded):
            out[i] = d.to(y.device, torch.float32)
    return out


def _downscale(y: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    h, w = y.shape[-2:]
    out = torch.empty_like(y)
    for i, f in enumerate(draws[:, 2].tolist()):
        small = F.interpolate(y[i : i + 1], size=(max(1, round(h * f)), max(1, round(w * f))), mode="bicubic",
                              align_corners=False, antialias=True)
        out[i] = F.interpolate(_levels(small), size=(h, w), mode="bicubic", align_corners=False)[0]
    return _levels(out)


def _noise(y: torch.Tensor, draws: torch.Tensor) -> torch.Tensor:
    out = torch.empty_like(y)
    for i, (sigma, seed) in enumerate(draws[:, 3:].tolist()):
        out[i] = noisy(y[i], sigma, int(seed))
    return out


def noisy(y: torch.Tensor, sigma: float, seed: int) -> torch.Tensor:
    """An image ``y`` of float levels (any layout: the draws follow its shape) plus Gaussian noise of ``sigma`` levels,
    drawn by a torch generator seeded by ``seed`` on ``y``'s device, in whole levels in [0, 255] (torch's generator:
    a third of NumPy's time here)."""
    g = torch.Generator(y.device).manual_seed(seed)
    noise = torch.randn(y.shape, generator=g, device=y.device)
    return _levels(noise.mul_(sigma).add_(y) if y.dtype == noise.dtype else y + sigma * noise)  # in place: same sums
