"""Face-like content for the sample: one distribution of cartoon faces that both classes draw from.

:func:`render_face` paints background, head, hair, eyes, nose and mouth, then
pose, lighting and texture noise, at the base resolution; the class-specific
up-sampling (:mod:`realfake.data.sample.upsampling`) happens afterwards. Every
random number comes from the generator passed in, in a fixed order.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

_TEXTURE_NOISE = (1.5, 5.0)  # base-resolution texture noise std range (both classes)

_SKIN = np.array(
    [
        (255, 224, 196), (246, 208, 180), (241, 194, 167), (234, 192, 134),
        (224, 172, 105), (212, 158, 122), (198, 134, 66), (170, 115, 80),
        (141, 85, 36), (120, 75, 50), (92, 56, 30), (70, 45, 30),
    ],
    dtype=np.float64,
)

_HAIR = np.array(
    [
        (20, 18, 16), (35, 28, 22), (60, 40, 25), (90, 60, 35), (110, 75, 45),
        (140, 60, 30), (170, 110, 60), (220, 190, 120), (200, 170, 110),
        (170, 170, 170), (225, 225, 220),
    ],
    dtype=np.float64,
)

_IRIS = np.array(
    [(70, 40, 20), (100, 60, 30), (40, 25, 15), (120, 100, 50), (70, 110, 60), (60, 100, 160), (110, 130, 150)],
    dtype=np.float64,
)


def _color(rng: np.random.Generator, palette: np.ndarray, jitter: float) -> np.ndarray:
    base = palette[rng.integers(len(palette))]
    return np.clip(base * rng.uniform(0.85, 1.15) + rng.normal(0, jitter, 3), 0, 255)


def _rgba(c: np.ndarray, a: int = 255) -> tuple[int, int, int, int]:
    c = np.clip(c, 0, 255)
    return (int(c[0]), int(c[1]), int(c[2]), int(a))


def _rgb(c: np.ndarray) -> tuple[int, int, int]:
    return _rgba(c)[:3]


@lru_cache(maxsize=8)
def _grid(s: int) -> tuple[np.ndarray, np.ndarray]:
    """Pixel coordinates in [-0.5, 0.5] (y, x), read-only."""
    y, x = np.mgrid[0:s, 0:s].astype(np.float32) / (s - 1) - 0.5
    y.flags.writeable = False
    x.flags.writeable = False
    return y, x


def _background(rng: np.random.Generator, s: int) -> Image.Image:
    c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
    theta = rng.uniform(0, 2 * np.pi)
    y, x = _grid(s)
    t = np.clip(0.5 + (x * np.cos(theta) + y * np.sin(theta)) * rng.uniform(0.5, 1.5), 0, 1)[..., None]
    bg = Image.fromarray((c0 * (1 - t) + c1 * t).astype(np.uint8), "RGB")
    draw = ImageDraw.Draw(bg)
    for _ in range(rng.integers(0, 6)):
        cx, cy = rng.uniform(-0.1, 1.1, 2) * s
        rx, ry = rng.uniform(0.05, 0.35, 2) * s
        draw.ellipse((cx - rx, cy - ry, cx + rx, cy + ry), fill=_rgb(rng.uniform(0, 255, 3)))
    if rng.random() < 0.3:  # a hard edge: door frame, window, wall corner
        x0 = rng.uniform(0, s)
        draw.rectangle((x0, -1, x0 + rng.uniform(0.05, 0.5) * s, s + 1), fill=_rgb(rng.uniform(0, 255, 3)))
    return bg.filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.5, 0.12 * s))))


@dataclass
class _Head:
    """The head being drawn: its centre and radii, colours, hair style and line width."""

    cx: float
    cy: float
    rw: float
    rh: float
    skin: np.ndarray
    shade: np.ndarray
    hair: np.ndarray
    hair_style: str
    lw: int


def _face_layer(rng: np.random.Generator, s: int) -> Image.Image:
    """Shoulders, head, hair, eyes, nose and mouth on a transparent layer, in this order of random draws."""
    layer = Image.new("RGBA", (s, s), (0, 0, 0, 0))
    d = ImageDraw.Draw(layer)
    head = _draw_head(d, rng, s)
    _draw_hair(d, rng, head)
    eye_y = _draw_eyes(d, rng, s, head)
    _draw_nose_and_mouth(d, rng, head, eye_y)
    return layer


def _draw_head(d: ImageDraw.ImageDraw, rng: np.random.Generator, s: int) -> _Head:
    """Colours and geometry, then shoulders and neck, hair behind the head, ears, head and cheeks."""
    u = rng.uniform
    skin = _color(rng, _SKIN, 6)
    shade = skin * 0.78
    hair = _color(rng, _HAIR, 8) if rng.random() < 0.93 else rng.uniform(0, 255, 3)
    cloth = rng.uniform(0, 255, 3)

    cx, cy = s * 0.5, s * u(0.42, 0.48)
    rw = s * u(0.19, 0.25)
    rh = rw * u(1.2, 1.42)
    hair_style = rng.choice(["bald", "short", "medium", "long"], p=[0.08, 0.4, 0.27, 0.25])

    # Shoulders and neck.
    sw = rw * u(1.9, 2.6)
    top = cy + rh * u(0.95, 1.15)
    d.ellipse((cx - sw, top, cx + sw, top + 2 * rh), fill=_rgba(cloth))
    nw = rw * u(0.45, 0.6)
    d.rectangle((cx - nw, cy + rh * 0.5, cx + nw, top + rh * 0.15), fill=_rgba(shade * 1.05))
    if rng.random() < 0.5:  # collar / neckline
        d.chord((cx - nw * 1.3, top - rh * 0.2, cx + nw * 1.3, top + rh * 0.35), 0, 180, fill=_rgba(shade))

    # Hair behind the head.
    if hair_style == "short":
        d.ellipse((cx - rw * 1.06, cy - rh * 1.08, cx + rw * 1.06, cy + rh * 0.2), fill=_rgba(hair * 0.9))
    elif hair_style in ("medium", "long"):
        depth = rh * (0.6 if hair_style == "medium" else u(1.1, 1.6))
        d.rounded_rectangle(
            (cx - rw * u(1.1, 1.3), cy - rh * 1.05, cx + rw * u(1.1, 1.3), cy + depth),
            radius=rw * 0.6,
            fill=_rgba(hair * 0.85),
        )

    # Ears and head.
    ey = cy + rh * u(-0.05, 0.1)
    for side in (-1, 1):
        ex = cx + side * rw * 0.97
        d.ellipse((ex - rw * 0.16, ey - rh * 0.17, ex + rw * 0.16, ey + rh * 0.17), fill=_rgba(shade))
    d.ellipse((cx - rw, cy - rh, cx + rw, cy + rh), fill=_rgba(skin))
    # Cheek shading.
    for side in (-1, 1):
        chx = cx + side * rw * 0.5
        chy = cy + rh * 0.25
        blush = skin * 0.6 + np.array([220, 80, 80]) * 0.4
        d.ellipse((chx - rw * 0.22, chy - rh * 0.1, chx + rw * 0.22, chy + rh * 0.1),
                  fill=_rgba(skin + (blush - skin) * u(0, 0.3)))
    return _Head(cx, cy, rw, rh, skin, shade, hair, str(hair_style), max(1, round(s * 0.012)))


def _draw_hair(d: ImageDraw.ImageDraw, rng: np.random.Generator, h: _Head) -> None:
    """Hair on top: the part of a slightly larger head outline above the hairline, a fringe, sides."""
    if h.hair_style == "bald":
        return
    u, cx, cy, rw, rh, hair = rng.uniform, h.cx, h.cy, h.rw, h.rh, h.hair
    hw, hh = rw * u(1.03, 1.1), rh * u(1.04, 1.12)
    hairline = cy - rh * u(0.3, 0.65)
    a = np.degrees(np.arcsin(min(0.99, (cy - hairline) / hh)))
    d.chord((cx - hw, cy - hh, cx + hw, cy + hh), 180 + a, 360 - a, fill=_rgba(hair))
    if rng.random() < 0.5:  # fringe swept to one side
        side = rng.choice([-1, 1])
        d.polygon(
            [
                (cx - side * rw * 0.7, hairline - rh * 0.1),
                (cx + side * rw * 0.9, hairline - rh * 0.1),
                (cx + side * rw * 0.5, hairline + rh * u(0.1, 0.3)),
            ],
            fill=_rgba(hair),
        )
    if h.hair_style != "short":
        for side in (-1, 1):
            x0 = cx + side * rw * 0.92
            d.rectangle((x0 - rw * 0.14, hairline, x0 + rw * 0.14, cy + rh * 0.2), fill=_rgba(hair))


def _draw_eyes(d: ImageDraw.ImageDraw, rng: np.random.Generator, s: int, h: _Head) -> float:
    """Eyes with irises, pupils and catch lights, brows, and sometimes glasses; returns the eye line's y."""
    u, cx, cy, rw, rh, lw = rng.uniform, h.cx, h.cy, h.rw, h.rh, h.lw
    eye_y = cy - rh * u(0.02, 0.15)
    eye_dx = rw * u(0.36, 0.46)
    ew = rw * u(0.15, 0.21)
    eh = ew * u(0.45, 0.65)
    iris_c = _color(rng, _IRIS, 10)
    ir = eh * u(0.85, 1.05)
    gaze = u(-0.3, 0.3) * ew
    for side in (-1, 1):
        ex = cx + side * eye_dx
        d.ellipse((ex - ew, eye_y - eh, ex + ew, eye_y + eh), fill=_rgba(np.array([235, 235, 230]) * u(0.85, 1)))
        ix = ex + gaze
        d.ellipse((ix - ir, eye_y - ir, ix + ir, eye_y + ir), fill=_rgba(iris_c))
        pr = ir * u(0.35, 0.55)
        d.ellipse((ix - pr, eye_y - pr, ix + pr, eye_y + pr), fill=(10, 10, 12, 255))
        if rng.random() < 0.8:  # catch light
            hr = max(0.6, pr * 0.4)
            d.ellipse((ix - pr * 0.4 - hr, eye_y - pr * 0.6 - hr, ix - pr * 0.4 + hr, eye_y - pr * 0.6 + hr),
                      fill=(250, 250, 250, 255))
        d.arc((ex - ew, eye_y - eh, ex + ew, eye_y + eh), 180, 360, fill=_rgba(h.shade * 0.6), width=lw)
        # Brows.
        by = eye_y - eh - rh * u(0.07, 0.14)
        d.arc(
            (ex - ew * 1.2, by, ex + ew * 1.2, by + eh * u(1.0, 2.5)),
            200,
            340,
            fill=_rgba(h.hair * 0.8),
            width=max(1, round(s * u(0.01, 0.025))),
        )
    if rng.random() < 0.15:  # glasses
        gc = _rgba(rng.uniform(0, 120, 3))
        for side in (-1, 1):
            ex = cx + side * eye_dx
            d.ellipse((ex - ew * 1.45, eye_y - ew * 1.1, ex + ew * 1.45, eye_y + ew * 1.1), outline=gc, width=lw)
        d.line((cx - eye_dx + ew * 1.45, eye_y, cx + eye_dx - ew * 1.45, eye_y), fill=gc, width=lw)
    return eye_y


