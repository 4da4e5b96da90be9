"""One preprocessing for train, evaluate, predict and serving; bad images get a clear error."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch
from PIL import Image

from realfake.layout import image_root
from realfake.preprocess import (
    MAX_PIXELS,
    Augment,
    ImageError,
    InputSpec,
    TrainTransform,
    fit,
    load_rgb,
    to_input,
    to_tensor,
)


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


@pytest.fixture
def photo() -> Image.Image:
    rng = np.random.default_rng(0)
    return Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))


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
    """Parity: the training/evaluation dataset, predict (to_input) and the served model agree."""
    import pandas as pd

    from realfake.train import FaceDataset, to_model_input

    rows = pd.read_csv(tiny_sample / "test.csv", index_col=0).head(3)
    for spec in (InputSpec(96, "crop"), InputSpec(96, "resize")):
        ds = FaceDataset(rows, tiny_sample, spec)
        for i, rel in enumerate(rows["path"]):
            path = image_root(tiny_sample) / rel
            x = to_model_input(ds[i][0][None], torch.device("cpu"))[0]
            assert torch.equal(x, to_input(path, spec))
            assert torch.equal(x, to_input(path.read_bytes(), spec))


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
    tf = TrainTransform(spec, augment)
    arr = np.asarray(photo)
    for seed in range(8):
        a = tf.pixels(arr, np.random.default_rng([seed, 1, 2]))
        b = tf.pixels(photo, np.random.default_rng([seed, 1, 2]))
        assert a.dtype == np.uint8 and a.shape == (spec.image_size, spec.image_size, 3)
        assert np.array_equal(a, b)
        assert torch.equal(to_tensor(a), tf(photo, np.random.default_rng([seed, 1, 2])))


def test_standardise_on_a_batch_equals_to_tensor_per_image(photo):
    from realfake.preprocess import standardise

    crops = [fit(photo, InputSpec(64, "crop"), (8 * k, 0)) for k in range(3)]
    batch = torch.from_numpy(np.stack([np.asarray(c) for c in crops]))
    out = standardise(batch)
    assert out.shape == (3, 3, 64, 64) and out.dtype == torch.float32
    assert out.is_contiguous(memory_format=torch.channels_last)
    assert all(torch.equal(out[k], to_tensor(c)) for k, c in enumerate(crops))


def test_small_images_are_scaled_up_before_cropping():
    img = Image.new("RGB", (60, 100), (10, 20, 30))
    assert fit(img, InputSpec(96, "crop")).size == (96, 96)


@pytest.mark.parametrize("mode", ["RGBA", "LA", "L", "CMYK", "P", "I;16"])
def test_any_mode_becomes_rgb(mode):
    img = Image.new("RGB", (40, 40), (200, 100, 50)).convert(mode)
    out = load_rgb(img)
    assert out.mode == "RGB" and out.size == (40, 40)


def test_transparent_pixels_composite_on_white():
    img = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    assert np.asarray(load_rgb(buf.getvalue())).min() == 255


def test_bad_images_raise_clear_errors(tmp_path, photo):
    data = jpeg_bytes(photo, quality=90)
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(data[: len(data) // 2])
    empty = tmp_path / "empty.jpg"
    empty.write_bytes(b"")
    text = tmp_path / "notes.jpg"
    text.write_text("not an image")
    with pytest.raises(ImageError, match="truncated.jpg: the image cannot be decoded"):
        load_rgb(truncated)
    with pytest.raises(ImageError, match=r"empty.jpg: the file is empty \(0 bytes\)"):
        load_rgb(empty)
    with pytest.raises(ImageError, match="notes.jpg: not an image file"):
        load_rgb(text)
    with pytest.raises(ImageError, match="missing.jpg: cannot read the file"):
        load_rgb(tmp_path / "missing.jpg")


def test_decompression_bomb_is_refused_before_decoding():
    # A PNG that declares 10,000 x 10,000 pixels but is only a few KB.
    big = Image.new("L", (10_000, 10_000))
    buf = io.BytesIO()
    big.save(buf, format="PNG", optimize=True)
    assert len(buf.getvalue()) < 200_000 and 10_000 * 10_000 > MAX_PIXELS
    with pytest.raises(ImageError, match="over the 50,000,000-pixel limit"):
        load_rgb(buf.getvalue(), name="bomb.png")


def test_train_transform_is_a_function_of_its_rng(photo):
    tf = TrainTransform(InputSpec(96, "crop"), Augment(hflip=True, jpeg_prob=0.5, blur_prob=0.5))
    a = tf(photo, np.random.default_rng([1, 2, 3]))
    b = tf(photo, np.random.default_rng([1, 2, 3]))
    c = tf(photo, np.random.default_rng([1, 2, 4]))
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert a.shape == (3, 96, 96)


def test_input_spec_rejects_unknown_policy():
    from realfake.errors import RealfakeError

    with pytest.raises(RealfakeError, match="input policy is 'squash'"):
        InputSpec(128, "squash")
