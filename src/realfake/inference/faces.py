"""Face detection and alignment for photos that are not already face crops.

The training data (Kaggle's 140k, FFHQ-style) are 256x256 crops with one
upright face filling most of the frame. A photo is brought to that form by
facenet-pytorch's MTCNN (its weights ship inside the package): every face is
detected with its five landmarks, rotated so the eyes are level, cropped to a
square of ``CONTEXT`` times the face box (FFHQ crops keep hair, ears and some
background) and resized to 256x256.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from PIL import Image

from realfake.errors import RealfakeError

#: Side of the aligned crop, as in the training data.
CROP_SIZE = 256
#: Side of the aligned square relative to the larger side of MTCNN's face box.
CONTEXT = 1.8
#: MTCNN needs at least this many pixels on the shorter side to look for a face.
MIN_SIDE = 24


class NoFaceError(RealfakeError):
    """No face was found where one was required."""


@dataclass(frozen=True)
class Face:
    """One detected face: its box in the photo, MTCNN's confidence, and the aligned crop."""

    box: tuple[int, int, int, int]  # x1, y1, x2, y2 in the photo
    confidence: float
    crop: Image.Image  # aligned CROP_SIZE x CROP_SIZE RGB


@lru_cache(maxsize=1)
def _mtcnn():
    from facenet_pytorch import MTCNN

    return MTCNN(keep_all=True, device="cpu", post_process=False)


def is_face_crop(img: Image.Image) -> bool:
    """The rule of ``--faces auto``: a 256x256 image is taken as an aligned face crop, as in the
    training data; anything else goes through face detection."""
    return img.size == (CROP_SIZE, CROP_SIZE)


def detect_faces(img: Image.Image, name: str = "image", min_confidence: float = 0.9) -> list[Face]:
    """Every face in an RGB photo, aligned like the training data; NoFaceError if there is none."""
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise NoFaceError(f"{name}: {w}x{h} pixels is too small to look for a face; score it whole with --faces off.")
    boxes, probs, landmarks = _mtcnn().detect(img, landmarks=True)
    faces = []
    if boxes is not None:
        for box, prob, marks in zip(boxes, probs, landmarks):
            if prob is None or prob < min_confidence:
                continue
            faces.append(Face(tuple(int(round(v)) for v in box), float(prob), align(img, box, marks)))
    if not faces:
        raise NoFaceError(f"{name}: no face found; score the whole image with --faces off.")
    return faces


def align(img: Image.Image, box: np.ndarray, landmarks: np.ndarray) -> Image.Image:
    """Rotate about the eye midpoint so the eyes are level, then crop a CONTEXT-times square around the face."""
    (lx, ly), (rx, ry) = landmarks[0], landmarks[1]
    angle = math.degrees(math.atan2(ry - ly, rx - lx))
    x1, y1, x2, y2 = box
    cx, cy = (x1 + x2) / 2, (y1 + y2) / 2
    side = CONTEXT * max(x2 - x1, y2 - y1)
    rotated = img.rotate(angle, resample=Image.BICUBIC, center=(cx, cy), fillcolor=(0, 0, 0))
    half = side / 2
    square = rotated.crop((round(cx - half), round(cy - half), round(cx + half), round(cy + half)))
    return square.resize((CROP_SIZE, CROP_SIZE), Image.BICUBIC)
