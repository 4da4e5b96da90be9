"""A deterministic synthetic "real vs GAN faces" sample in the Kaggle 140k layout.

The sample stands in for the real data set: both classes draw their *content*
from one distribution of cartoon faces (:func:`render_face`); they differ only
in how that content is brought up to full resolution:

* real: an ideal resampler (Lanczos) from the base resolution to ``image_size``;
* fake: a GAN-like up-sampler, a stride-2 transposed convolution with a seeded
  4x4 kernel followed by a seeded 3x3 convolution (fixed per data-set seed, like
  a generator's weights), mixed as ``ideal + strength * (gan - ideal)``.

The transposed convolution leaves the periodic up-sampling fingerprint of real
generators (spectral replicas and peaks at the Nyquist frequencies; Frank et
al. 2020, Durall et al. 2020), while global statistics (channel means and
spread, JPEG size) stay the same for both classes: the kernels keep the DC
gain, and the 3x3 kernel's sharpening is calibrated per seed so that fakes
compress to the same JPEG size as reals. Sensor noise and JPEG
quality are drawn from the same distributions for both classes.

Every image has its own random generator derived from ``(seed, split, class,
index)``, so the output is byte-identical whatever the number of workers.

A *held-out* fake family (:func:`generate_heldout`) tests whether a detector
generalises to a generator it never saw: the same content, sensor noise and
JPEG quality distributions, but a different up-sampler (``nearest``:
nearest-neighbour up-sampling, or ``bilinear``: bilinear up-sampling, each
followed by its own seeded 3x3 convolution calibrated to the reals' JPEG size).
It draws from its own random streams, so generating it never changes the
train/valid/test files.
"""

from __future__ import annotations

import io
import os
import zlib
from dataclasses import dataclass
from functools import lru_cache, partial
from pathlib import Path
from typing import Any, Iterable, Mapping

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from realfake.errors import RealfakeError
from realfake.layout import CLASSES, CSV_COLUMNS, LABELS, SPLITS, csv_path, image_root

__all__ = [
    "HELDOUT_CSV",
    "HELDOUT_FAMILIES",
    "HELDOUT_INFO",
    "SampleConfig",
    "SampleConfigError",
    "generate_heldout",
    "generate_sample",
    "read_heldout",
    "write_heldout_index",
    "probe_auc",
    "render_face",
    "shortcut_features",
    "spectral_features",
    "split_files",
]

#: Real ids are drawn without replacement from 1..MAX_REAL_ID (5 digits, zero-padded).
MAX_REAL_ID = 69_999
FAKE_ID_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789"
FAKE_ID_LENGTH = 10
REAL_ORIGINAL_PREFIX = "/kaggle/input/flickrfaceshq-dataset-nvidia-part-1/"
FAKE_ORIGINAL_PREFIX = "/kaggle/input/1-million-fake-faces/1m_faces_00/"

# Independent random streams derived from the data-set seed.
_STREAM_WEIGHTS = 1
_STREAM_IDS = 2
_STREAM_SHUFFLE = 3
_STREAM_IMAGE = 4
_STREAM_CALIBRATION = 5
_STREAM_HELDOUT_WEIGHTS = 6
_STREAM_HELDOUT_IMAGE = 7
_STREAM_HELDOUT_IDS = 8

#: Held-out fake families: the up-sampling taps (1-D, per axis) of a stride-2 transposed
#: convolution on the zero-inserted signal, before the family's seeded 3x3 convolution.
HELDOUT_FAMILIES: dict[str, tuple[float, float, float, float]] = {
    "nearest": (0.0, 1.0, 1.0, 0.0),  # each pixel copied to a 2x2 block
    "bilinear": (0.25, 0.75, 0.75, 0.25),  # plain bilinear, no seeded kernel jitter, no phase gains
}
#: Files of a held-out folder: the index of its images, and what generated them.
HELDOUT_CSV = "heldout.csv"
HELDOUT_INFO = "info.json"
HELDOUT_COLUMNS = ("id", "label", "label_str", "family", "path")
_HELDOUT_POST_KERNEL_JITTER = 0.06  # std of the held-out family's seeded zero-sum 3x3 perturbation

