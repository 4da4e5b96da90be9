"""What the embedded sample is: :class:`SampleConfig` (the ``data.sample`` section of params.yaml).

Also the numbers every generator module shares: the id space of the Kaggle
data, the held-out families, and the independent random streams derived from
the data-set seed (each part of the sample draws from its own stream, so
changing one part never changes another's files).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Mapping

from realfake.config import build_config, is_int, is_number
from realfake.data.layout import SPLITS
from realfake.errors import ConfigError

#: Real ids are drawn without replacement from 1..MAX_REAL_ID (5 digits, zero-padded).
MAX_REAL_ID = 69_999

# Independent random streams derived from the data-set seed.
STREAM_WEIGHTS = 1
STREAM_IDS = 2
STREAM_SHUFFLE = 3
STREAM_IMAGE = 4
STREAM_CALIBRATION = 5
STREAM_HELDOUT_WEIGHTS = 6
STREAM_HELDOUT_IMAGE = 7
STREAM_HELDOUT_IDS = 8

#: Held-out fake families (never trained on): how each up-samples, before its own seeded 3x3
#: convolution whose sharpening is calibrated so that its fakes compress like the reals
#: (:mod:`realfake.data.sample.upsampling`). Training's fakes come from a near-bilinear
#: transposed convolution with small seeded jitter; these are other architectures.
HELDOUT_FAMILIES: dict[str, str] = {
    "nearest": "nearest-neighbour up-sampling (each pixel to a 2x2 block)",
    "bilinear": "bilinear transposed convolution, without training's seeded jitter and phase gains",
    "bicubic": "bicubic resize, then convolution (resize-then-convolve)",
    "tconv": "transposed convolution with a seeded random 4x4 kernel (random positive taps per phase)",
    "subpixel": "sub-pixel convolution: a seeded 3x3 kernel per output phase, then pixel shuffle",
}


class SampleConfigError(ConfigError):
    """The ``data.sample`` parameters are invalid."""


@dataclass(frozen=True)
class Sizes:
    """Images *per class* in each split (``data.sample.sizes``)."""

    train: int = 1000
    valid: int = 250
    test: int = 250

    def of(self, split: str) -> int:
        """The size of ``split``."""
        return int(getattr(self, split))

    def problems(self) -> list[str]:
        """What is wrong with the sizes (empty if nothing)."""
        return [f"sizes.{s} must be a non-negative integer, got {getattr(self, s)!r}"
                for s in SPLITS if not is_int(getattr(self, s)) or getattr(self, s) < 0]


@dataclass(frozen=True)
class Heldout:
    """The held-out fake families (``data.sample.heldout``): never trained on, for the cross-generator check."""

    size: int = 250  # images per family; 0 = none
    families: tuple[str, ...] = tuple(HELDOUT_FAMILIES)

    def __post_init__(self) -> None:
        if isinstance(self.families, list):
            object.__setattr__(self, "families", tuple(self.families))

    def problems(self) -> list[str]:
        """What is wrong with the held-out settings (empty if nothing)."""
        out = []
        if not is_int(self.size) or self.size < 0:
            out.append(f"heldout.size must be a non-negative integer, got {self.size!r}")
        families = self.families if isinstance(self.families, (tuple, list)) else [self.families]
        unknown = [f for f in families if f not in HELDOUT_FAMILIES]
        if unknown or not isinstance(self.families, (tuple, list)):
            out.append(f"heldout.families must be a list of {', '.join(HELDOUT_FAMILIES)}, got {self.families!r}")
        elif len(set(families)) != len(families):
            out.append(f"heldout.families lists a family twice: {list(families)}")
        return out


@dataclass(frozen=True)
class SampleConfig:
    """What to generate, as in params.yaml's ``data.sample``: seed, sizes per class, image size,
    fingerprint strength, JPEG quality range, held-out family."""

    seed: int = 0
    sizes: Sizes = field(default_factory=Sizes)
    image_size: int = 256
    strength: float = 1.0
    jpeg_quality: tuple[int, int] = (85, 95)
    heldout: Heldout = field(default_factory=Heldout)

    def __post_init__(self) -> None:
        problems = self.sizes.problems() + self.heldout.problems() + self._image_problems()
        if not is_int(self.seed) or self.seed < 0:
            problems.append(f"seed must be a non-negative integer, got {self.seed!r}")
        if not problems and self.total_per_class > MAX_REAL_ID:
            problems.append(
                f"at most {MAX_REAL_ID} images per class in all splits together, got {self.total_per_class}"
            )
        if problems:
            raise SampleConfigError("invalid sample config: " + "; ".join(problems))
        object.__setattr__(self, "strength", float(self.strength))
        object.__setattr__(self, "jpeg_quality", tuple(int(v) for v in self.jpeg_quality))

    def _image_problems(self) -> list[str]:
        out = []
        if not is_int(self.image_size) or self.image_size < 32 or self.image_size % 2:
            out.append(f"image_size must be an even integer >= 32, got {self.image_size!r}")
        if not is_number(self.strength) or self.strength < 0:
            out.append(f"strength must be a finite number >= 0, got {self.strength!r}")
        q = self.jpeg_quality
        pair = isinstance(q, (tuple, list)) and len(q) == 2 and all(is_int(v) for v in q)
        if not (pair and 1 <= q[0] <= q[1] <= 100):
            out.append(f"jpeg_quality must be two integers lo <= hi in 1..100, got {q!r}")
        return out

    @property
    def total_per_class(self) -> int:
        """Images per class over all splits."""
        return sum(self.sizes.of(s) for s in SPLITS)

    @classmethod
    def from_params(cls, params: Mapping[str, Any] | None) -> "SampleConfig":
        """The config from params.yaml's ``data.sample`` mapping (all keys optional, unknown keys named)."""
        if params is not None and not isinstance(params, Mapping):
            raise SampleConfigError(f"data.sample must be a mapping, got {type(params).__name__}")
        return build_config(cls, params, "data.sample")
