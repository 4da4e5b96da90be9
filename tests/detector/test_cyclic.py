"""The cyclic coherence (:func:`realfake.detector.spectrum.cyclic_features`): an up-sampled image's frequencies are
correlated with those half a cycle away, in phase for a symmetric resize and turned by an asymmetric convolution;
an image that was never up-sampled has next to none."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image
from scipy.ndimage import correlate1d

from realfake.detector.preprocess import PIXEL_SCALE
from realfake.detector.spectrum import CYCLIC_BANDS, N_CYCLIC, cyclic_features

B = CYCLIC_BANDS
MIDDLE = slice(B // 4, 3 * B // 4)  # the bands where both bins of a pair carry an up-sampled image's power


def features(grey: np.ndarray) -> torch.Tensor:
    """The cyclic features of grey images (N, H, W) given as the model's standardised RGB input."""
    return cyclic_features(torch.from_numpy(np.repeat(grey[:, None], 3, 1)) / PIXEL_SCALE)


def parts(f: torch.Tensor) -> dict[str, torch.Tensor]:
    """The middle bands of each block: along the rows (real, imaginary), down the columns (real, imaginary)."""
    return {name: f[:, i * B:(i + 1) * B][:, MIDDLE] for i, name in enumerate(("re_h", "im_h", "re_v", "im_v"))}


def test_a_resize_is_in_phase_an_asymmetric_convolution_turns_it_and_a_never_enlarged_image_has_none():
    rng = np.random.default_rng(0)
    small = rng.normal(128, 40, (4, 64, 64)).astype(np.float32)
    enlarged = np.stack([np.asarray(Image.fromarray(a).resize((128, 128), Image.BICUBIC)) for a in small])
    turned = correlate1d(enlarged, [0.0, 0.75, 0.25], axis=-1, mode="nearest")  # along the rows only
    never = rng.normal(128, 40, (4, 128, 128)).astype(np.float32)

    resized, conv, plain = (parts(features(g)) for g in (enlarged, turned, never))
    assert features(enlarged).shape == (4, N_CYCLIC)
    # a symmetric interpolator: strongly correlated, purely imaginary, along both axes
    assert resized["im_h"].abs().mean() > 0.9 and resized["im_v"].abs().mean() > 0.9
    assert resized["re_h"].abs().mean() < 0.02 and resized["re_v"].abs().mean() < 0.02
    # the asymmetric kernel turns the phase along the axis it runs on, and only there
    assert conv["re_h"].mean() > 0.3 and conv["re_v"].abs().mean() < 0.02
    # no up-sampler, no correlation
    assert all(v.abs().mean() < 0.05 for v in plain.values())