# Fingerprint and noise calibration (see the module docstring and the tests).
_SHARED_KERNEL_JITTER = 0.10  # std of the seeded perturbation of the 4x4 kernel
_CHANNEL_KERNEL_JITTER = 0.03  # extra per-channel perturbation
_PHASE_GAIN_JITTER = 0.003  # std of the gain mismatch between the four output phases
_POST_KERNEL_JITTER = 0.04  # std of the seeded zero-sum 3x3 perturbation
_CALIBRATION_IMAGES = 24  # faces used to calibrate the fake up-sampler's sharpening
_CALIBRATION_SIZE = 256
_CALIBRATION_QUALITY = 90
_CALIBRATION_STEPS = 12
_SENSOR_NOISE = (1.0, 3.0)  # full-resolution noise std range (both classes)
_TEXTURE_NOISE = (1.5, 5.0)  # base-resolution texture noise std range (both classes)


class SampleConfigError(RealfakeError, ValueError):
    """The ``data.sample`` parameters are invalid."""


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


@dataclass(frozen=True)
class SampleConfig:
    """What to generate. ``train``/``valid``/``test`` are images *per class*."""

    seed: int = 0
    train: int = 1000
    valid: int = 250
    test: int = 250
    image_size: int = 256
    strength: float = 1.0
    jpeg_quality: tuple[int, int] = (85, 95)
    heldout_size: int = 250  # held-out fakes (another generator family); 0 = none
    heldout_family: str = "nearest"

    def __post_init__(self) -> None:
        problems = []
        if not _is_int(self.heldout_size) or self.heldout_size < 0:
            problems.append(f"heldout.size must be a non-negative integer, got {self.heldout_size!r}")
        if self.heldout_family not in HELDOUT_FAMILIES:
            problems.append(
                f"heldout.family must be one of {', '.join(HELDOUT_FAMILIES)}, got {self.heldout_family!r}"
            )
        if not _is_int(self.seed) or self.seed < 0:
            problems.append(f"seed must be a non-negative integer, got {self.seed!r}")
        for split in SPLITS:
            n = getattr(self, split)
            if not _is_int(n) or n < 0:
                problems.append(f"{split} must be a non-negative integer, got {n!r}")
        if not _is_int(self.image_size) or self.image_size < 32 or self.image_size % 2:
            problems.append(f"image_size must be an even integer >= 32, got {self.image_size!r}")
        if (
            not isinstance(self.strength, (int, float, np.floating, np.integer))
            or isinstance(self.strength, bool)
            or not np.isfinite(self.strength)
            or self.strength < 0
        ):
            problems.append(f"strength must be a finite number >= 0, got {self.strength!r}")
        q = self.jpeg_quality
        try:
            q = tuple(q)
        except TypeError:
            q = None
        if (
            q is None
            or len(q) != 2
            or not all(_is_int(v) for v in q)
            or not 1 <= q[0] <= q[1] <= 100
        ):
            problems.append(
                f"jpeg_quality must be two integers lo <= hi in 1..100, got {self.jpeg_quality!r}"
            )
        else:
            object.__setattr__(self, "jpeg_quality", (int(q[0]), int(q[1])))
        if not problems and self.total_per_class > MAX_REAL_ID:
            problems.append(
                f"at most {MAX_REAL_ID} images per class in all splits together, "
                f"got {self.total_per_class}"
            )
        if problems:
            raise SampleConfigError("invalid sample config: " + "; ".join(problems))

    @property
    def sizes(self) -> dict[str, int]:
        return {split: int(getattr(self, split)) for split in SPLITS}

    @property
    def total_per_class(self) -> int:
        return sum(self.sizes.values())

    @classmethod
    def from_params(cls, params: Mapping[str, Any]) -> "SampleConfig":
        """Build from the ``data.sample`` mapping of ``params.yaml``.

        Keys: ``seed``, ``sizes`` (``train``/``valid``/``test``), ``image_size``,
        ``strength``, ``jpeg_quality`` (``[lo, hi]``), ``heldout`` (``size``,
        ``family``); all optional, unknown keys raise :class:`SampleConfigError`
        (a ``ValueError``) naming them.
        """
        if params is None:
            params = {}
        if not isinstance(params, Mapping):
            raise SampleConfigError(f"data.sample must be a mapping, got {type(params).__name__}")
        allowed = {"seed", "sizes", "image_size", "strength", "jpeg_quality", "heldout"}
        unknown = sorted(map(str, set(params) - allowed))
        if unknown:
            raise SampleConfigError(
                f"unknown key(s) in data.sample: {', '.join(unknown)} "
                f"(allowed: {', '.join(sorted(allowed))})"
            )
        kwargs: dict[str, Any] = {k: params[k] for k in ("seed", "image_size", "strength") if k in params}
        if "jpeg_quality" in params:
            kwargs["jpeg_quality"] = params["jpeg_quality"]
        sizes = params.get("sizes") or {}
        if not isinstance(sizes, Mapping):
            raise SampleConfigError(f"data.sample.sizes must be a mapping, got {type(sizes).__name__}")
        unknown = sorted(map(str, set(sizes) - set(SPLITS)))
        if unknown:
            raise SampleConfigError(
                f"unknown key(s) in data.sample.sizes: {', '.join(unknown)} "
                f"(allowed: {', '.join(SPLITS)})"
            )
        kwargs.update({split: sizes[split] for split in SPLITS if split in sizes})
        heldout = params.get("heldout") or {}
        if not isinstance(heldout, Mapping):
            raise SampleConfigError(f"data.sample.heldout must be a mapping, got {type(heldout).__name__}")
        unknown = sorted(map(str, set(heldout) - {"size", "family"}))
        if unknown:
            raise SampleConfigError(
                f"unknown key(s) in data.sample.heldout: {', '.join(unknown)} (allowed: family, size)"
            )
        kwargs.update({f"heldout_{k}": heldout[k] for k in ("size", "family") if k in heldout})
        if isinstance(kwargs.get("strength"), int) and not isinstance(kwargs["strength"], bool):
            kwargs["strength"] = float(kwargs["strength"])
        return cls(**kwargs)

    def to_params(self) -> dict[str, Any]:
        """The inverse of :meth:`from_params`."""
        return {
            "seed": self.seed,
            "sizes": self.sizes,
            "image_size": self.image_size,
            "strength": self.strength,
            "jpeg_quality": list(self.jpeg_quality),
            "heldout": {"size": self.heldout_size, "family": self.heldout_family},
        }


