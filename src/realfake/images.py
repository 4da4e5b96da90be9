"""Reading images safely: every decoder in the project goes through :func:`load_rgb`.

Truncated or unreadable files and decompression bombs become an
:class:`ImageError` that names the file; alpha, grayscale, CMYK and palette
images become RGB. The dataset scan, the packed store, evaluation, predict and
the served model all decode with it, so they all see the same pixels.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, UnidentifiedImageError

from realfake.errors import RealfakeError

#: Refuse images above this many pixels before decoding them (decompression bombs).
MAX_PIXELS = 50_000_000
#: File name suffixes of the image formats :func:`load_rgb` decodes: a dataset's image files, predict's folders.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif")

ImageSource = Union[bytes, bytearray, str, Path, Image.Image]


class ImageError(RealfakeError):
    """An input image cannot be used (unreadable, truncated, too large)."""


def load_rgb(source: ImageSource, name: str | None = None) -> Image.Image:
    """Decode ``source`` (bytes, a path or a PIL image) fully into an RGB image.

    Alpha is composited on white, grayscale/CMYK/palette images are converted.
    Truncated or unreadable files and decompression bombs raise :class:`ImageError`
    naming the file.
    """
    if isinstance(source, Image.Image):
        img = source
        label = name or "image"
    else:
        label = name or (str(source) if isinstance(source, (str, Path)) else "image bytes")
        try:
            data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
        except OSError as exc:
            raise ImageError(f"{label}: cannot read the file ({exc.strerror or exc}).") from None
        if not data:
            raise ImageError(f"{label}: the file is empty (0 bytes).")
        try:
            with warnings.catch_warnings():
                # We apply our own, lower limit below, with a clearer message.
                warnings.simplefilter("ignore", Image.DecompressionBombWarning)
                img = Image.open(io.BytesIO(data))
            w, h = img.size
            if w * h > MAX_PIXELS:
                raise ImageError(
                    f"{label}: {w}x{h} pixels is over the {MAX_PIXELS:,}-pixel limit; decoding it could exhaust "
                    "memory (a decompression bomb?). Downscale it first."
                )
            previous = ImageFile.LOAD_TRUNCATED_IMAGES
            ImageFile.LOAD_TRUNCATED_IMAGES = False
            try:
                img.load()
            finally:
                ImageFile.LOAD_TRUNCATED_IMAGES = previous
        except ImageError:
            raise
        except Image.DecompressionBombError as exc:
            raise ImageError(f"{label}: refused to decode: {exc} Downscale it first.") from None
        except UnidentifiedImageError:
            raise ImageError(f"{label}: not an image file (no known image format).") from None
        except (OSError, SyntaxError, ValueError) as exc:
            raise ImageError(f"{label}: the image cannot be decoded ({exc}); it may be truncated or corrupt.") from None
    if img.mode in ("RGBA", "LA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        img = img.convert("RGB")
    return img


def recompress(img: Image.Image, quality: int) -> Image.Image:
    """``img`` saved as JPEG at ``quality`` and decoded again (augmentation, robustness)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=int(quality))
    with Image.open(io.BytesIO(buf.getvalue())) as out:
        return out.convert("RGB")


class ImageFiles(Sequence):
    """Decoded HxWx3 uint8 pixels of image files, by index: what the packed store holds, decoded
    on access (and kept, with ``cache``, for a set scored several times)."""

    def __init__(self, paths: Sequence[str | Path], cache: bool = False):
        self.paths = [str(p) for p in paths]
        self.cache: dict[int, np.ndarray] | None = {} if cache else None

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):  # type: ignore[override]
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        arr = np.asarray(load_rgb(self.paths[i]))
        if self.cache is not None:
            self.cache[i] = arr
        return arr
