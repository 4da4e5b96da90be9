"""The one preprocessing definition, shared by train, evaluate, predict and the served model.

An image becomes a model input in three steps: decode to RGB (:func:`load_rgb`),
fit to the input size by the input policy (:func:`fit`), and standardise
(:func:`to_tensor`). Training adds random augmentations *before* the same
fit/standardise steps (:class:`TrainTransform`); nothing else differs, and the
parity tests hold evaluate, predict and the pyfunc model to :func:`to_input`.

Input policies:

- ``crop``: take an ``image_size`` window without resampling (centre for
  evaluation, random for training). Generator fingerprints live in the
  highest frequencies, and resizing smooths them away; cropping keeps them.
- ``resize``: resample the whole image to ``image_size`` (bilinear, with
  antialiasing), as the original notebook did.
"""

from __future__ import annotations

import io
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Union

import numpy as np
from PIL import Image, ImageFile, ImageFilter, UnidentifiedImageError

from realfake.errors import RealfakeError

if TYPE_CHECKING:  # torch is imported where tensors are made: decoding alone (prepare) needs none
    import torch

#: facenet-pytorch's fixed_image_standardization: (x - 127.5) / 128.
PIXEL_CENTER = 127.5
PIXEL_SCALE = 128.0
POLICIES = ("crop", "resize")
#: Crop windows start on multiples of this: the 8x8 JPEG block grid (and with it the
#: phase of periodic up-sampling artifacts) is the same in every crop.
CROP_GRID = 8
#: Refuse images above this many pixels before decoding them (decompression bombs).
MAX_PIXELS = 50_000_000

ImageSource = Union[bytes, bytearray, str, Path, Image.Image]


class ImageError(RealfakeError):
    """An input image cannot be used (unreadable, truncated, too large)."""


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes a model input; saved with every model."""

    image_size: int = 128
    policy: str = "crop"

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise RealfakeError(f"input policy is {self.policy!r}; it must be one of {', '.join(POLICIES)}.")
        if not isinstance(self.image_size, int) or self.image_size < 32:
            raise RealfakeError(f"image_size is {self.image_size!r}; it must be an integer >= 32.")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        return cls(image_size=int(d["image_size"]), policy=str(d["policy"]))


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


def fit(img: Image.Image, spec: InputSpec, offset: tuple[int, int] | None = None) -> Image.Image:
    """Fit an RGB image to ``spec.image_size`` square by the input policy.

    ``crop`` takes the window at ``offset`` (left, top), centred (on the JPEG
    grid) when None; an image smaller than the window is first scaled up so its
    shorter side fits.
    """
    size = spec.image_size
    if spec.policy == "resize":
        return img.resize((size, size), Image.BILINEAR, reducing_gap=None)
    w, h = img.size
    if min(w, h) < size:
        scale = size / min(w, h)
        img = img.resize((max(size, round(w * scale)), max(size, round(h * scale))), Image.BILINEAR)
        w, h = img.size
    left, top = offset if offset is not None else centre_offset(w, h, size)
    return img.crop((left, top, left + size, top + size))


def centre_offset(w: int, h: int, size: int) -> tuple[int, int]:
    """(left, top) of the centred ``size`` window, on the JPEG grid."""
    return (w - size) // 2 // CROP_GRID * CROP_GRID, (h - size) // 2 // CROP_GRID * CROP_GRID


def fit_array(arr: np.ndarray, spec: InputSpec) -> np.ndarray:
    """:func:`fit` on decoded HxWx3 uint8 pixels (the packed store), to HxWx3 uint8.

    A crop is a slice, with no round trip through PIL; anything else goes through :func:`fit`.
    """
    h, w = arr.shape[:2]
    size = spec.image_size
    if spec.policy == "crop" and min(w, h) >= size:
        left, top = centre_offset(w, h, size)
        return np.ascontiguousarray(arr[top : top + size, left : left + size])
    return np.array(fit(Image.fromarray(arr), spec))


def standardise(x: torch.Tensor) -> torch.Tensor:
    """A batch of BxHxWx3 uint8 pixels -> Bx3xHxW float32, standardised as facenet expects.

    Runs where ``x`` is: training sends uint8 batches (a quarter of the bytes of
    float32) to the GPU and standardises there. The result is channels_last in
    memory (the permute is free). The arithmetic is exact in float32, so CPU and
    GPU give the same bits.
    """
    return (x.permute(0, 3, 1, 2).float() - PIXEL_CENTER) / PIXEL_SCALE


def to_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB (an image or an array) -> 3xHxW float32, standardised as facenet expects."""
    import torch

    arr = np.array(img, dtype=np.uint8)  # a copy: torch wants a writable array
    return standardise(torch.from_numpy(arr)[None])[0].contiguous()