# --------------------------------------------------------------------------- content

_SKIN = np.array(
    [
        (255, 224, 196), (246, 208, 180), (241, 194, 167), (234, 192, 134),
        (224, 172, 105), (212, 158, 122), (198, 134, 66), (170, 115, 80),
        (141, 85, 36), (120, 75, 50), (92, 56, 30), (70, 45, 30),
    ],
    dtype=np.float64,
)
_HAIR = np.array(
    [
        (20, 18, 16), (35, 28, 22), (60, 40, 25), (90, 60, 35), (110, 75, 45),
        (140, 60, 30), (170, 110, 60), (220, 190, 120), (200, 170, 110),
        (170, 170, 170), (225, 225, 220),
    ],
    dtype=np.float64,
)
_IRIS = np.array(
    [(70, 40, 20), (100, 60, 30), (40, 25, 15), (120, 100, 50), (70, 110, 60), (60, 100, 160), (110, 130, 150)],
    dtype=np.float64,
)


def _color(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> np.ndarray:
    base = palette[rng.integers(len(palette))]
    return np.clip(base * rng.uniform(0.85, 1.15) + rng.normal(0, jitter, 3), 0, 255)


def _rgba(c: np.ndarray, a: int = 255) -> tuple[int, int, int, int]:
    c = np.clip(c, 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]), int(a))


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    return _rgba(c)[:3]


