"""The cyclic coherence (:func:`realfake.detector.spectrum.cyclic_features`): an up-sampled image's frequencies are
correlated with those half a cycle away, in phase for a symmetric resize and turned by an asymmetric convolution;
an image that was never up-sampled has next to none. Under a Hann window (``hann``) a smooth photo's edges do not leak
into it, and a JPEG's block grid shows a quarter of a cycle away, where a 2x up-sampler leaves nothing."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image
from scipy.ndimage import correlate1d, gaussian_filter

from realfake.detector.preprocess import PIXEL_SCALE
from realfake.detector.spectrum import CYCLIC, CYCLIC_BANDS, CYCLIC_KINDS, N_CYCLIC, cyclic_features
from realfake.errors import RealfakeError

B = CYCLIC_BANDS
MIDDLE = slice(B // 4, 3 * B // 4)  # the bands where both bins of a pair carry an up-sampled image's power


def features(grey: np.ndarray, kind: str = CYCLIC) -> torch.Tensor:
    """The cyclic features of grey images (N, H, W) given as the model's standardised RGB input."""
    return cyclic_features(torch.from_numpy(np.repeat(grey[:, None], 3, 1)) / PIXEL_SCALE, kind)


def enlarge(small: np.ndarray) -> np.ndarray:
    """Grey images (N, h, w) enlarged 2x by PIL's bicubic resize, as float32."""
    return np.stack([np.asarray(Image.fromarray(a).resize((2 * a.shape[1], 2 * a.shape[0]), Image.BICUBIC))
                     for a in small.astype(np.float32)])


def parts(f: torch.Tensor) -> dict[str, torch.Tensor]:
    """The middle bands of each block: along the rows (real, imaginary), down the columns (real, imaginary)."""
    return {name: f[:, i * B:(i + 1) * B][:, MIDDLE] for i, name in enumerate(("re_h", "im_h", "re_v", "im_v"))}


@pytest.mark.parametrize("kind", list(CYCLIC_KINDS))
def test_a_resize_is_in_phase_an_asymmetric_convolution_turns_it_and_a_never_enlarged_image_has_none(kind):
    rng = np.random.default_rng(0)
    enlarged = enlarge(rng.normal(128, 40, (4, 64, 64)))
    turned = correlate1d(enlarged, [0.0, 0.75, 0.25], axis=-1, mode="nearest")  # along the rows only
    never = rng.normal(128, 40, (4, 128, 128)).astype(np.float32)

    resized, conv, plain = (parts(features(g, kind)) for g in (enlarged, turned, never))
    assert features(enlarged, kind).shape == (4, CYCLIC_KINDS[kind]) and CYCLIC_KINDS[CYCLIC] == N_CYCLIC
    # a symmetric interpolator: strongly correlated, purely imaginary, along both axes
    assert resized["im_h"].abs().mean() > 0.9 and resized["im_v"].abs().mean() > 0.9
    assert resized["re_h"].abs().mean() < 0.02 and resized["re_v"].abs().mean() < 0.02
    # the asymmetric kernel turns the phase along the axis it runs on, and only there
    assert conv["re_h"].mean() > 0.3 and conv["re_v"].abs().mean() < 0.02
    # no up-sampler, no correlation
    assert all(v.abs().mean() < 0.05 for v in plain.values())


def smooth_photos(n: int = 4, size: int = 128) -> np.ndarray:
    """Grey images (N, size, size) of smooth random content whose opposite edges differ, as a photo's do."""
    rng = np.random.default_rng(1)
    field = np.stack([gaussian_filter(rng.normal(0, 1, (size, size)), 3) for _ in range(n)])
    return (128 + 60 * field / field.std()).clip(0, 255).astype(np.float32)


def test_under_the_window_a_photos_edges_do_not_leak_into_the_coherence():
    photos = smooth_photos()
    im_h = {kind: parts(features(photos, kind))["im_h"].abs().mean() for kind in CYCLIC_KINDS}
    # without a window, the jump from the last column to the first correlates every bin with every other: a photo
    # never enlarged reads as one
    assert im_h["plain"] > 0.5
    assert im_h["hann"] < 0.3 and parts(features(enlarge(photos[:, ::2, ::2]), "hann"))["im_h"].abs().mean() > 0.9


def test_under_the_window_a_jpeg_grid_shows_a_quarter_of_a_cycle_away_and_an_enlargement_does_not():
    def jpeg(a: np.ndarray, quality: int) -> np.ndarray:
        buf = io.BytesIO()
        Image.fromarray(a.astype(np.uint8)).save(buf, "JPEG", quality=quality)
        return np.asarray(Image.open(buf), dtype=np.float32)

    def quarter(grey: np.ndarray) -> float:  # the middle bands of the quarter cycle, along the rows and the columns
        f = features(grey, "hann")[:, 6 * B:]
        return float(torch.cat([f[:, i * B:(i + 1) * B][:, MIDDLE] for i in range(4)], 1).abs().mean())

    photos = smooth_photos()
    plain = quarter(photos)
    assert quarter(np.stack([jpeg(a, 30) for a in photos])) > 1.6 * plain
    assert quarter(enlarge(photos[:, ::2, ::2])) < 1.3 * plain


def test_an_unknown_kind_is_a_clear_error():
    with pytest.raises(RealfakeError, match="unknown cyclic coherence 'fancy'; expected one of hann, plain"):
        cyclic_features(torch.zeros(1, 3, 32, 32), "fancy")
