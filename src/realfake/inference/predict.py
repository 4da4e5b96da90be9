"""Scoring new images with a trained detector: files, folders and globs in, one row per face out.

The model is loaded once (a registry or run URI, or a local model file) and
every face is scored in batches with the same preprocessing as training.
A bad input gives one row with its error; the other inputs are still scored.
"""

from __future__ import annotations

import glob
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Iterable

from PIL import Image

from realfake.detector.scoring import Detector
from realfake.errors import RealfakeError
from realfake.images import IMAGE_SUFFIXES, ImageError, load_rgb
from realfake.inference.faces import NoFaceError, detect_faces, is_face_crop
from realfake.mlops import CHAMPION_URI

FACE_MODES = ("auto", "on", "off")
#: Keys of every output row, in order (JSON and CSV).
ROW_KEYS = ("file", "face", "box", "p_fake", "label", "reason", "threshold", "trained_on", "error", "explanation")


@dataclass
class Row:
    """One output row: a face (or whole image) with its score, or an input that failed."""

    file: str
    face: int | None = None  # index of the face in the image; None = the whole image
    box: list[int] | None = None  # x1, y1, x2, y2 of the face in the image
    p_fake: float | None = None
    label: str | None = None  # fake | real at the model's threshold, or uncertain (too little detail to judge)
    reason: str | None = None  # why the label is uncertain
    threshold: float | None = None  # the threshold this image was judged against (higher on soft images)
    trained_on: str | None = None  # the data the model learned from: sample, kaggle:<dataset>, dir:<path>, unknown
    error: str | None = None
    explanation: str | None = None  # Grad-CAM PNG, with --explain

    def judged_above(self, threshold: float) -> bool:
        """Whether this fake or real verdict was judged against a higher threshold than ``threshold`` (a soft
        image's); an uncertain answer or an error was judged against none."""
        return self.label in ("fake", "real") and self.threshold is not None and self.threshold > threshold

    def to_dict(self) -> dict:
        """The row as a mapping in :data:`ROW_KEYS` order (JSON and CSV output)."""
        return {k: asdict(self)[k] for k in ROW_KEYS}


def expand_inputs(items: Iterable[str]) -> tuple[list[Path], list[Row]]:
    """Files as given, folders recursively (image suffixes only), glob patterns; missing ones as error rows."""
    files: list[Path] = []
    errors: list[Row] = []
    for item in items:
        path = Path(item).expanduser()
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                suffixes = ", ".join(IMAGE_SUFFIXES)
                errors.append(Row(file=item, error=f"{item}: folder holds no image files ({suffixes})"))
            files.extend(found)
        elif path.is_file():
            files.append(path)
        elif glob.has_magic(item):
            found = sorted(Path(p) for p in glob.glob(os.path.expanduser(item), recursive=True) if Path(p).is_file())
            if not found:
                errors.append(Row(file=item, error=f"{item}: the pattern matches no file"))
            files.extend(found)
        else:
            errors.append(Row(file=item, error=f"{item}: no such file or folder"))
    seen: set[Path] = set()
    unique = [f for f in files if not (f.resolve() in seen or seen.add(f.resolve()))]
    return unique, errors


def load_detector(model: str, threshold: float | None = None, device: str = "cpu") -> tuple[Detector, str]:
    """A Detector from a local model file or a ``models:/``/``runs:/`` URI, with the decision its model file
    carries (``threshold`` replaces its threshold where given); returns it and a description."""
    if model.startswith(("models:/", "runs:/")):
        from realfake.mlops import tracking
        from realfake.mlops.registry import model_artifacts

        tracking.use_existing_store()
        with model_artifacts(model) as weights:
            detector = Detector(weights, threshold=threshold, device=device)
            return detector, f"{model} (threshold {detector.threshold:.3f})"
    path = Path(model).expanduser()
    if not path.is_file():
        raise RealfakeError(
            f"--model {model}: no such file, and not a models:/ or runs:/ URI. Train one with `dvc repro`, "
            f"then use the default {CHAMPION_URI} or models/model.pt."
        )
    detector = Detector(path, threshold=threshold, device=device)
    return detector, f"{path} (threshold {detector.threshold:.3f})"