@lru_cache(maxsize=8)
def _grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [-0.5, 0.5] (y, x), read-only."""
    y, x = np.mgrid[0:s, 0:s].astype(np.float32) / (s - 1) - 0.5
    y.flags.writeable = False
    x.flags.writeable = False
    return y, x


def _background(rng: np.random.Generator, s: int) -> Image.Image:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    theta = rng.uniform(0, 2 * np.pi)
    y, x = _grid(s)
    t = np.clip(0.5 + (x * np.cos(theta) + y * np.sin(theta)) * rng.uniform(0.5, 1.5), 0, 1)[..., None]
    bg = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(bg)
    for _ in range(rng.integers(0, 6)):
        cx, cy = rng.uniform(-0.1, 1.1, 2) * s
        rx, ry = rng.uniform(0.05, 0.35, 2) * s
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_rgb(rng.uniform(0, 255, 3)))
    if rng.random() < 0.3:  # a hard edge: door frame, window, wall corner
        x0 = rng.uniform(0, s)
        draw.rectangle((x0, -1, x0 + rng.uniform(0.05, 0.5) * s, s + 1), fill=_rgb(rng.uniform(0, 255, 3)))
    return bg.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 0.12 * s))))


def _face_layer(rng: np.random.Generator, s: int) -> Image.Image:
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    u = rng.uniform
    skin = _color(rng, _SKIN, 6)
    shade = skin * 0.78
    hair = _color(rng, _HAIR, 8) if rng.random() < 0.93 else rng.uniform(0, 255, 3)
    cloth = rng.uniform(0, 255, 3)

    cx, cy = s * 0.5, s * u(0.42, 0.48)
    rw = s * u(0.19, 0.25)
    rh = rw * u(1.2, 1.42)
    hair_style = rng.choice(["bald", "short", "medium", "long"], p=[0.08, 0.4, 0.27, 0.25])

    # Shoulders and neck.
    sw = rw * u(1.9, 2.6)
    top = cy + rh * u(0.95, 1.15)
    d.ellipse((cx - sw, top, cx + sw, top + 2 * rh), fill=_rgba(cloth))
    nw = rw * u(0.45, 0.6)
    d.rectangle((cx - nw, cy + rh * 0.5, cx + nw, top + rh * 0.15), fill=_rgba(shade * 1.05))
    if rng.random() < 0.5:  # collar / neckline
        d.chord((cx - nw * 1.3, top - rh * 0.2, cx + nw * 1.3, top + rh * 0.35), 0, 180, fill=_rgba(shade))

    # Hair behind the head.
    if hair_style == "short":
        d.ellipse((cx - rw * 1.06, cy - rh * 1.08, cx + rw * 1.06, cy + rh * 0.2), fill=_rgba(hair * 0.9))
    elif hair_style in ("medium", "long"):
        depth = rh * (0.6 if hair_style == "medium" else u(1.1, 1.6))
        d.rounded_rectangle(
            (cx - rw * u(1.1, 1.3), cy - rh * 1.05, cx + rw * u(1.1, 1.3), cy + depth),
            radius=rw * 0.6,
            fill=_rgba(hair * 0.85),
        )

    # Ears and head.
    ey = cy + rh * u(-0.05, 0.1)
    for side in (-1, 1):
        ex = cx + side * rw * 0.97
        d.ellipse((ex - rw * 0.16, ey - rh * 0.17, ex + rw * 0.16, ey + rh * 0.17), fill=_rgba(shade))
    d.ellipse((cx - rw, cy - rh, cx + rw, cy + rh), fill=_rgba(skin))
    # Cheek shading.
    for side in (-1, 1):
        chx = cx + side * rw * 0.5
        chy = cy + rh * 0.25
        blush = skin * 0.6 + np.array([220, 80, 80]) * 0.4
        d.ellipse((chx - rw * 0.22, chy - rh * 0.1, chx + rw * 0.22, chy + rh * 0.1), fill=_rgba(skin + (blush - skin) * u(0, 0.3)))

    # Hair on top: the part of a slightly larger head outline above the hairline.
    if hair_style != "bald":
        hw, hh = rw * u(1.03, 1.1), rh * u(1.04, 1.12)
        hairline = cy - rh * u(0.3, 0.65)
        a = np.degrees(np.arcsin(min(0.99, (cy - hairline) / hh)))
        d.chord((cx - hw, cy - hh, cx + hw, cy + hh), 180 + a, 360 - a, fill=_rgba(hair))
        if rng.random() < 0.5:  # fringe swept to one side
            side = rng.choice([-1, 1])
            d.polygon(
                [
                    (cx - side * rw * 0.7, hairline - rh * 0.1),
                    (cx + side * rw * 0.9, hairline - rh * 0.1),
                    (cx + side * rw * 0.5, hairline + rh * u(0.1, 0.3)),
                ],
                fill=_rgba(hair),
            )
        if hair_style != "short":
            for side in (-1, 1):
                x0 = cx + side * rw * 0.92
                d.rectangle((x0 - rw * 0.14, hairline, x0 + rw * 0.14, cy + rh * 0.2), fill=_rgba(hair))

    # Eyes.
    eye_y = cy - rh * u(0.02, 0.15)
    eye_dx = rw * u(0.36, 0.46)
    ew = rw * u(0.15, 0.21)
    eh = ew * u(0.45, 0.65)
    iris_c = _color(rng, _IRIS, 10)
    ir = eh * u(0.85, 1.05)
    gaze = u(-0.3, 0.3) * ew
    lw = max(1, round(s * 0.012))
    for side in (-1, 1):
        ex = cx + side * eye_dx
        d.ellipse((ex - ew, eye_y - eh, ex + ew, eye_y + eh), fill=_rgba(np.array([235, 235, 230]) * u(0.85, 1)))
        ix = ex + gaze
        d.ellipse((ix - ir, eye_y - ir, ix + ir, eye_y + ir), fill=_rgba(iris_c))
        pr = ir * u(0.35, 0.55)
        d.ellipse((ix - pr, eye_y - pr, ix + pr, eye_y + pr), fill=(10, 10, 12, 255))
        if rng.random() < 0.8:  # catch light
            hr = max(0.6, pr * 0.4)
            d.ellipse((ix - pr * 0.4 - hr, eye_y - pr * 0.6 - hr, ix - pr * 0.4 + hr, eye_y - pr * 0.6 + hr), fill=(250, 250, 250, 255))
        d.arc((ex - ew, eye_y - eh, ex + ew, eye_y + eh), 180, 360, fill=_rgba(shade * 0.6), width=lw)
        # Brows.
        by = eye_y - eh - rh * u(0.07, 0.14)
        d.arc(
            (ex - ew * 1.2, by, ex + ew * 1.2, by + eh * u(1.0, 2.5)),
            200,
            340,
            fill=_rgba(hair * 0.8),
            width=max(1, round(s * u(0.01, 0.025))),
        )
    if rng.random() < 0.15:  # glasses
        gc = _rgba(rng.uniform(0, 120, 3))
        for side in (-1, 1):
            ex = cx + side * eye_dx
            d.ellipse((ex - ew * 1.45, eye_y - ew * 1.1, ex + ew * 1.45, eye_y + ew * 1.1), outline=gc, width=lw)
        d.line((cx - eye_dx + ew * 1.45, eye_y, cx + eye_dx - ew * 1.45, eye_y), fill=gc, width=lw)

    # Nose.
    ny = cy + rh * u(0.22, 0.35)
    nw2 = rw * u(0.12, 0.2)
    d.line((cx + u(-0.03, 0.03) * rw, eye_y, cx + nw2 * 0.3, ny), fill=_rgba(shade * 0.95), width=lw)
    d.chord((cx - nw2, ny - nw2 * 0.7, cx + nw2, ny + nw2 * 0.7), 0, 180, fill=_rgba(shade * 0.9))
    for side in (-1, 1):
        nx = cx + side * nw2 * 0.55
        d.ellipse((nx - nw2 * 0.25, ny - nw2 * 0.12, nx + nw2 * 0.25, ny + nw2 * 0.2), fill=_rgba(shade * 0.55))

    # Mouth.
    my = cy + rh * u(0.5, 0.62)
    mw = rw * u(0.32, 0.52)
    mh = rh * u(0.04, 0.09)
    lip = skin * u(0.55, 0.8) + np.array([u(30, 90), 0, u(0, 30)])
    if rng.random() < 0.35:  # open smile with teeth
        d.chord((cx - mw, my - mh * 1.5, cx + mw, my + mh * 2.5), 0, 180, fill=_rgba(lip * 0.6))
        d.chord((cx - mw * 0.8, my - mh * 0.5, cx + mw * 0.8, my + mh * 1.2), 0, 180, fill=(235, 230, 220, 255))
    else:
        d.ellipse((cx - mw, my - mh, cx + mw, my + mh * 1.2), fill=_rgba(lip))
        d.line((cx - mw * 0.9, my, cx + mw * 0.9, my + u(-1, 1) * mh * 0.3), fill=_rgba(lip * 0.55), width=lw)

    if rng.random() < 0.15:  # beard
        d.chord((cx - rw * 0.95, cy - rh * 0.2, cx + rw * 0.95, cy + rh * 1.02), 10, 170, fill=_rgba(skin + (hair - skin) * u(0.5, 0.9)))
    return layer


def render_face(rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw one face-like picture: ``size`` x ``size`` x 3, float32 in [0, 255].

    Content only (background, head, hair, eyes, nose, mouth, lighting, pose and
    mild texture noise); the class-specific up-sampling happens elsewhere. Both
    classes draw their content from this one distribution.
    """
    s = int(size)
    img = _background(rng, s).convert("RGBA")
    face = _face_layer(rng, s)
    # Pose: rotation about the head, offset and scale.
    scale = rng.uniform(0.85, 1.15)
    if abs(scale - 1) > 1e-3:
        face = face.resize((max(1, round(s * scale)),) * 2, Image.BILINEAR)
        pad = Image.new("RGBA", (s, s), (0, 0, 0, 0))
        off = (s - face.size[0]) // 2
        pad.alpha_composite(face, (max(off, 0), max(off, 0)), (max(-off, 0), max(-off, 0)))
        face = pad
    face = face.rotate(
        float(rng.normal(0, 8)),
        resample=Image.BILINEAR,
        translate=(float(rng.normal(0, 0.04 * s)), float(rng.normal(0, 0.03 * s))),
    )
    img.alpha_composite(face)
    img = img.convert("RGB").filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))

    out = np.asarray(img, dtype=np.float32)
    # Lighting: a directional gradient and an exposure / colour cast.
    theta = rng.uniform(0, 2 * np.pi)
    y, x = _grid(s)
    light = 1 + rng.uniform(0.05, 0.5) * (x * np.cos(theta) + y * np.sin(theta))
    gain = rng.uniform(0.8, 1.15) * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    out = out * light[..., None] * gain
    # Texture noise at the base resolution.
    out += rng.standard_normal((s, s, 3), dtype=np.float32) * np.float32(rng.uniform(*_TEXTURE_NOISE))
    return np.clip(out, 0, 255).astype(np.float32, copy=False)


