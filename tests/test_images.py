"""Decoding images: every mode becomes the upright 8-bit RGB a person sees, and bad files get one clear error."""

from __future__ import annotations

import io
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from helpers.images import PHOTO_KINDS, jpeg_bytes, photo_as_people_have_it, random_photo
from realfake.images import MAX_PIXELS, ImageError, ImageFiles, decode, load_rgb, recompress


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


@pytest.fixture(scope="module")
def astronaut() -> Image.Image:
    from skimage import data

    return Image.fromarray(data.astronaut())  # a real photograph, 512x512, upright


def mean_abs_diff(a: Image.Image, b: Image.Image) -> float:
    return float(np.abs(np.asarray(a, dtype=np.float32) - np.asarray(b, dtype=np.float32)).mean())


@pytest.mark.parametrize("kind", PHOTO_KINDS)
def test_photos_decode_as_a_person_sees_them(astronaut, kind):
    out = load_rgb(photo_as_people_have_it(astronaut, kind), name=kind)
    assert out.mode == "RGB"
    if kind == "transparent-palette.png":
        assert out.size == (512 + 64, 512 + 64)
        assert np.asarray(out)[:32].min() == 255  # the transparent border is white, as on a page
        out = out.crop((32, 32, 32 + 512, 32 + 512))
    assert out.size == astronaut.size
    expected = {
        "sideways.jpg": astronaut,  # turned upright: the stored pixels are 90 degrees off
        "gray16.png": astronaut.convert("L").convert("RGB"),  # scaled to 8 bits, not clipped to white
        "rgb16.png": astronaut,
        "photo.heic": astronaut,
        "animated.gif": astronaut,  # the first frame
        "transparent-palette.png": astronaut,
    }[kind]
    lossy = {"sideways.jpg": 3.0, "photo.heic": 4.0, "animated.gif": 8.0, "transparent-palette.png": 8.0}
    assert mean_abs_diff(out, expected) <= lossy.get(kind, 0.0), kind


def test_sixteen_bit_gray_keeps_its_brightness(astronaut):
    # Clipping 16-bit values to 255 made this photo almost white (mean 229); scaled, it keeps its own mean.
    out = np.asarray(load_rgb(photo_as_people_have_it(astronaut, "gray16.png")))
    assert abs(out.mean() - np.asarray(astronaut.convert("L")).mean()) < 0.5


def test_images_without_an_orientation_tag_decode_bit_exactly_as_before(photo, tmp_path):
    # The Kaggle and sample JPEGs carry no orientation tag: their pixels must not change (training/predict parity).
    data = jpeg_bytes(photo, quality=90)
    assert 0x0112 not in Image.open(io.BytesIO(data)).getexif()
    assert np.array_equal(np.asarray(load_rgb(data)), np.asarray(Image.open(io.BytesIO(data)).convert("RGB")))


def test_the_sample_jpegs_carry_no_orientation_tag(tiny_sample):
    files = sorted(tiny_sample.rglob("*.jpg"))
    assert files
    assert all(0x0112 not in Image.open(f).getexif() for f in files)


def test_decode_reports_the_upright_size(astronaut):
    wide = astronaut.resize((512, 256))
    exif = Image.Exif()
    exif[0x0112] = 6
    buf = io.BytesIO()
    wide.save(buf, format="JPEG", exif=exif)
    assert decode(buf.getvalue()).size == (256, 512)


@pytest.mark.parametrize(
    ("pixels", "message"),
    [
        (np.full((8, 8), 2.5, np.float32), "floating-point pixels outside 0..1"),
        (np.full((8, 8), np.nan, np.float32), "floating-point pixels outside 0..1"),
        (np.full((8, 8), 70_000, np.int32), "32-bit integer pixels from 70000 to 70000"),
    ],
)
def test_pixels_without_a_known_white_level_are_refused(pixels, message):
    buf = io.BytesIO()
    Image.fromarray(pixels).save(buf, format="TIFF")
    with pytest.raises(ImageError, match=message):
        load_rgb(buf.getvalue(), name="scan.tif")


def test_float_pixels_in_0_to_1_are_scaled():
    buf = io.BytesIO()
    Image.fromarray(np.full((8, 8), 0.5, np.float32)).save(buf, format="TIFF")
    assert np.asarray(load_rgb(buf.getvalue())).max() == 128


def test_heic_without_the_plugin_says_what_to_install(astronaut, tmp_path):
    path = tmp_path / "IMG_0001.HEIC"
    path.write_bytes(photo_as_people_have_it(astronaut, "photo.heic"))
    # A fresh interpreter in which pillow_heif cannot be imported.
    code = (
        "import sys; sys.modules['pillow_heif'] = None\n"
        "from realfake.images import ImageError, load_rgb\n"
        f"try:\n    load_rgb({str(path)!r})\nexcept ImageError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert "IMG_0001.HEIC: a HEIC/HEIF photo, and the HEIF decoder is not installed" in out
    assert "pip install pillow-heif" in out