def to_input(source: ImageSource, spec: InputSpec, name: str | None = None) -> torch.Tensor:
    """The evaluation transform: decode, fit (centre crop or resize), standardise."""
    return to_tensor(fit(load_rgb(source, name), spec))


@dataclass(frozen=True)
class Augment:
    """Training-only augmentations (``train.augment`` in params.yaml).

    JPEG re-compression and blur follow Wang et al. (CVPR 2020), who found them
    the key to detectors that survive real-world post-processing.
    """

    hflip: bool = True
    jpeg_prob: float = 0.0
    jpeg_quality: tuple[int, int] = (65, 95)
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)

    @classmethod
    def from_params(cls, d: dict[str, Any]) -> "Augment":
        from realfake.params import build_config

        d = dict(d)
        for key in ("jpeg_quality", "blur_sigma"):
            if key in d:
                d[key] = tuple(d[key])
        return build_config(cls, d, "train.augment")


class TrainTransform:
    """Augment then fit; randomness comes only from the ``rng`` passed in.

    Takes a PIL image or decoded HxWx3 uint8 pixels (the packed store). For the
    usual crop + flip, pixels are sliced without PIL; both forms draw the same
    random numbers in the same order and give the same pixels.
    """

    def __init__(self, spec: InputSpec, augment: Augment):
        self.spec = spec
        self.augment = augment

    def __call__(self, img: Image.Image | np.ndarray, rng: np.random.Generator) -> torch.Tensor:
        return to_tensor(self.pixels(img, rng))

    def pixels(self, img: Image.Image | np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """The augmented, fitted HxWx3 uint8 pixels (standardise them with :func:`standardise`)."""
        a, size = self.augment, self.spec.image_size
        arr = img if isinstance(img, np.ndarray) else None
        if arr is not None and (a.blur_prob or a.jpeg_prob or self.spec.policy != "crop" or min(arr.shape[:2]) < size):
            img, arr = Image.fromarray(arr), None  # PIL does everything but a plain crop
        if a.blur_prob and rng.random() < a.blur_prob:
            img = img.filter(ImageFilter.GaussianBlur(float(rng.uniform(*a.blur_sigma))))
        if a.jpeg_prob and rng.random() < a.jpeg_prob:
            buf = io.BytesIO()
            img.save(buf, format="JPEG", quality=int(rng.integers(a.jpeg_quality[0], a.jpeg_quality[1] + 1)))
            img = Image.open(io.BytesIO(buf.getvalue())).convert("RGB")
        h, w = arr.shape[:2] if arr is not None else (img.size[1], img.size[0])
        offset = None
        if self.spec.policy == "crop" and min(w, h) >= size:
            offset = (
                int(rng.integers(0, (w - size) // CROP_GRID + 1)) * CROP_GRID,
                int(rng.integers(0, (h - size) // CROP_GRID + 1)) * CROP_GRID,
            )
        flip = a.hflip and rng.random() < 0.5
        if arr is not None:
            left, top = offset
            out = arr[top : top + size, left : left + size]
            return np.ascontiguousarray(out[:, ::-1] if flip else out)
        img = fit(img, self.spec, offset)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return np.array(img)