# --------------------------------------------------------------------------- up-sampling


_LAPLACE = np.array([[0, -1, 0], [-1, 4, -1], [0, -1, 0]], dtype=np.float64) / 4


def _polyphase(k4: np.ndarray, k3: np.ndarray) -> np.ndarray:
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


def _sensor_noise(img: np.ndarray, rng: np.random.Generator) -> np.ndarray:
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


def _to_uint8(img: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def _jpeg_size(img: np.ndarray, quality: int) -> int:
    buf = io.BytesIO()
    Image.fromarray(_to_uint8(img), "RGB").save(buf, format="JPEG", quality=quality)
    return buf.tell()


def _calibrate_sharpen(seed: int, k4: np.ndarray, k3_jitter: np.ndarray) -> float:
    """The sharpening of the 3x3 kernel for which fakes compress to the same JPEG size as reals.

    The GAN-like up-sampler blurs the upper half of the content band and adds
    spectral replicas above it; how these balance in bytes depends on the
    seeded kernels, so a small fixed set of calibration faces is rendered and
    the sharpening is found by bisection on the mean log JPEG size. The result
    depends only on ``seed`` (like the rest of the generator's weights).
    """
    from scipy.ndimage import correlate

    identity = np.zeros((3, 3, 3))
    identity[1, 1] = 1.0
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_CALIBRATION]))
    parts, target = [], 0.0
    for _ in range(_CALIBRATION_IMAGES):
        base = render_face(rng, _CALIBRATION_SIZE // 2)
        noise = _sensor_noise(np.zeros((_CALIBRATION_SIZE,) * 2 + (3,), np.float32), rng)
        target += np.log(_jpeg_size(_ideal_upsample(base) + noise, _CALIBRATION_QUALITY))
        up = _gan_upsample(base, _polyphase(k4, identity))
        fixed = np.stack([correlate(up[..., c], identity[..., c] + k3_jitter[..., c], mode="nearest") for c in range(3)], -1)
        lap = np.stack([correlate(up[..., c], _LAPLACE, mode="nearest") for c in range(3)], -1)
        parts.append((fixed + noise, lap))
    target /= len(parts)

    def excess(sharpen: float) -> float:
        size = sum(np.log(_jpeg_size(f + np.float32(sharpen) * l, _CALIBRATION_QUALITY)) for f, l in parts)
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
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_WEIGHTS]))
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
    k3 = k3_jitter + sharpen * _LAPLACE[..., None]
    k3[1, 1] += 1.0
    return k4, k3


