"""The one preprocessing definition, shared by train, evaluate, robustness, predict and the served model.

An image becomes a model input in four steps: decode to RGB (:func:`load_rgb`), fit to the
:class:`InputSpec`'s size by its input policy (:meth:`Preprocessor.pixels`, HxWx3 uint8), batch, and
standardise where the model runs (:func:`to_model_input`). Every model takes that standardised RGB; its
network represents it (:class:`realfake.detector.network.Network`). Training adds random augmentations
*before* the same fit (:meth:`Preprocessor.train_pixels`); nothing else differs, and the parity tests hold
every caller to :func:`to_input`.

Representations (what the network sees, from the standardised pixels: :func:`represent`): ``rgb``,
``npr``, the neighbouring-pixel residual of Tan et al. (CVPR 2024): each pixel minus
the top-left pixel of its 2x2 block, ``x - up(down(x))`` with nearest-neighbour
down- and up-sampling, or ``rgb+npr``, both as six channels. Up-samplers correlate
neighbouring pixels in a fixed 2x2 pattern whatever their weights, so NPR shows that
pattern and little content; RGB keeps what a re-compression leaves of the rest.
``npr-norm`` is NPR divided by its root mean square over each image: blur, down-scaling and
re-compression shrink the residual everywhere, and this keeps its pattern at one scale.
``npr-white`` brings each image's radial power spectrum a quarter of the way to flat first
(:func:`whiten`): what a low-pass (re-compression, down-scaling) attenuated comes back partway,
while how fast the power falls with frequency, which tells smooth up-samplers apart, still
shows; then it takes ``npr-norm``. ``npr-white@S`` whitens by ``S`` instead of a quarter (0 < S <= 1;
``npr-white`` is ``npr-white@0.25``, bit for bit); ``npr-norm+npr-white`` gives the network both, as six
channels.

Input policies:

- ``crop``: take a window without resampling: a random ``image_size`` one for
  training, the centred :attr:`InputSpec.fit_size` one for scoring (the network reads its
  ``network_window`` centre, the spectral probe its ``probe_window``).
  Generator fingerprints live in the highest frequencies, and resizing smooths
  them away; cropping keeps them. The network is fully convolutional (global
  average pooling), so it scores a larger window than it trained on, and more
  pixels are more evidence once a perturbation has weakened the trace.
- ``resize``: resample the whole image to ``image_size`` (bilinear, with
  antialiasing), as the original notebook did.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
from PIL import Image

from realfake.errors import RealfakeError
from realfake.images import ImageSource, load_rgb

if TYPE_CHECKING:  # torch is imported where tensors are made: decoding alone (prepare) needs none
    import torch

#: facenet-pytorch's fixed_image_standardization: (x - 127.5) / 128.
PIXEL_CENTER = 127.5
PIXEL_SCALE = 128.0
POLICIES = ("crop", "resize")
REPRESENTATIONS = ("rgb", "npr", "rgb+npr", "npr-norm", "npr-white", "npr-norm+npr-white")
#: The smallest residual RMS ``npr-norm`` divides by (a tenth of one grey level, standardised): a flat image stays 0.
NPR_NORM_FLOOR = 0.1 / PIXEL_SCALE
#: ``npr-white``: the width of a radial frequency band whose mean power is divided out (cycles per pixel).
WHITEN_BAND = 1 / 48
#: ``npr-white``: how far :func:`whiten` flattens the spectrum (1: flat; 0: as it is).
WHITEN_STRENGTH = 0.25
#: The power of the 8-bit rounding per pixel, standardised: a uniform error of one grey level, (1/128)^2 / 12.
ROUNDING_POWER = (1 / PIXEL_SCALE) ** 2 / 12
#: Crop windows start on multiples of this: the 8x8 JPEG block grid (and with it the
#: phase of periodic up-sampling artifacts) is the same in every crop.
CROP_GRID = 8
#: The smallest input Inception-ResNet-V1 takes: below it a 3x3 convolution meets a 2x2 feature map.
MIN_SIZE = 75



def check_representation(representation: Any) -> None:
    """Raise a :class:`RealfakeError` that says what is allowed unless ``representation`` is one of
    :data:`REPRESENTATIONS`, where ``npr-white`` may also be ``npr-white@S`` (whitening strength 0 < S <= 1)."""
    parts = [p.partition("@") for p in representation.split("+")] if isinstance(representation, str) else []
    if "+".join(base for base, _, _ in parts) not in REPRESENTATIONS:
        raise RealfakeError(f"input representation is {representation!r}; it must be one of "
                            f"{', '.join(REPRESENTATIONS)} (npr-white also as npr-white@S, S its whitening "
                            "strength, 0 < S <= 1).")
    for base, at, strength in parts:
        if at and base != "npr-white":
            raise RealfakeError(f"input representation is {representation!r}: only npr-white takes a whitening "
                                f"strength (npr-white@0.5, say); {base} takes none.")
        if at and _strength(strength) is None:
            raise RealfakeError(f"input representation is {representation!r}: the whitening strength after '@' "
                                f"must be a number above 0 and at most 1 (npr-white@0.25 is npr-white), "
                                f"got {strength!r}.")


def _strength(text: str) -> float | None:
    """The whitening strength ``text`` names, if it is a number in (0, 1]."""
    try:
        s = float(text)
    except ValueError:
        return None
    return s if 0 < s <= 1 else None


@dataclass(frozen=True)
class InputSpec:
    """How an image becomes a model's input; saved with every model, and given back as saved.

    Two windows, both centred: the network reads its ``network_window`` (at least the ``image_size`` crop it
    trained on; None: that crop), and a model with a spectral probe reads a ``probe_window`` (at least the
    network's; None: the model has no probe) whose centre the network reads. Scoring fits each image to
    :attr:`fit_size`, the larger of the two. The model takes standardised RGB whatever its ``representation``
    (the network's; :class:`realfake.detector.network.Network` applies it).
    """

    image_size: int
    policy: str = "crop"
    representation: str = "rgb"
    network_window: int | None = None
    probe_window: int | None = None

    def __post_init__(self) -> None:
        if self.policy not in POLICIES:
            raise RealfakeError(f"input policy is {self.policy!r}; it must be one of {', '.join(POLICIES)}.")
        check_representation(self.representation)
        if not isinstance(self.image_size, int) or isinstance(self.image_size, bool) or self.image_size < MIN_SIZE:
            raise RealfakeError(
                f"image_size is {self.image_size!r}; it must be an integer >= {MIN_SIZE} "
                "(Inception-ResNet-V1 shrinks a smaller input below its 3x3 kernels)."
            )
        if "npr" in self.representation and self.image_size % 2:
            raise RealfakeError(
                f"image_size is {self.image_size}; the npr representation works on 2x2 blocks, so it must be even "
                f"(use {self.image_size + 1})."
            )
        if self.network_window is None:
            object.__setattr__(self, "network_window", self.image_size)
        self._check_window("network_window", self.network_window, "image_size", self.image_size)
        if self.probe_window is not None:
            self._check_window("probe_window", self.probe_window, "network_window", self.network_window)

    def _check_window(self, name: str, side: Any, inner: str, least: int) -> None:
        if not isinstance(side, int) or isinstance(side, bool) or side < least:
            raise RealfakeError(f"{name} is {side!r}; it must be an integer >= {inner} ({least}), or null for "
                                f"{inner} itself.")
        if self.policy != "crop" and side != least:
            raise RealfakeError(f"{name} is {side} with input policy {self.policy!r}; a larger window needs the "
                                f"crop policy (resize fits the whole image to image_size). Set {name} to null.")
        if "npr" in self.representation and side % 2:
            raise RealfakeError(f"{name} is {side}; the npr representation works on 2x2 blocks, so it must be "
                                f"even (use {side + 1}).")

    @property
    def fit_size(self) -> int:
        """The side of the square scoring fits an image to: the probe's window, else the network's."""
        return self.network_window if self.probe_window is None else self.probe_window

    @property
    def channels(self) -> int:
        """The number of input channels the network takes: 3, or 6 for two representations joined by ``+``."""
        return 3 * len(self.representation.split("+"))

    def to_dict(self) -> dict[str, Any]:
        """As saved in a model file."""
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "InputSpec":
        """As read from a model file (:data:`realfake.detector.modelfile.MODEL_FORMAT`)."""
        return cls(**d)


def centre_box(height: int, width: int, side: int | None) -> tuple[int, int, int, int]:
    """(top, left, height, width) of the centred ``side`` window of a ``height`` x ``width`` input, on the JPEG
    grid; the whole input where ``side`` is None or no smaller."""
    if side is None or (side >= height and side >= width):
        return 0, 0, height, width
    left, top = centre_offset(width, height, side)
    return top, left, side, side


def fit(img: Image.Image, spec: InputSpec, offset: tuple[int, int] | None = None,
        size: int | None = None) -> Image.Image:
    """Fit an RGB image to a ``size`` square (default ``spec.fit_size``, scoring's) by the input policy.

    ``crop`` takes the window at ``offset`` (left, top), centred (on the JPEG
    grid) when None; an image smaller than the window is first scaled up so its
    shorter side fits.
    """
    size = spec.fit_size if size is None else size
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
    """:func:`fit` on decoded HxWx3 uint8 pixels (the packed store), to HxWx3 uint8 (a new array).

    A crop is a slice, with no round trip through PIL; anything else goes through :func:`fit`.
    """
    h, w = arr.shape[:2]
    size = spec.fit_size
    if spec.policy == "crop" and min(w, h) >= size:
        left, top = centre_offset(w, h, size)
        return np.array(arr[top : top + size, left : left + size])  # a copy even of the whole (read-only) array
    return np.array(fit(Image.fromarray(arr), spec))


def standardise(x: torch.Tensor) -> torch.Tensor:
    """A batch of BxHxWx3 uint8 pixels -> Bx3xHxW float32, standardised as facenet expects.

    Runs where ``x`` is: batches travel as uint8 (a quarter of the bytes of
    float32) and are standardised on the device. The result is channels_last in
    memory (the permute is free). The arithmetic is exact in float32, so CPU and
    GPU give the same bits.
    """
    return (x.permute(0, 3, 1, 2).float() - PIXEL_CENTER) / PIXEL_SCALE


def to_model_input(x: torch.Tensor, device: torch.device,
                   memory_format: torch.memory_format | None = None) -> torch.Tensor:
    """A batch of uint8 pixels on ``device`` as every model takes it: copied (asynchronously from pinned
    memory), standardised RGB there, laid out in ``memory_format`` (default: channels_last on CUDA,
    contiguous elsewhere). The network applies its representation itself
    (:class:`realfake.detector.network.Network`)."""
    import torch

    x = standardise(x.to(device, non_blocking=True))
    if memory_format is None:
        memory_format = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return x.contiguous(memory_format=memory_format)


def represent(x: torch.Tensor, representation: str) -> torch.Tensor:
    """A standardised Bx3xHxW batch in ``representation`` (see the module docstring)."""
    import torch

    if representation == "npr":
        return neighbouring_pixel_residual(x)
    if "+" in representation:  # both, as six channels
        return torch.cat([represent(x, part) for part in representation.split("+")], dim=1)
    name, _, strength = representation.partition("@")
    if name in ("npr-norm", "npr-white"):
        r = neighbouring_pixel_residual(whiten(x, float(strength) if strength else None) if name == "npr-white" else x)
        return r / r.square().mean(dim=(1, 2, 3), keepdim=True).sqrt().clamp_min(NPR_NORM_FLOOR)
    return x


def whiten(x: torch.Tensor, strength: float | None = None) -> torch.Tensor:
    """Each image of a standardised Bx3xHxW batch with its radial power spectrum flattened by ``strength``
    (default :data:`WHITEN_STRENGTH`), Wiener-style.

    Every Fourier coefficient is scaled by ``(sqrt(max(P - N, 0)) / P) ** strength``, where ``P`` is the
    mean power of its radial band (:data:`WHITEN_BAND` wide, the three channels together) and ``N`` the
    power of the 8-bit rounding (:data:`ROUNDING_POWER`). At strength 1 the spectrum comes out flat: blur,
    antialiased resampling and re-compression are near-isotropic low-pass filters, a smooth gain per
    radius, and wherever what they attenuated still stands above the rounding it is back at unit scale
    (where it does not, it is left small rather than the rounding amplified). At 0.5 every band's power
    is brought halfway there on a log scale: the spectrum's slope is halved, so how fast an image's
    power falls with frequency, which tells smoother up-samplers apart, still shows; the default, 0.25,
    goes a quarter of the way. Phases, and with them the up-sampler's 2x2 pattern, stay.
    """
    import torch

    strength = WHITEN_STRENGTH if strength is None else strength
    b, c, h, w = x.shape
    spec = torch.fft.rfft2(x.float(), norm="ortho")  # ortho: white noise of variance v has power v per coefficient
    band, counts = _radial_bands(h, w, x.device)
    power = (spec.real.square() + spec.imag.square()).sum(1).flatten(1)  # B x coefficients, channels summed
    totals = torch.zeros(b, len(counts), device=x.device).index_add_(1, band, power)
    mean_power = totals / (counts * c)
    gain = ((mean_power - ROUNDING_POWER).clamp_min(0).sqrt() / mean_power.clamp_min(ROUNDING_POWER)) ** strength
    return torch.fft.irfft2(spec * gain[:, band].view(b, 1, h, w // 2 + 1), s=(h, w), norm="ortho")


@lru_cache(maxsize=16)
def _radial_bands(h: int, w: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """For an HxW image's rfft2 coefficients: each one's radial band (flattened) and each band's count
    (at least 1), on ``device``; made once per shape, so a batch on a GPU waits for no host round trip."""
    import torch

    fy, fx = torch.fft.fftfreq(h), torch.fft.rfftfreq(w)
    band = (torch.sqrt(fy[:, None] ** 2 + fx[None, :] ** 2) / WHITEN_BAND).long().flatten()
    counts = torch.bincount(band).float().clamp_min(1)
    return band.to(device), counts.to(device)


def neighbouring_pixel_residual(x: torch.Tensor) -> torch.Tensor:
    """NPR of a Bx3xHxW batch (even H and W): each pixel minus the top-left pixel of its 2x2 block."""
    anchor = x[:, :, ::2, ::2]
    return x - anchor.repeat_interleave(2, dim=2).repeat_interleave(2, dim=3)


def to_tensor(img: Image.Image | np.ndarray) -> torch.Tensor:
    """HxWx3 uint8 RGB (an image or an array) -> 3xHxW float32, standardised as facenet expects."""
    import torch

    arr = np.array(img, dtype=np.uint8)  # a copy: torch wants a writable array
    return standardise(torch.from_numpy(arr)[None])[0].contiguous()


def to_input(source: ImageSource, spec: InputSpec, name: str | None = None) -> torch.Tensor:
    """The evaluation transform of one image: decode, fit (centre crop or resize), standardise."""
    import torch

    pixels = torch.from_numpy(Preprocessor(spec).load(source, name))[None]
    return to_model_input(pixels, torch.device("cpu"))[0]


#: Where an :class:`Augment` is set.
AUGMENTS = "train.augment, or train.spectral.augment for the spectral probe"


@dataclass(frozen=True)
class Augment:
    """Training-only augmentations (``train.augment`` in params.yaml).

    JPEG re-compression and blur follow Wang et al. (CVPR 2020), who found them
    the key to detectors that survive real-world post-processing.
    """

    #: The probabilities of the augmentations that change pixels (all but the flip).
    PERTURBING: ClassVar[tuple[str, ...]] = ("blur_prob", "jpeg_prob", "resize_prob", "noise_prob")

    hflip: bool = True
    jpeg_prob: float = 0.1  # share of the images re-compressed as JPEG
    jpeg_quality: tuple[int, int] = (65, 95)
    blur_prob: float = 0.0
    blur_sigma: tuple[float, float] = (0.1, 2.0)
    resize_prob: float = 0.0  # down-scale by a factor in resize_scale, then back up (bicubic)
    resize_scale: tuple[float, float] = (0.5, 1.0)
    noise_prob: float = 0.0  # additive Gaussian noise, sigma in noise_sigma (0-255 units)
    noise_sigma: tuple[float, float] = (1.0, 5.0)

    def __post_init__(self) -> None:
        for name in self.PERTURBING:
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and not isinstance(value, bool) and 0 <= value <= 1):
                raise RealfakeError(f"augment.{name} must be a probability in [0, 1], got {value!r} ({AUGMENTS}).")
        for name in ("jpeg_quality", "blur_sigma", "resize_scale", "noise_sigma"):
            lo, hi = getattr(self, name)
            if not 0 <= lo <= hi:
                raise RealfakeError(f"augment.{name} must be a range [lo, hi] with 0 <= lo <= hi ({AUGMENTS}).")

    def draw(self, rng: np.random.Generator) -> np.ndarray:
        """One image's perturbation drawn from ``rng``: a row of :data:`~realfake.detector.perturb.DRAW` (blur sigma,
        JPEG quality, scaling factor, noise sigma, each 0 when not drawn, and the noise's seed). Only the steps
        whose probability is above 0 take numbers from ``rng``."""
        from realfake.detector.perturb import DRAW  # torch-free callers (prepare) never import the tensor steps

        out = np.zeros(len(DRAW))
        for column, (prob, span) in enumerate(((self.blur_prob, self.blur_sigma), (self.jpeg_prob, self.jpeg_quality),
                                               (self.resize_prob, self.resize_scale),
                                               (self.noise_prob, self.noise_sigma))):
            if prob and rng.random() < prob:
                out[column] = rng.integers(span[0], span[1] + 1) if column == 1 else rng.uniform(*span)
        if out[3]:
            out[4] = rng.integers(2**31)
        return out

    def apply(self, img: Image.Image, rng: np.random.Generator) -> Image.Image:
        """Blur, JPEG, down-then-up scaling and noise, each with its probability, in this order (:meth:`draw`, then
        :func:`~realfake.detector.perturb.apply_draw`)."""
        from realfake.detector.perturb import apply_draw

        return apply_draw(img, self.draw(rng))

    @property
    def needs_pil(self) -> bool:
        """Whether anything besides crop and flip is on (those run on PIL images)."""
        return any(getattr(self, name) for name in self.PERTURBING)


#: No flip, no perturbation: windows as they are (the clean pass of the probe's, the mix's and the heads' windows).
AS_THEY_ARE = Augment(hflip=False, jpeg_prob=0.0)


@dataclass(frozen=True)
class Preprocessor:
    """How images become model inputs for one :class:`InputSpec` (and, in training, an :class:`Augment`).

    Decoding (:func:`load_rgb`) comes before, and :meth:`model_input` after, on the device.

    :meth:`pixels` (evaluation) and :meth:`train_pixels` (training) take a PIL image
    or decoded HxWx3 uint8 pixels (the packed store) and give HxWx3 uint8 pixels;
    batches of those go to :func:`to_model_input` on the device.
    """

    spec: InputSpec
    augment: Augment | None = None

    def model_input(self, batch: torch.Tensor, device: torch.device) -> torch.Tensor:
        """A uint8 pixel batch standardised on ``device`` (:func:`to_model_input`)."""
        return to_model_input(batch, device)

    def load(self, source: ImageSource, name: str | None = None) -> np.ndarray:
        """Decode ``source`` and fit it: the evaluation pixels of one image file or bytes."""
        return self.pixels(load_rgb(source, name))

    def pixels(self, img: Image.Image | np.ndarray) -> np.ndarray:
        """The scoring fit (the centred ``spec.fit_size`` crop, or the resize) as HxWx3 uint8."""
        if isinstance(img, np.ndarray):
            return fit_array(img, self.spec)
        return np.array(fit(img, self.spec))

    def train_pixels(self, img: Image.Image | np.ndarray, rng: np.random.Generator) -> np.ndarray:
        """Augment, then fit at a random offset, with randomness only from ``rng``.

        For the usual crop + flip, pixels are sliced without PIL; a PIL image and
        its decoded pixels draw the same random numbers in the same order and give
        the same result.
        """
        a, size = self.augment or Augment(hflip=False), self.spec.image_size
        arr = img if isinstance(img, np.ndarray) else None
        if arr is not None and (a.needs_pil or self.spec.policy != "crop" or min(arr.shape[:2]) < size):
            img, arr = Image.fromarray(arr), None  # PIL does everything but a plain crop
        if arr is None:
            img = a.apply(img, rng)
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
        img = fit(img, self.spec, offset, size)
        if flip:
            img = img.transpose(Image.FLIP_LEFT_RIGHT)
        return np.array(img)
