"""What the page and the API do with an upload: decode, find faces, score, explain.

The model comes from a registry URI (default the champion alias) or a model file and is loaded
once. For an alias, the registry is asked at most every ``recheck_s`` seconds which version it
points at; when the alias has moved, the new version is loaded and answers from then on, with
no restart.
"""

from __future__ import annotations

import base64
import io
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from PIL import Image

from realfake.errors import RealfakeError
from realfake.images import ImageError, ImageTooLarge, NotAnImage, load_rgb
from realfake.inference.faces import NoFaceError
from realfake.inference.predict import load_detector, score_image

#: Previews sent back to the page are at most this many pixels on their longer side.
PREVIEW_SIDE = 640
_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")


#: The ``code`` of the API's answer when a photo has no face: the page then offers to score the whole image.
NO_FACE = "no_face"


class UploadError(RealfakeError):
    """An upload cannot be scored; ``status`` is the HTTP status the API answers with, ``code`` a name for the
    case a client can act on (:data:`NO_FACE`), or None."""

    def __init__(self, message: str, status: int = 400, code: str | None = None):
        super().__init__(message)
        self.status, self.code = status, code


@dataclass(frozen=True)
class Limits:
    """What one request may bring (the decoder's own pixel limit applies too)."""

    max_bytes: int = 20 * 1024 * 1024


class ModelHolder:
    """The detector that answers, loaded once and swapped when its registry alias moves."""

    def __init__(self, model: str, threshold: float | None = None, recheck_s: float = 5.0):
        self.model, self.threshold, self.recheck_s = model, threshold, recheck_s
        self._lock = threading.Lock()
        #: One forward pass at a time: uploads are decoded in parallel, scored in turn.
        self.scoring = threading.Lock()
        self._detector = None
        self._version: str | None = None
        self._checked = 0.0
        self.get()  # load now: a bad URI fails at start, not on the first upload

    def _alias_version(self) -> str | None:
        match = _ALIAS.match(self.model)
        if not match:
            return None
        import mlflow

        from realfake.mlops import tracking

        tracking.use_existing_store()
        try:
            found = mlflow.MlflowClient().get_model_version_by_alias(match["name"], match["alias"])
        except Exception as exc:  # noqa: BLE001 - MlflowException: no such model or alias
            raise RealfakeError(
                f"{self.model}: the registry has no such model or alias ({str(exc).splitlines()[0]}). "
                "Run `dvc repro` to register a champion, or pass --model models/model.pt."
            ) from None
        return str(found.version)

    def get(self) -> tuple[Any, dict[str, Any]]:
        """The detector and a description of it (URI, version, threshold)."""
        with self._lock:
            now = time.monotonic()
            if self._detector is None or (_ALIAS.match(self.model) and now - self._checked >= self.recheck_s):
                self._checked = now
                try:
                    version = self._alias_version()
                except RealfakeError:
                    if self._detector is None:
                        raise
                    version = self._version  # the registry is unreachable now: keep answering with what we have
                if self._detector is None or version != self._version:
                    uri = self.model
                    if version is not None:
                        uri = f"models:/{_ALIAS.match(self.model)['name']}/{version}"
                    self._detector, _ = load_detector(uri, self.threshold)
                    self._version = version
            info = {"model": self.model, "version": self._version, "threshold": round(self._detector.threshold, 6),
                    "trained_on": self._detector.trained_on, "trained_on_note": self._detector.trained_on_note}
            return self._detector, info


def analyse(data: bytes, name: str, holder: ModelHolder, limits: Limits, explain: bool = False,
            faces: str = "auto") -> dict[str, Any]:
    """The API's answer for one uploaded file; :class:`UploadError` for a file that cannot be scored."""
    if not data:
        raise UploadError(f"{name}: the file is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise UploadError(f"{name}: {len(data):,} bytes is over the {limits.max_bytes:,}-byte upload limit.", 413)
    try:
        img = load_rgb(data, name=name)
    except ImageTooLarge as exc:
        raise UploadError(str(exc), 413) from None
    except NotAnImage as exc:
        raise UploadError(str(exc), 415) from None
    except ImageError as exc:
        raise UploadError(str(exc), 400) from None
    detector, info = holder.get()
    try:
        with holder.scoring:
            scored = score_image(img, name, detector, faces=faces, explain=explain)
    except NoFaceError:
        raise UploadError(f"{name}: no face found in this photo; only a visible face can be checked "
                          "(the API scores the whole image with faces=off).", 422, NO_FACE) from None
    answers = []
    for row, overlay in scored:
        answers.append({
            "face": row.face,
            "box": row.box,
            "p_fake": round(row.p_fake, 6),
            "verdict": row.label,
            "threshold": round(row.threshold, 6),
            "reason": row.reason,
            "explanation": _data_url(overlay, "PNG") if overlay is not None else None,
        })
    return {
        "file": name,
        "width": img.width,
        "height": img.height,
        "preview": _data_url(_preview(img), "JPEG"),
        "model": info,
        "faces": answers,
    }


def _preview(img: Image.Image) -> Image.Image:
    scale = PREVIEW_SIDE / max(img.size)
    return img if scale >= 1 else img.resize((round(img.width * scale), round(img.height * scale)))


def _data_url(img: Image.Image, fmt: str) -> str:
    buf = io.BytesIO()
    img.save(buf, format=fmt, **({"quality": 90} if fmt == "JPEG" else {}))
    return f"data:image/{fmt.lower()};base64,{base64.b64encode(buf.getvalue()).decode()}"