@lru_cache(maxsize=16)
def _polyphase_weights(seed: int) -> np.ndarray:
    return _polyphase(*_generator_weights(seed))


def _ideal_upsample(base: np.ndarray) -> np.ndarray:
    h, w, _ = base.shape
    return np.stack(
        [np.asarray(Image.fromarray(base[..., c]).resize((2 * w, 2 * h), Image.LANCZOS)) for c in range(3)],
        axis=-1,
    )


def _gan_upsample(base: np.ndarray, poly: np.ndarray) -> np.ndarray:
    """Stride-2 transposed convolution (4x4) followed by a 3x3 convolution, in polyphase form."""
    from scipy.ndimage import correlate

    h, w, _ = base.shape
    out = np.empty((2 * h, 2 * w, 3), dtype=np.float32)
    for c in range(3):
        x = np.ascontiguousarray(base[..., c])
        for a in (0, 1):
            for b in (0, 1):
                out[a::2, b::2, c] = correlate(x, poly[a, b, c], mode="nearest")
    return out


def _render_image(cfg: SampleConfig, split_index: int, class_index: int, index: int) -> tuple[np.ndarray, int]:
    """One image of the sample as uint8 HxWx3 and its JPEG quality."""
    ss = np.random.SeedSequence([cfg.seed, _STREAM_IMAGE, split_index, class_index, index])
    content_ss, noise_ss, quality_ss = ss.spawn(3)
    base = render_face(np.random.default_rng(content_ss), cfg.image_size // 2)
    img = _ideal_upsample(base)
    if CLASSES[class_index] == "fake" and cfg.strength > 0:
        gan = _gan_upsample(base, _polyphase_weights(cfg.seed))
        img += np.float32(cfg.strength) * (gan - img)
    img = _sensor_noise(img, np.random.default_rng(noise_ss))
    quality = int(np.random.default_rng(quality_ss).integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    return _to_uint8(img), quality


def _write_image(task: tuple[int, int, int, str], cfg: SampleConfig, out_dir: str) -> int:
    split_index, class_index, index, rel = task
    arr, quality = _render_image(cfg, split_index, class_index, index)
    path = os.path.join(out_dir, rel)
    Image.fromarray(arr, "RGB").save(path, format="JPEG", quality=quality)
    return 1


# --------------------------------------------------------------------------- held-out family


@lru_cache(maxsize=16)
def _heldout_polyphase(seed: int, family: str) -> np.ndarray:
    """The held-out generator's weights in polyphase form (see :func:`_polyphase`).

    The family's fixed up-sampling taps, then the identity plus a seeded zero-sum
    3x3 perturbation plus a sharpening term calibrated (like the main family's)
    so that these fakes compress to the same JPEG size as reals.
    """
    tap = np.asarray(HELDOUT_FAMILIES[family], dtype=np.float64)
    k4 = np.outer(tap, tap)[..., None] + np.zeros((1, 1, 3))
    rng = np.random.default_rng(np.random.SeedSequence([seed, _STREAM_HELDOUT_WEIGHTS, zlib.crc32(family.encode())]))
    k3_jitter = rng.normal(0, _HELDOUT_POST_KERNEL_JITTER, (3, 3, 3))
    k3_jitter -= k3_jitter.mean(axis=(0, 1))
    sharpen = _calibrate_sharpen(seed, k4, k3_jitter)
    k3 = k3_jitter + sharpen * _LAPLACE[..., None]
    k3[1, 1] += 1.0
    return _polyphase(k4, k3)


def _render_heldout(cfg: SampleConfig, index: int) -> tuple[np.ndarray, int]:
    """One held-out fake: the same content, noise and quality distributions, another up-sampler."""
    ss = np.random.SeedSequence([cfg.seed, _STREAM_HELDOUT_IMAGE, index])
    content_ss, noise_ss, quality_ss = ss.spawn(3)
    base = render_face(np.random.default_rng(content_ss), cfg.image_size // 2)
    img = _ideal_upsample(base)
    if cfg.strength > 0:
        gan = _gan_upsample(base, _heldout_polyphase(cfg.seed, cfg.heldout_family))
        img += np.float32(cfg.strength) * (gan - img)
    img = _sensor_noise(img, np.random.default_rng(noise_ss))
    quality = int(np.random.default_rng(quality_ss).integers(cfg.jpeg_quality[0], cfg.jpeg_quality[1] + 1))
    return _to_uint8(img), quality


def _write_heldout(task: tuple[int, str], cfg: SampleConfig, out_dir: str) -> int:
    index, rel = task
    arr, quality = _render_heldout(cfg, index)
    Image.fromarray(arr, "RGB").save(os.path.join(out_dir, rel), format="JPEG", quality=quality)
    return 1


def _heldout_ids(cfg: SampleConfig) -> list[str]:
    """Fake-style ids for the held-out images, distinct from every id of the main sample."""
    taken = set(_draw_ids(cfg)[1])
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _STREAM_HELDOUT_IDS]))
    alphabet = np.array(list(FAKE_ID_ALPHABET))
    ids: list[str] = []
    while len(ids) < cfg.heldout_size:
        for row in rng.integers(0, len(alphabet), size=(cfg.heldout_size - len(ids), FAKE_ID_LENGTH)):
            fid = "".join(alphabet[row])
            if fid not in taken:
                taken.add(fid)
                ids.append(fid)
    return ids


