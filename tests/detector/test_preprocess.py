"""One preprocessing for train, evaluate, predict and serving; bad images get a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from helpers.images import jpeg_bytes, random_photo
from realfake.data.layout import image_root
from realfake.detector.preprocess import (
    Augment,
    InputSpec,
    Preprocessor,
    fit,
    represent,
    standardise,
    to_input,
    to_model_input,
    to_tensor,
)
from realfake.detector.scoring import ScoringImages
from realfake.errors import RealfakeError
from realfake.images import ImageFiles
from realfake.training.config import TrainConfig


@pytest.fixture
def photo() -> Image.Image:
    return random_photo()


def test_crop_keeps_pixels_exactly_and_resize_resamples(photo):
    spec = InputSpec(image_size=128, policy="crop")
    x = to_tensor(fit(photo, spec))
    window = np.asarray(photo)[64:192, 64:192]  # centred, on the 8-px JPEG grid
    assert torch.equal(x, (torch.from_numpy(window.copy()).permute(2, 0, 1).float() - 127.5) / 128)
    r = to_tensor(fit(photo, InputSpec(image_size=128, policy="resize")))
    assert r.shape == (3, 128, 128) and not torch.equal(r, x)


def test_standardisation_matches_facenet(photo):
    from facenet_pytorch import fixed_image_standardization

    spec = InputSpec(image_size=128, policy="crop")
    raw = torch.from_numpy(np.asarray(fit(photo, spec)).copy()).permute(2, 0, 1).float()
    assert torch.allclose(to_tensor(fit(photo, spec)), fixed_image_standardization(raw))


def test_bytes_path_and_pil_give_the_same_input(tmp_path, photo):
    data = jpeg_bytes(photo, quality=90)
    path = tmp_path / "x.jpg"
    path.write_bytes(data)
    spec = InputSpec(128, "crop")
    a, b = to_input(data, spec), to_input(path, spec)
    c = to_input(Image.open(io.BytesIO(data)), spec)
    assert torch.equal(a, b) and torch.equal(a, c)


def test_eval_dataset_predict_and_pyfunc_share_preprocessing(tiny_sample):
    """Parity: the scoring dataset (validation, evaluate, robustness), predict and the served model agree."""
    import pandas as pd

    from realfake.images import load_rgb

    rows = pd.read_csv(tiny_sample / "test.csv", index_col=0).head(3)
    paths = [image_root(tiny_sample) / rel for rel in rows["path"]]
    for spec in (InputSpec(96, "crop"), InputSpec(96, "resize")):
        pre = Preprocessor(spec)
        from_files = ScoringImages(ImageFiles(paths), pre)  # decoded arrays, as evaluate reads them
        from_images = ScoringImages([load_rgb(p) for p in paths], pre)  # PIL images, as predict and serving have them
        for i, path in enumerate(paths):
            x = to_model_input(from_files[i][None], torch.device("cpu"))[0]
            assert torch.equal(x, to_input(path, spec))
            assert torch.equal(x, to_input(path.read_bytes(), spec))
            assert torch.equal(x, to_model_input(from_images[i][None], torch.device("cpu"))[0])


@pytest.mark.parametrize(
    "spec, augment",
    [
        (InputSpec(96, "crop"), Augment(hflip=True)),  # the slicing fast path
        (InputSpec(96, "crop"), Augment(hflip=True, jpeg_prob=0.5, blur_prob=0.5)),
        (InputSpec(96, "resize"), Augment(hflip=True)),
        (InputSpec(300, "crop"), Augment(hflip=True)),  # smaller than the window: scaled up first
    ],
)
def test_train_transform_gives_the_same_pixels_from_decoded_arrays_and_images(photo, spec, augment):
    """The packed store feeds decoded arrays; the files feed PIL images. Same draws, same bits."""
    pre = Preprocessor(spec, augment)
    arr = np.asarray(photo)
    for seed in range(8):
        a = pre.train_pixels(arr, np.random.default_rng([seed, 1, 2]))
        b = pre.train_pixels(photo, np.random.default_rng([seed, 1, 2]))
        assert a.dtype == np.uint8 and a.shape == (spec.image_size, spec.image_size, 3)
        assert np.array_equal(a, b)


def test_standardise_on_a_batch_equals_to_tensor_per_image(photo):
    crops = [fit(photo, InputSpec(80, "crop"), (8 * k, 0)) for k in range(3)]
    batch = torch.from_numpy(np.stack([np.asarray(c) for c in crops]))
    out = standardise(batch)
    assert out.shape == (3, 3, 80, 80) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(out[k], to_tensor(c)) for k, c in enumerate(crops))


def test_small_images_are_scaled_up_before_cropping():
    img = Image.new("RGB", (60, 100), (10, 20, 30))
    assert fit(img, InputSpec(96, "crop")).size == (96, 96)


def test_train_pixels_are_a_function_of_the_rng(photo):
    pre = Preprocessor(InputSpec(96, "crop"), Augment(hflip=True, jpeg_prob=0.5, blur_prob=0.5))
    a = pre.train_pixels(photo, np.random.default_rng([1, 2, 3]))
    b = pre.train_pixels(photo, np.random.default_rng([1, 2, 3]))
    c = pre.train_pixels(photo, np.random.default_rng([1, 2, 4]))
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    assert a.shape == (96, 96, 3)


def test_input_spec_rejects_unknown_policy():
    from realfake.errors import RealfakeError

    with pytest.raises(RealfakeError, match="input policy is 'squash'"):
        InputSpec(128, "squash")


def test_input_spec_rejects_sizes_the_network_or_npr_cannot_take():
    from realfake.detector.network import build_model
    from realfake.detector.preprocess import MIN_SIZE
    from realfake.errors import RealfakeError

    model = build_model("none", dropout=0.0).eval()
    with torch.no_grad():
        model(torch.zeros(1, 3, MIN_SIZE, MIN_SIZE))  # the smallest size allowed runs
        with pytest.raises(RuntimeError, match="Kernel size can't be greater"):
            model(torch.zeros(1, 3, MIN_SIZE - 1, MIN_SIZE - 1))  # and one less does not
    with pytest.raises(RealfakeError, match=r"image_size is 64; it must be an integer >= 75 \(Inception"):
        InputSpec(64, "crop")
    with pytest.raises(RealfakeError, match=r"npr representation works on 2x2 blocks, so it must be even \(use 82\)"):
        InputSpec(81, "crop", representation="npr")
    assert InputSpec(81, "crop").image_size == 81  # rgb takes odd sizes


def test_npr_is_each_pixel_minus_the_top_left_of_its_2x2_block(photo):
    from realfake.detector.preprocess import neighbouring_pixel_residual

    x = standardise(torch.from_numpy(np.array(photo)[None]))
    r = neighbouring_pixel_residual(x)
    assert torch.equal(r[:, :, ::2, ::2], torch.zeros_like(r[:, :, ::2, ::2]))
    assert torch.equal(r[:, :, 1::2, 1::2], x[:, :, 1::2, 1::2] - x[:, :, ::2, ::2])
    assert torch.equal(r[:, :, ::2, 1::2], x[:, :, ::2, 1::2] - x[:, :, ::2, ::2])


def test_every_model_takes_standardised_rgb_and_its_network_applies_the_representation(tmp_path, photo):
    from realfake.detector.modelfile import load_model_file, save_model_file
    from realfake.detector.network import build_model

    spec = InputSpec(96, "crop", representation="npr")
    assert InputSpec.from_dict(spec.to_dict()) == spec
    path = tmp_path / "x.png"
    photo.save(path)
    pixels = torch.from_numpy(Preprocessor(spec).load(path))[None]
    x = Preprocessor(spec).model_input(pixels, torch.device("cpu"))
    assert torch.equal(x[0], to_input(path, spec)) and torch.equal(x[0], to_input(path, InputSpec(96, "crop")))
    inception = build_model("none", dropout=0.0).eval()
    save_model_file(tmp_path / "m.pt", inception.state_dict(), spec, {})
    model, loaded, _ = load_model_file(tmp_path / "m.pt")
    assert loaded == spec  # the spec as saved
    with torch.no_grad():
        # the same logit as the network fed the representation (the loaded model's batch norms folded: to
        # float32's rounding), and not the one it gives the plain image
        near, far = ((model(x) - inception(z)).abs().max() for z in (represent(x, "npr"), x))
        assert near < 1e-5 and far > 100 * near
    with pytest.raises(RealfakeError, match="input representation is 'fft'"):
        InputSpec(96, "crop", representation="fft")


def test_resize_and_noise_augmentations_are_seeded_and_do_what_they_say(photo):
    pre = Preprocessor(InputSpec(96, "crop"), Augment(hflip=False, resize_prob=1.0, resize_scale=(0.5, 0.5)))
    a = pre.train_pixels(photo, np.random.default_rng([1, 2]))
    assert np.array_equal(a, pre.train_pixels(np.asarray(photo), np.random.default_rng([1, 2])))
    crop = np.asarray(photo, dtype=float)
    def hf(img):
        return float(np.mean(np.diff(np.asarray(img, dtype=float), axis=1) ** 2))
    assert hf(a) < 0.5 * hf(crop), "half-size and back loses the finest detail"
    noisy = Preprocessor(InputSpec(96, "crop"), Augment(hflip=False, noise_prob=1.0, noise_sigma=(5.0, 5.0)))
    b = noisy.train_pixels(Image.new("RGB", (128, 128), (128, 128, 128)), np.random.default_rng(0))
    assert 3.5 < b.astype(float).std() < 6.5
    with pytest.raises(RealfakeError, match=r"augment.resize_prob must be a probability in \[0, 1\]"):
        Augment(resize_prob=2)


def test_rgb_plus_npr_is_both_as_six_channels(tmp_path, photo):
    from realfake.detector.preprocess import neighbouring_pixel_residual

    pixels = torch.from_numpy(np.array(photo)[None])
    both = represent(to_model_input(pixels, torch.device("cpu")), "rgb+npr")
    rgb = to_model_input(pixels, torch.device("cpu"))
    assert both.shape[1] == 6 and InputSpec(96, "crop", representation="rgb+npr").channels == 6
    assert torch.equal(both[:, :3], rgb) and torch.equal(both[:, 3:], neighbouring_pixel_residual(rgb))
    assert InputSpec(96, "crop", representation="npr").channels == 3
    with pytest.raises(RealfakeError, match=r"npr representation works on 2x2 blocks"):
        InputSpec(81, "crop", representation="rgb+npr")


def test_npr_norm_is_the_residual_at_unit_rms_per_image_whatever_its_amplitude(photo):
    from realfake.detector.preprocess import neighbouring_pixel_residual

    sharp = np.array(photo)
    soft = np.array(photo.filter(ImageFilter.GaussianBlur(1.0)))
    flat = np.full_like(sharp, 90)
    x = represent(to_model_input(torch.from_numpy(np.stack([sharp, soft, flat])), torch.device("cpu")), "npr-norm")
    raw = neighbouring_pixel_residual(to_model_input(torch.from_numpy(np.stack([sharp, soft])), torch.device("cpu")))
    rms = x.square().mean(dim=(1, 2, 3)).sqrt()
    assert raw[1].square().mean() < 0.5 * raw[0].square().mean()  # blur shrinks the plain residual ...
    assert torch.allclose(rms[:2], torch.ones(2), atol=1e-5)  # ... each image's normalised one has RMS 1
    assert torch.allclose(x[0] * raw[0].square().mean().sqrt(), raw[0], atol=1e-6)  # the same pattern, rescaled
    assert torch.equal(x[2], torch.zeros_like(x[2]))  # a flat image has no residual to scale up
    assert InputSpec(96, "crop", representation="npr-norm").channels == 3
    with pytest.raises(RealfakeError, match=r"npr representation works on 2x2 blocks"):
        InputSpec(95, "crop", representation="npr-norm")


def _circular_blur(x: torch.Tensor, sigma: float) -> torch.Tensor:
    """An exact, periodic Gaussian blur of a Bx3xHxW float batch (no rounding), by its transfer function."""
    h, w = x.shape[-2:]
    fy, fx = torch.fft.fftfreq(h), torch.fft.rfftfreq(w)
    gain = torch.exp(-2 * torch.pi**2 * sigma**2 * (fy[:, None] ** 2 + fx[None, :] ** 2))
    return torch.fft.irfft2(torch.fft.rfft2(x) * gain, s=(h, w))


def test_whitening_undoes_a_blur_and_leaves_what_the_rounding_buried_small():
    from realfake.detector.preprocess import ROUNDING_POWER, whiten

    x = torch.randn(2, 3, 96, 96, generator=torch.Generator().manual_seed(0)) * 0.3  # far above the rounding
    soft = _circular_blur(x, 0.6)  # Nyquist kept at a few per cent
    assert (soft - x).norm() > 0.5 * x.norm()  # the blur is large ...
    assert (whiten(soft, 1.0) - whiten(x, 1.0)).norm() < 0.05 * whiten(x, 1.0).norm()  # ... and whitened away
    assert torch.allclose(whiten(x, 1.0).square().mean(), torch.tensor(1.0), atol=0.02)  # power ~1 per coefficient
    # a blur so strong that the top band holds less power than the 8-bit rounding: left near 0, not amplified
    hard = _circular_blur(x, 3.0) + torch.randn(x.shape, generator=torch.Generator().manual_seed(1)) * 1e-4
    top = whiten(hard, 1.0) - _circular_blur(whiten(hard, 1.0), 0.5)  # its high frequencies
    assert top.square().mean() < 0.05 and ROUNDING_POWER > 1e-4**2
    assert torch.equal(whiten(torch.zeros(1, 3, 96, 96)), torch.zeros(1, 3, 96, 96))


@pytest.mark.parametrize("strength", [None, 0.5])
def test_partial_whitening_scales_the_spectrum_slope(strength):
    """At strength s the log power ratio between a low and a high band is (1 - s) times the image's."""
    from realfake.detector.preprocess import WHITEN_STRENGTH, whiten

    x = _circular_blur(torch.randn(1, 3, 96, 96, generator=torch.Generator().manual_seed(0)) * 0.3, 0.6)

    def log_band_ratio(img):
        p = torch.fft.rfft2(img, norm="ortho").abs().square().mean(1)[0]
        r = torch.sqrt(torch.fft.fftfreq(96)[:, None] ** 2 + torch.fft.rfftfreq(96)[None, :] ** 2)
        return float(torch.log(p[(r > 0.05) & (r < 0.1)].mean() / p[(r > 0.4) & (r < 0.45)].mean()))

    s = WHITEN_STRENGTH if strength is None else strength
    original, partial, flat = log_band_ratio(x), log_band_ratio(whiten(x, strength)), log_band_ratio(whiten(x, 1.0))
    assert original > np.log(10) and abs(flat) < 0.1
    assert 0 < s < 1 and abs(partial - (1 - s) * original) < 0.1 * original
    assert torch.equal(whiten(x, 0.0), torch.fft.irfft2(torch.fft.rfft2(x, norm="ortho"), s=(96, 96), norm="ortho"))