def _draw_nose_and_mouth(d: ImageDraw.ImageDraw, rng: np.random.Generator, h: _Head, eye_y: float) -> None:
    """Nose (bridge, tip, nostrils), mouth (closed or a smile with teeth), and sometimes a beard."""
    u, cx, cy, rw, rh, lw, skin, shade = rng.uniform, h.cx, h.cy, h.rw, h.rh, h.lw, h.skin, h.shade
    ny = cy + rh * u(0.22, 0.35)
    nw2 = rw * u(0.12, 0.2)
    d.line((cx + u(-0.03, 0.03) * rw, eye_y, cx + nw2 * 0.3, ny), fill=_rgba(shade * 0.95), width=lw)
    d.chord((cx - nw2, ny - nw2 * 0.7, cx + nw2, ny + nw2 * 0.7), 0, 180, fill=_rgba(shade * 0.9))
    for side in (-1, 1):
        nx = cx + side * nw2 * 0.55
        d.ellipse((nx - nw2 * 0.25, ny - nw2 * 0.12, nx + nw2 * 0.25, ny + nw2 * 0.2), fill=_rgba(shade * 0.55))

    # Mouth.
    my = cy + rh * u(0.5, 0.62)
    mw = rw * u(0.32, 0.52)
    mh = rh * u(0.04, 0.09)
    lip = skin * u(0.55, 0.8) + np.array([u(30, 90), 0, u(0, 30)])
    if rng.random() < 0.35:  # open smile with teeth
        d.chord((cx - mw, my - mh * 1.5, cx + mw, my + mh * 2.5), 0, 180, fill=_rgba(lip * 0.6))
        d.chord((cx - mw * 0.8, my - mh * 0.5, cx + mw * 0.8, my + mh * 1.2), 0, 180, fill=(235, 230, 220, 255))
    else:
        d.ellipse((cx - mw, my - mh, cx + mw, my + mh * 1.2), fill=_rgba(lip))
        d.line((cx - mw * 0.9, my, cx + mw * 0.9, my + u(-1, 1) * mh * 0.3), fill=_rgba(lip * 0.55), width=lw)

    if rng.random() < 0.15:  # beard
        d.chord((cx - rw * 0.95, cy - rh * 0.2, cx + rw * 0.95, cy + rh * 1.02), 10, 170,
                fill=_rgba(skin + (h.hair - skin) * u(0.5, 0.9)))