# --------------------------------------------------------------------------- plan and write


def _draw_ids(cfg: SampleConfig) -> tuple[list[str], list[str]]:
    n = cfg.total_per_class
    rng = np.random.default_rng(np.random.SeedSequence([cfg.seed, _STREAM_IDS]))
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
        n = cfg.sizes[split]
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
        order = np.random.default_rng(np.random.SeedSequence([cfg.seed, _STREAM_SHUFFLE, si])).permutation(len(rows))
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

    _run_tasks(partial(_write_image, cfg=cfg, out_dir=str(image_root(out_dir))), tasks, workers, progress, "sample images")

    for split in SPLITS:
        frame = pd.DataFrame(plan["rows"][split], columns=list(CSV_COLUMNS))
        frame["label"] = frame["label"].astype("int64")
        frame.to_csv(csv_path(out_dir, split), index=True)
    return {split: {cls: cfg.sizes[split] for cls in CLASSES} for split in SPLITS}


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


def write_heldout_index(out_dir: Path, rows: list[dict[str, Any]], info: Mapping[str, Any]) -> None:
    """``heldout.csv`` (one row per image; header only when there are none) and ``info.json``."""
    import json

    out_dir = Path(out_dir)
    (out_dir / "fake").mkdir(parents=True, exist_ok=True)
    header = ",".join(HELDOUT_COLUMNS)
    lines = [header] + [",".join(str(r[c]) for c in HELDOUT_COLUMNS) for r in rows]
    (out_dir / HELDOUT_CSV).write_text("\n".join(lines) + "\n")
    (out_dir / HELDOUT_INFO).write_text(json.dumps(dict(info), indent=2) + "\n")