def test_npr_white_is_npr_norm_of_the_whitened_image(photo):
    from realfake.detector.preprocess import neighbouring_pixel_residual, whiten

    pixels = torch.from_numpy(np.stack([np.array(photo)[:96, :96], np.full((96, 96, 3), 90, np.uint8)]))
    x = represent(to_model_input(pixels, torch.device("cpu")), "npr-white")
    r = neighbouring_pixel_residual(whiten(to_model_input(pixels, torch.device("cpu"))))
    assert torch.allclose(x[0], r[0] / r[0].square().mean().sqrt(), atol=1e-5)
    assert torch.equal(x[1], torch.zeros_like(x[1]))  # a flat image stays 0
    assert InputSpec(96, "crop", representation="npr-white").channels == 3
    with pytest.raises(RealfakeError, match=r"npr representation works on 2x2 blocks"):
        InputSpec(95, "crop", representation="npr-white")


def test_npr_white_at_a_strength_whitens_by_that_strength(photo):
    """``npr-white@S`` is npr-norm of ``whiten(x, S)``; ``npr-white@0.25`` is the default ``npr-white``, bit for
    bit, and the strength travels in the spec as part of the representation's name (and so in the model file)."""
    from realfake.detector.preprocess import neighbouring_pixel_residual, whiten

    pixels = torch.from_numpy(np.array(photo)[None, :96, :96])
    cpu = torch.device("cpu")
    x = to_model_input(pixels, cpu)
    assert torch.equal(represent(x, "npr-white@0.25"), represent(x, "npr-white"))
    r = neighbouring_pixel_residual(whiten(x, 0.5))
    half = represent(x, "npr-white@0.5")
    assert torch.allclose(half, r / r.square().mean().sqrt(), atol=1e-5)
    assert not torch.allclose(half, represent(x, "npr-white"), atol=1e-2)
    both = represent(x, "npr-norm+npr-white@0.5")
    assert both.shape[1] == 6 and torch.equal(both[:, 3:], half)
    spec = InputSpec(96, "crop", representation="npr-white@0.125")
    assert InputSpec.from_dict(spec.to_dict()) == spec and spec.channels == 3


