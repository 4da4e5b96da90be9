"""Synthesised fakes: random up-samplers applied to real images, as training's extra fakes."""

from __future__ import annotations

import numpy as np
import pytest

from helpers.images import random_photo
from realfake.detector.preprocess import InputSpec, Preprocessor
from realfake.errors import ConfigError
from realfake.training.config import TrainConfig
from realfake.training.data import TrainImages, split_pixels, targets
from realfake.training.synthetic import (
    ARCHITECTURES,
    Synthesised,
    Synthetic,
    random_upsample,
    synthesise,
    upsampled,
)


@pytest.fixture
def real() -> np.ndarray:
    return np.asarray(random_photo(seed=4, size=64))


def test_a_synthesised_fake_has_the_real_images_shape_and_is_a_function_of_the_rng(real):
    a = synthesise(real, np.random.default_rng(1))
    b = synthesise(real, np.random.default_rng(1))
    c = synthesise(real, np.random.default_rng(2))
    assert a.dtype == np.uint8 and a.shape == real.shape
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert np.abs(a.astype(int) - real).mean() > 1, "the image went through a lossy down-up path"


def test_synthesised_gives_each_index_its_own_fake_and_the_same_one_every_time(real):
    other = np.asarray(random_photo(seed=5, size=64))
    made = Synthesised([real, other], seed=0, stream=7)
    assert len(made) == 2 and np.array_equal(made[0], made[0]) and made[0].shape == real.shape
    assert np.array_equal(made[1], synthesise(other, np.random.default_rng([0, 7, 1])))
    assert not np.array_equal(made[0], Synthesised([real], seed=0, stream=8)[0]), "another stream, another fake"


def test_every_architecture_is_drawn_and_keeps_the_mean(real):
    base = real.astype(np.float32).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    seen = set()
    for seed in range(60):
        rng = np.random.default_rng(seed)
        arch = ARCHITECTURES[int(np.random.default_rng(seed).integers(len(ARCHITECTURES)))]
        up = random_upsample(base, rng)
        seen.add(arch)
        assert up.shape == (64, 64, 3)
        assert abs(float(up.mean()) - float(base.mean())) < 2.0, arch  # every operator keeps the DC gain
    assert seen == set(ARCHITECTURES)


def test_synthetic_settings_are_checked():
    with pytest.raises(ConfigError, match=r"train.synthetic.prob must be in \[0, 1\], got 1.5"):
        Synthetic(prob=1.5)
    with pytest.raises(ConfigError, match="train.synthetic.jpeg_quality"):
        TrainConfig.from_params({"synthetic": {"jpeg_quality": [95, 85]}})
    assert TrainConfig.from_params({"synthetic": {"prob": 0.5}}).synthetic == Synthetic(prob=0.5)
    assert TrainConfig().synthetic == Synthetic() and Synthetic().prob == 0.25


def test_training_items_replace_fakes_by_synthesised_ones_and_keep_the_classes(tiny_data):
    pixels, t = split_pixels(tiny_data, "train", None), targets(tiny_data, "train")
    pre = Preprocessor(InputSpec(80, "crop"))
    plain = TrainImages(pixels, t, pre, seed=3)
    always = TrainImages(pixels, t, pre, seed=3, synthetic=Synthetic(prob=1.0))
    fake, real = int(np.flatnonzero(t == 1)[0]), int(np.flatnonzero(t == 0)[0])
    x_fake, y_fake = always[(0, fake)]
    assert y_fake == 1.0 and not np.array_equal(x_fake.numpy(), plain[(0, fake)][0].numpy())
    assert np.array_equal(always[(0, real)][0].numpy(), plain[(0, real)][0].numpy()), "reals stay as they are"
    assert np.array_equal(always[(0, fake)][0].numpy(), x_fake.numpy()), "seeded by (seed, epoch, index)"
    never = TrainImages(pixels, t, pre, seed=3, synthetic=Synthetic(prob=0.0))
    assert np.array_equal(never[(1, fake)][0].numpy(), plain[(1, fake)][0].numpy())


def test_an_enlarged_photo_is_a_resize_of_the_same_base_and_nothing_after_it(real):
    """upsampled(generator=False), what the coherence's head learns as a real (train.synthetic_head.enlarged_reals):
    the box-filtered half-size image brought back by a nearest, bilinear or bicubic resize, each drawn, and nothing
    after it; synthesise gives it the noise and the re-compression every synthesised image gets."""
    from PIL import Image

    from realfake.upsamplers import resize_upsample

    base = real.astype(np.float32).reshape(32, 2, 32, 2, 3).mean(axis=(1, 3))
    resizes = {f: resize_upsample(base, f).astype(np.float32) for f in (Image.NEAREST, Image.BILINEAR, Image.BICUBIC)}
    drawn = set()
    for seed in range(20):
        up = upsampled(real, np.random.default_rng(seed), generator=False)
        drawn |= {f for f, r in resizes.items() if np.array_equal(up, r)}
        assert any(np.array_equal(up, r) for r in resizes.values()), seed
        made = synthesise(real, np.random.default_rng(seed), generator=False)
        assert made.shape == real.shape and np.array_equal(made, synthesise(real, np.random.default_rng(seed),
                                                                            generator=False))
    assert drawn == set(resizes)
    generated = [upsampled(real, np.random.default_rng(seed)) for seed in range(20)]
    assert sum(not any(np.array_equal(g, r) for r in resizes.values()) for g in generated) >= 15, "mostly generators"
    made = Synthesised([real], seed=0, stream=9, generator=False)
    assert np.array_equal(made[0], synthesise(real, np.random.default_rng([0, 9, 0]), generator=False))