def generate_heldout(
    out_dir: Path,
    cfg: SampleConfig,
    workers: int | None = None,
    progress: bool = False,
) -> int:
    """Write ``cfg.heldout_size`` held-out fakes into ``out_dir`` (new or empty); return how many.

    Layout: ``fake/<id>.jpg``, ``heldout.csv`` (``id,label,label_str,family,path``
    with ``path`` relative to ``out_dir``; label 0 = fake as in the Kaggle CSVs)
    and ``info.json`` (what generated them). Byte-identical for the same
    ``cfg`` whatever the number of workers; size 0 writes the index only.
    """
    if not isinstance(cfg, SampleConfig):
        raise TypeError(f"cfg must be a SampleConfig, got {type(cfg).__name__}")
    out_dir = Path(out_dir)
    _check_out_dir(out_dir)
    rows = [
        {"id": iid, "label": LABELS["fake"], "label_str": "fake", "family": cfg.heldout_family, "path": f"fake/{iid}.jpg"}
        for iid in _heldout_ids(cfg)
    ]
    (out_dir / "fake").mkdir(parents=True, exist_ok=True)
    tasks = [(i, r["path"]) for i, r in enumerate(rows)]
    if tasks:
        _run_tasks(partial(_write_heldout, cfg=cfg, out_dir=str(out_dir)), tasks, workers, progress, "held-out fakes")
    info = {
        "source": "sample",
        "family": cfg.heldout_family if rows else None,
        "size": len(rows),
        "seed": cfg.seed,
        "strength": cfg.strength,
        "note": "" if rows else "data.sample.heldout.size is 0: no held-out fakes",
    }
    write_heldout_index(out_dir, rows, info)
    return len(rows)


def read_heldout(heldout_dir: Path) -> tuple[list[Path], dict[str, Any]]:
    """(image paths, info) of a held-out folder written by :func:`generate_heldout` or the download stage."""
    import json

    import pandas as pd

    heldout_dir = Path(heldout_dir)
    index = heldout_dir / HELDOUT_CSV
    if not index.is_file():
        raise RealfakeError(f"{index} not found: run the download stage (`dvc repro download`).")
    try:
        frame = pd.read_csv(index, dtype=str, keep_default_na=False)
    except (ValueError, OSError) as exc:
        raise RealfakeError(f"{index} cannot be read as the held-out index ({exc}).") from None
    if "path" not in frame.columns:
        raise RealfakeError(f"{index} has no 'path' column; rerun the download stage.")
    info_path = heldout_dir / HELDOUT_INFO
    info = json.loads(info_path.read_text()) if info_path.is_file() else {}
    return [heldout_dir / p for p in frame["path"]], info


# --------------------------------------------------------------------------- features


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
