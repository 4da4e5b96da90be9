"""Test images: a random photo, its JPEG bytes, and a photo stored as phones, cameras and editors store it."""

from __future__ import annotations

import io
import struct
import zlib

import numpy as np
from PIL import Image


def jpeg_bytes(img: Image.Image, **kw) -> bytes:
    """``img`` encoded as JPEG (``quality=...`` and other PIL options)."""
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


def random_photo(seed: int = 0, size: int = 256) -> Image.Image:
    """A ``size`` x ``size`` RGB image of uniform noise: every pixel differs from its neighbours."""
    return Image.fromarray(np.random.default_rng(seed).integers(0, 256, (size, size, 3), dtype=np.uint8))


def png16(pixels: np.ndarray) -> bytes:
    """A 16-bit PNG of ``pixels`` (HxW gray or HxWx3 RGB, values 0..65535), written by hand: Pillow
    cannot write 16-bit RGB, and this is the layout cameras and scanners produce."""
    arr = np.asarray(pixels, dtype=">u2")
    h, w = arr.shape[:2]
    color_type = 0 if arr.ndim == 2 else {3: 2, 4: 6}[arr.shape[2]]
    raw = b"".join(b"\x00" + arr[y].tobytes() for y in range(h))  # filter type 0 on every row

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    header = struct.pack(">IIBBBBB", w, h, 16, color_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")


#: EXIF orientation 6: "turn the stored pixels 90 degrees clockwise to show them", what a phone held upright writes.
ROTATE_CW = 6


def photo_as_people_have_it(upright: Image.Image, kind: str) -> bytes:
    """The file bytes of ``upright`` (an 8-bit RGB photo) stored the way a phone, camera or editor stores it.

    ``kind`` is one of :data:`PHOTO_KINDS`; decoding any of them correctly gives back ``upright``
    (up to lossy compression)."""
    buf = io.BytesIO()
    pixels = np.asarray(upright)
    if kind == "sideways.jpg":
        exif = Image.Exif()
        exif[0x0112] = ROTATE_CW
        upright.transpose(Image.Transpose.ROTATE_90).save(buf, format="JPEG", quality=95, exif=exif)
    elif kind == "gray16.png":
        gray = np.asarray(upright.convert("L"), dtype=np.uint16)
        return png16(gray * 257)  # 8-bit v is 16-bit v * 257: white is 65535
    elif kind == "rgb16.png":
        return png16(pixels.astype(np.uint16) * 257)
    elif kind == "photo.heic":
        import pillow_heif

        pillow_heif.register_heif_opener()
        upright.save(buf, format="HEIF", quality=95)
    elif kind == "animated.gif":
        frames = [upright.convert("P", palette=Image.Palette.ADAPTIVE), Image.new("P", upright.size)]
        frames[0].save(buf, format="GIF", save_all=True, append_images=frames[1:], duration=200, loop=0)
    elif kind == "transparent-palette.png":
        # The photo on a wider canvas whose border is palette index 255, marked transparent.
        w, h = upright.size
        pal = upright.convert("P", palette=Image.Palette.ADAPTIVE, colors=255)
        canvas = Image.new("P", (w + 64, h + 64), 255)
        canvas.putpalette(pal.getpalette()[: 255 * 3] + [0, 0, 0])
        canvas.paste(pal, (32, 32))
        canvas.save(buf, format="PNG", transparency=255)
    else:
        raise ValueError(f"unknown photo kind {kind!r}")
    return buf.getvalue()


PHOTO_KINDS = ("sideways.jpg", "gray16.png", "rgb16.png", "photo.heic", "animated.gif", "transparent-palette.png")