@pytest.mark.parametrize(("representation", "message"), [
    ("npr-white@2", r"strength after '@' must be a number above 0 and at most 1.*got '2'"),
    ("npr-white@0", r"above 0 and at most 1.*got '0'"),
    ("npr-white@", r"above 0 and at most 1.*got ''"),
    ("npr-white@half", r"above 0 and at most 1.*got 'half'"),
    ("npr-norm@0.5", r"only npr-white takes a whitening strength.*npr-norm takes none"),
    ("npr-white@0.5+rgb", r"must be one of rgb, npr, .*npr-white@S"),
])
def test_a_whitening_strength_that_cannot_be_used_is_a_clear_error(representation, message):
    with pytest.raises(RealfakeError, match=message):
        InputSpec(96, "crop", representation=representation)
    with pytest.raises(RealfakeError, match=message):
        TrainConfig.from_params({"representation": representation})


def test_scoring_takes_the_network_window_and_training_the_image_size_crop(photo):
    """A model trained on 96 px crops scores the centred 192 px window (more pixels, more evidence);
    both are exact pixels of the image, on the JPEG grid, and scoring pixels are a writable copy."""
    spec = InputSpec(96, "crop", representation="npr", network_window=192)
    assert spec.fit_size == 192 and InputSpec(96, "crop").network_window == InputSpec(96, "crop").fit_size == 96
    pre = Preprocessor(spec, Augment(hflip=False, jpeg_prob=0.0))
    arr = np.asarray(photo)  # 256 x 256, read-only
    for img in (photo, arr):
        assert np.array_equal(pre.pixels(img), arr[32:224, 32:224])
    assert pre.pixels(arr).flags.writeable
    assert np.array_equal(pre.pixels(np.asarray(photo)[:192, :192]), arr[:192, :192])  # a whole-image window
    crop = pre.train_pixels(arr, np.random.default_rng(0))
    assert crop.shape == (96, 96, 3)
    assert InputSpec.from_dict(spec.to_dict()) == spec


