"""Reading images safely: every decoder in the project goes through :func:`load_rgb`.

Truncated or unreadable files and decompression bombs become an
:class:`ImageError` that names the file. Images come out as a person sees them:
upright by their EXIF orientation, 16-bit pixels scaled to 8 bits, alpha on
white, grayscale, CMYK and palette images as RGB, HEIC read through pillow-heif.
The dataset scan, the packed store, evaluation, predict and the served model
all decode with it, so they all see the same pixels.
"""

from __future__ import annotations

import functools
import io
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Union

import numpy as np
from PIL import Image, ImageFile, ImageOps, UnidentifiedImageError

from realfake.errors import RealfakeError

#: Refuse images above this many pixels before decoding them (decompression bombs).
MAX_PIXELS = 50_000_000
#: File name suffixes of the image formats :func:`load_rgb` decodes: a dataset's image files, predict's folders.
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff", ".gif", ".avif", ".heic", ".heif")

ImageSource = Union[bytes, bytearray, str, Path, Image.Image]


class ImageError(RealfakeError):
    """An input image cannot be used (unreadable, truncated, too large)."""


class ImageTooLarge(ImageError):
    """Over the pixel limit: refused before decoding (a decompression bomb?)."""


class NotAnImage(ImageError):
    """No known image format."""


def load_rgb(source: ImageSource, name: str | None = None) -> Image.Image:
    """Decode ``source`` (bytes, a path or a PIL image) fully into the upright 8-bit RGB image a person sees.

    The EXIF orientation is applied, 16-bit and float pixels are scaled to 8 bits, alpha is
    composited on white and grayscale/CMYK/palette images are converted; an animated image
    gives its first frame. Unreadable, truncated or oversized files, and pixels that cannot be
    turned into 8-bit RGB faithfully, raise :class:`ImageError` naming the file.
    """
    if isinstance(source, Image.Image):
        label = name or "image"
        img = upright(source)
    else:
        label = name or (str(source) if isinstance(source, (str, Path)) else "image bytes")
        img = decode(read_bytes(source, label), label)
    return to_rgb(img, label)


def read_bytes(source: bytes | bytearray | str | Path, label: str) -> bytes:
    """The bytes of an image file or buffer; an unreadable or empty file is an :class:`ImageError`."""
    try:
        data = Path(source).read_bytes() if isinstance(source, (str, Path)) else bytes(source)
    except OSError as exc:
        raise ImageError(f"{label}: cannot read the file ({exc.strerror or exc}).") from None
    if not data:
        raise ImageError(f"{label}: the file is empty (0 bytes).")
    return data


def decode(data: bytes, label: str = "image bytes") -> Image.Image:
    """Fully decode an image file's bytes, upright (EXIF orientation applied), in the file's own mode."""
    _register_heif()
    try:
        with warnings.catch_warnings():
            # We apply our own, lower limit below, with a clearer message.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            img = Image.open(io.BytesIO(data))
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise ImageTooLarge(
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
        raise ImageTooLarge(f"{label}: refused to decode: {exc} Downscale it first.") from None
    except UnidentifiedImageError:
        if _is_heif(data):
            raise ImageError(
                f"{label}: a HEIC/HEIF photo, and the HEIF decoder is not installed; "
                "`pip install pillow-heif` (a dependency of realfake) to read it."
            ) from None
        raise NotAnImage(f"{label}: not an image file (no known image format).") from None
    except (OSError, SyntaxError, ValueError) as exc:
        raise ImageError(f"{label}: the image cannot be decoded ({exc}); it may be truncated or corrupt.") from None
    return upright(img)


#: EXIF tag 0x0112: how a viewer turns the stored pixels upright (1 = as stored).
_ORIENTATION = 0x0112


def upright(img: Image.Image) -> Image.Image:
    """``img`` turned as its EXIF orientation tag says (phones store sensor-oriented pixels); as is without a tag."""
    if img.getexif().get(_ORIENTATION, 1) in (2, 3, 4, 5, 6, 7, 8):
        return ImageOps.exif_transpose(img)
    return img


def to_rgb(img: Image.Image, label: str = "image") -> Image.Image:
    """8-bit RGB pixels of a decoded image: high bit depths scaled (not clipped), alpha on white."""
    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        img = Image.fromarray(_gray_to_8bit(img, label), "L")
    if img.mode in ("RGBA", "LA", "PA") or (img.mode == "P" and "transparency" in img.info):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    if img.mode != "RGB":
        try:
            img = img.convert("RGB")
        except ValueError as exc:
            raise ImageError(
                f"{label}: pixels in mode {img.mode} cannot be turned into RGB ({exc}); "
                "save it as an 8-bit RGB JPEG or PNG."
            ) from None
    return img


_SIXTEEN_BIT = ("I;16", "I;16L", "I;16B", "I;16N")


def _gray_to_8bit(img: Image.Image, label: str) -> np.ndarray:
    """A one-channel 16-bit, 32-bit integer or float image as 8-bit: white stays white, nothing is clipped."""
    arr = np.asarray(img)
    if img.mode == "F":
        if not np.isfinite(arr).all():
            raise ImageError(
                f"{label}: floating-point pixels outside 0..1 (NaN or infinite values). "
                "Save it as an 8- or 16-bit image."
            )
        if arr.min() < 0 or arr.max() > 1:
            raise ImageError(
                f"{label}: floating-point pixels outside 0..1 (min {arr.min():g}, max {arr.max():g}); "
                "their white level is unknown. Save it as an 8- or 16-bit image."
            )
        return np.round(arr * 255).astype(np.uint8)
    if arr.size and (arr.min() < 0 or arr.max() > 65535):
        raise ImageError(
            f"{label}: 32-bit integer pixels from {arr.min()} to {arr.max()}; their white level is unknown. "
            "Save it as an 8- or 16-bit image."
        )
    # 16 bits to 8 by the high byte, as Pillow does for 16-bit RGB files.
    return (arr.astype(np.uint32) >> 8).astype(np.uint8)


def _is_heif(data: bytes) -> bool:
    """Whether ``data`` is an ISO-BMFF image (HEIC/HEIF): an ``ftyp`` box with an image brand."""
    return data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"heim", b"heis", b"hevc", b"mif1", b"msf1")


@functools.cache
def _register_heif() -> bool:
    """Teach Pillow HEIC/HEIF (iPhone photos) once, on first decode, when pillow-heif is installed."""
    try:
        import pillow_heif
    except ImportError:
        return False
    pillow_heif.register_heif_opener()
    return True


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