def render_face(rng: np.random.Generator, size: int) -> np.ndarray:
    """Draw one face-like picture: ``size`` x ``size`` x 3, float32 in [0, 255].

    Content only (background, head, hair, eyes, nose, mouth, lighting, pose and
    mild texture noise); the class-specific up-sampling happens elsewhere. Both
    classes draw their content from this one distribution.
    """
    s = int(size)
    img = _background(rng, s).convert("RGBA")
    face = _face_layer(rng, s)
    # Pose: rotation about the head, offset and scale.
    scale = rng.uniform(0.85, 1.15)
    if abs(scale - 1) > 1e-3:
        face = face.resize((max(1, round(s * scale)),) * 2, Image.BILINEAR)
        pad = Image.new("RGBA", (s, s), (0, 0, 0, 0))
        off = (s - face.size[0]) // 2
        pad.alpha_composite(face, (max(off, 0), max(off, 0)), (max(-off, 0), max(-off, 0)))
        face = pad
    face = face.rotate(
        float(rng.normal(0, 8)),
        resample=Image.BILINEAR,
        translate=(float(rng.normal(0, 0.04 * s)), float(rng.normal(0, 0.03 * s))),
    )
    img.alpha_composite(face)
    img = img.convert("RGB").filter(ImageFilter.GaussianBlur(radius=float(rng.uniform(0.3, 0.8))))

    out = np.asarray(img, dtype=np.float32)
    # Lighting: a directional gradient and an exposure / colour cast.
    theta = rng.uniform(0, 2 * np.pi)
    y, x = _grid(s)
    light = 1 + rng.uniform(0.05, 0.5) * (x * np.cos(theta) + y * np.sin(theta))
    gain = rng.uniform(0.8, 1.15) * rng.uniform(0.93, 1.07, 3).astype(np.float32)
    out = out * light[..., None] * gain
    # Texture noise at the base resolution.
    out += rng.standard_normal((s, s, 3), dtype=np.float32) * np.float32(rng.uniform(*_TEXTURE_NOISE))
    return np.clip(out, 0, 255).astype(np.float32, copy=False)