@dataclass
class _Unit:
    row: Row
    crop: Image.Image  # the image or aligned face the model sees (before fit)


def predict(
    paths: list[Path],
    detector: Detector,
    faces: str = "auto",
    explain_dir: Path | None = None,
    progress=None,
) -> list[Row]:
    """Score every face (or whole image) of ``paths``; one row per face, or per failed input."""
    if faces not in FACE_MODES:
        raise RealfakeError(f"--faces is {faces!r}; use auto, on or off.")
    rows: list[Row] = []
    units: list[_Unit] = []
    for path in paths:
        name = str(path)
        try:
            units.extend(face_units(load_rgb(path, name=name), name, faces))
        except (ImageError, NoFaceError) as exc:
            rows.append(Row(file=name, error=str(exc)))
        if progress:
            progress(1)
        if len(units) >= detector.batch_size:
            _score(units, detector, explain_dir)
            rows.extend(u.row for u in units)
            units = []
    if units:
        _score(units, detector, explain_dir)
        rows.extend(u.row for u in units)
    order = {str(p): i for i, p in enumerate(paths)}
    rows.sort(key=lambda r: (order.get(r.file, -1), r.face if r.face is not None else -1))
    return rows


def face_units(img: Image.Image, name: str, faces: str = "auto") -> list[_Unit]:
    """What the model scores in a decoded image: every face MTCNN finds, aligned, or the whole image
    (``faces`` off, or auto and a 256x256 aligned crop). :class:`NoFaceError` when it finds none."""
    if faces not in FACE_MODES:
        raise RealfakeError(f"--faces is {faces!r}; use auto, on or off.")
    if faces == "off" or (faces == "auto" and is_face_crop(img)):
        return [_Unit(Row(file=name), img)]
    return [_Unit(Row(file=name, face=k, box=list(face.box)), face.crop)
            for k, face in enumerate(detect_faces(img, name=name))]


def score_image(img: Image.Image, name: str, detector: Detector, faces: str = "auto",
                explain: bool = False) -> list[tuple[Row, Image.Image | None]]:
    """Score one decoded image (the page's uploads): each face's row, with its Grad-CAM overlay when ``explain``."""
    units = face_units(img, name, faces)
    fitted = _score(units, detector, None)
    overlays: list = [None] * len(units)
    if explain:
        from realfake.inference.explain import explanation_images

        overlays = explanation_images(detector, fitted)
    return [(u.row, o) for u, o in zip(units, overlays)]


def _score(units: list[_Unit], detector: Detector, explain_dir: Path | None) -> list:
    fitted = [detector.preprocessor.pixels(u.crop) for u in units]
    v = detector.verdicts(fitted)
    for u, score, label, reason, threshold in zip(units, v.p_fake, v.label, v.reason, v.threshold):
        u.row.p_fake, u.row.label, u.row.threshold = float(score), str(label), float(threshold)
        u.row.trained_on = detector.trained_on
        u.row.reason = str(reason) or None
    if explain_dir is not None:
        from realfake.inference.explain import save_explanations

        save_explanations(detector, fitted, [u.row for u in units], explain_dir)
    return fitted


def summary_counts(rows: list[Row]) -> tuple[int, int]:
    """(files with at least one scored face, files that failed)."""
    scored = {r.file for r in rows if r.error is None}
    failed = {r.file for r in rows if r.error is not None} - scored
    return len(scored), len(failed)


def as_table(rows: list[Row], threshold: float | None = None) -> list[list[str]]:
    """The rows as table cells: file, face, p_fake, verdict (the errors, and why a verdict is uncertain, are listed
    after the table); a fake or real verdict judged against a threshold above the model's ``threshold`` (a soft
    image's) says which."""
    out = []
    for r in rows:
        face = "" if r.face is None else f"#{r.face} {tuple(r.box)}"
        if r.face is None and r.error is None:
            face = "whole image"
        if r.error:
            out.append([r.file, face, "", "error (below)"])
        else:
            raised = threshold is not None and r.judged_above(threshold)
            verdict = r.label.upper() + (f" (t={r.threshold:.3f})" if raised else "")
            out.append([r.file, face, f"{r.p_fake:.4f}", verdict])
    return out
