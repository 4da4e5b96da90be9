"""The perturbations, one implementation per step: PIL on one image, tensor operations on a batch, the same draw."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from realfake.detector.perturb import DRAW, apply_draw, perturb_batch, perturb_image
from realfake.detector.preprocess import Augment
from realfake.errors import RealfakeError


@pytest.fixture(scope="module")
def face(tiny_sample) -> np.ndarray:
    path = sorted(tiny_sample.rglob("*.jpg"))[0]
    with Image.open(path) as img:
        return np.array(img.convert("RGB"))


def _draw(**strengths) -> np.ndarray:
    return np.array([float(strengths.get(k, 0)) for k in DRAW])


def _gap(a, b) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float64) - np.asarray(b, dtype=np.float64)).mean())


@pytest.mark.parametrize("kind, strength, within", [("blur", 1.0, 0.6), ("blur", 2.0, 0.6), ("jpeg", 50, 0.5),
                                                    ("jpeg", 90, 0.5), ("downscale", 0.5, 0.6),
                                                    ("downscale", 0.75, 0.6)])
def test_the_tensor_step_gives_the_pil_steps_pixels_within_a_level(face, kind, strength, within):
    pil = perturb_image(Image.fromarray(face), kind, strength)
    tensor = perturb_batch(torch.from_numpy(face)[None], torch.from_numpy(_draw(**{kind: strength}))[None])[0]
    assert tensor.dtype == torch.uint8 and tensor.shape == face.shape
    assert _gap(tensor, pil) < within < _gap(face, pil), "the two agree more closely than the step changes the face"


def test_noise_has_the_drawn_sigma_and_the_same_pixels_on_both_paths(face):
    draw = _draw(noise=4.0, seed=11)
    pil = np.asarray(apply_draw(Image.fromarray(face), draw))
    tensor = perturb_batch(torch.from_numpy(face)[None], torch.from_numpy(draw)[None])[0].numpy()
    assert (pil.astype(np.float64) - face).std() == pytest.approx(4.0, rel=0.1)
    assert np.array_equal(pil, tensor), "one seed, one generator: the loader's noise is the device's"
    other = perturb_image(Image.fromarray(face), "noise", 4.0, seed=12)
    assert not np.array_equal(np.asarray(other), pil), "another seed, other noise"


def test_a_batch_perturbs_each_image_as_it_would_alone(face):
    faces = torch.from_numpy(np.stack([face, face[::-1].copy(), face[:, ::-1].copy()]))
    draws = torch.from_numpy(np.stack([_draw(blur=1.5, jpeg=60), _draw(downscale=0.6, noise=3, seed=5), _draw()]))
    together = perturb_batch(faces, draws)
    for i in range(3):
        assert torch.equal(together[i], perturb_batch(faces[i : i + 1], draws[i : i + 1])[0])
    assert torch.equal(together[2], faces[2]), "a draw of zeros leaves its image as it is"


def test_a_draw_takes_numbers_only_for_the_steps_that_can_happen():
    rng = np.random.default_rng(0)
    assert not Augment(hflip=False, jpeg_prob=0.0).draw(rng).any()
    assert rng.random() == np.random.default_rng(0).random(), "nothing drawn for a step of probability 0"
    every = Augment(hflip=False, blur_prob=1, jpeg_prob=1, resize_prob=1, noise_prob=1)
    blur, jpeg, scale, noise, seed = every.draw(np.random.default_rng(1))
    assert 0.1 <= blur <= 2.0 and 65 <= jpeg <= 95 and float(jpeg).is_integer() and 0.5 <= scale <= 1.0
    assert 1.0 <= noise <= 5.0 and seed > 0
    img = Image.fromarray(np.full((16, 16, 3), 100, np.uint8))
    assert np.array_equal(np.asarray(every.apply(img, np.random.default_rng(1))),
                          np.asarray(apply_draw(img, every.draw(np.random.default_rng(1))))), "apply is the draw's"


def test_bad_perturbation_requests_are_clear_errors(face):
    with pytest.raises(RealfakeError, match="unknown perturbation kind 'sharpen'"):
        perturb_image(Image.fromarray(face), "sharpen", 1.0)
    with pytest.raises(RealfakeError, match="noise perturbation needs a seed"):
        perturb_image(Image.fromarray(face), "noise", 1.0)
    with pytest.raises(RealfakeError, match=r"one draw \(blur, jpeg, downscale, noise, seed\) per image"):
        perturb_batch(torch.from_numpy(face)[None], torch.zeros(2, 5))