def test_a_model_with_a_probe_fits_images_to_the_probe_window_and_its_network_reads_the_centre(photo):
    from realfake.detector.preprocess import centre_box

    spec = InputSpec(96, "crop", network_window=192, probe_window=256)
    assert spec.fit_size == 256 and InputSpec.from_dict(spec.to_dict()) == spec
    assert np.array_equal(Preprocessor(spec).pixels(np.asarray(photo)), np.asarray(photo))
    assert centre_box(256, 256, spec.network_window) == (32, 32, 192, 192)
    assert centre_box(200, 300, None) == centre_box(200, 300, 300) == (0, 0, 200, 300)


@pytest.mark.parametrize(("kwargs", "message"), [
    (dict(network_window=80), r"network_window is 80; it must be an integer >= image_size \(96\)"),
    (dict(network_window=128, policy="resize"),
     r"network_window is 128 with input policy 'resize'.*Set network_window to null"),
    (dict(network_window=129, representation="npr"),
     r"network_window is 129; the npr representation .* even \(use 130\)"),
    (dict(network_window=192, probe_window=160),
     r"probe_window is 160; it must be an integer >= network_window \(192\)"),
    (dict(probe_window=128, policy="resize"), r"probe_window is 128 with input policy 'resize'"),
])
def test_a_window_the_model_cannot_take_is_a_clear_error(kwargs, message):
    args = dict(image_size=96, policy="crop", representation="rgb") | kwargs
    with pytest.raises(RealfakeError, match=message):
        InputSpec(**args)
