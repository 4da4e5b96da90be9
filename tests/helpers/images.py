"""Test images: a random photo and its JPEG bytes."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    """``img`` encoded as JPEG (``quality=...`` and other PIL options)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def random_photo(seed: int = 0, size: int = 256) -> Image.Image:
    """A ``size`` x ``size`` RGB image of uniform noise: every pixel differs from its neighbours."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))
