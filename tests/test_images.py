"""Decoding images: every mode becomes RGB, and bad files get one clear error naming them."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from helpers.images import jpeg_bytes, random_photo
from realfake.images import MAX_PIXELS, ImageError, ImageFiles, load_rgb, recompress


@pytest.fixture
def photo() -> Image.Image:
    return random_photo()


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


def test_image_files_decode_on_access_and_keep_them_when_asked(tmp_path, photo):
    path = tmp_path / "a.jpg"
    path.write_bytes(jpeg_bytes(photo, quality=90))
    files = ImageFiles([path], cache=True)
    first = files[0]
    assert first.dtype == np.uint8 and first.shape == (256, 256, 3)
    assert np.array_equal(first, np.asarray(load_rgb(path)))
    path.unlink()
    assert files[0] is first  # kept: not read again
    with pytest.raises(ImageError, match="a.jpg: cannot read the file"):
        ImageFiles([path])[0]


def test_recompress_is_a_jpeg_round_trip(photo):
    out = recompress(photo, 50)
    assert out.mode == "RGB" and out.size == photo.size
    assert np.array_equal(np.asarray(out), np.asarray(load_rgb(jpeg_bytes(photo, quality=50))))
