"""`realfake predict` on a real photograph, sample images and every kind of bad input."""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

from helpers.images import PHOTO_KINDS, photo_as_people_have_it
from realfake.cli import app
from realfake.detector.modelfile import save_model_file
from realfake.detector.network import build_model
from realfake.detector.preprocess import InputSpec
from realfake.inference.faces import detect_faces

runner = CliRunner()


@pytest.fixture(scope="module")
def model_file(tmp_path_factory) -> Path:
    """An untrained detector: predict's mechanics do not depend on what the weights learned."""
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("model") / "model.pt"
    weights = build_model(dropout=0.2).eval().state_dict()
    save_model_file(path, weights, InputSpec(96, "crop"), {"data_fingerprint": "x"})
    return path


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory) -> Path:
    from skimage import data

    path = tmp_path_factory.mktemp("photos") / "astronaut.png"
    Image.fromarray(data.astronaut()).save(path)  # Eileen Collins, NASA: a real photograph, 512x512
    return path


def invoke(*args: str):
    return runner.invoke(app, ["predict", *args])


def json_rows(output: str) -> list[dict]:
    return [json.loads(line) for line in output.splitlines() if line.startswith("{")]


def test_mtcnn_finds_the_astronauts_face(astronaut):
    faces = detect_faces(Image.open(astronaut).convert("RGB"))
    assert len(faces) == 1
    x1, y1, x2, y2 = faces[0].box
    assert 150 < x1 < 220 and 30 < y1 < 100 and 240 < x2 < 300 and 140 < y2 < 210  # her face, not the flag
    assert faces[0].crop.size == (256, 256) and faces[0].confidence > 0.99


def test_predict_scores_the_astronaut(astronaut, model_file, tmp_path):
    res = invoke(str(astronaut), "--model", str(model_file), "--json", "--explain", str(tmp_path / "cam"))
    assert res.exit_code == 0, res.output
    (row,) = json_rows(res.stdout)
    assert list(row) == ["file", "face", "box", "p_fake", "label", "reason", "threshold", "trained_on", "error",
                         "explanation"]
    assert row["face"] == 0 and len(row["box"]) == 4 and 0 <= row["p_fake"] <= 1
    assert row["label"] in ("real", "fake") and row["threshold"] == 0.5 and row["error"] is None
    cam = Image.open(row["explanation"])
    assert cam.size == (96 * 3, 96 * 3) and cam.mode == "RGB"


def test_photos_as_people_have_them_are_scored_on_the_face_they_see(astronaut, model_file, tmp_path):
    # Sideways phone JPEG, 16-bit PNGs, HEIC, animated GIF, transparent palette PNG: one folder, as a user has it.
    folder = tmp_path / "camera-roll"
    folder.mkdir()
    upright = Image.open(astronaut).convert("RGB")
    for kind in PHOTO_KINDS:
        (folder / kind).write_bytes(photo_as_people_have_it(upright, kind))
    res = invoke(str(folder), str(astronaut), "--model", str(model_file), "--json")
    assert res.exit_code == 0, res.output
    rows = {Path(r["file"]).name: r for r in json_rows(res.stdout)}
    assert sorted(rows) == sorted([*PHOTO_KINDS, "astronaut.png"])  # the folder scan picks up .heic
    reference = np.array(rows.pop("astronaut.png")["box"])
    for name, row in rows.items():
        assert row["error"] is None and row["face"] == 0, row
        offset = 32 if name == "transparent-palette.png" else 0  # the photo sits 32 px into its canvas
        assert np.abs(np.array(row["box"]) - offset - reference).max() <= 8, (name, row["box"], reference)


def test_folder_of_sample_images_is_scored_whole(tiny_sample, model_file):
    folder = tiny_sample / "real_vs_fake" / "real-vs-fake" / "test"
    res = invoke(str(folder), "--model", str(model_file), "--csv")
    assert res.exit_code == 0, res.output
    lines = res.stdout.strip().splitlines()
    assert lines[0] == "file,face,box,p_fake,label,reason,threshold,trained_on,error,explanation"
    assert len(lines) == 1 + 12  # 6 real + 6 fake, each a 256x256 face crop scored whole
    assert all(",," in line for line in lines[1:])  # no face index, no box: the whole crop


def test_glob_and_default_table(tiny_sample, model_file):
    pattern = str(tiny_sample / "real_vs_fake" / "real-vs-fake" / "valid" / "*" / "*.jpg")
    res = invoke(pattern, "--model", str(model_file))
    assert res.exit_code == 0, res.output
    assert "whole image" in res.stdout and ("REAL" in res.stdout or "FAKE" in res.stdout)
    assert "12 face(s) scored in 12 file(s); 0 input(s) failed" in res.output


def _jpeg(img: Image.Image, **kw) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="JPEG", **kw)
    return buf.getvalue()


@pytest.fixture
def bad_inputs(tmp_path) -> dict[str, Path]:
    rng = np.random.default_rng(0)
    face_sized = Image.fromarray(rng.integers(0, 256, (256, 256, 3), dtype=np.uint8))
    d = tmp_path / "inputs"
    d.mkdir()
    files = {}
    (files.setdefault("text", d / "notes.jpg")).write_text("this is not an image")
    data = _jpeg(face_sized, quality=90)
    (files.setdefault("truncated", d / "truncated.jpg")).write_bytes(data[: len(data) // 2])
    (files.setdefault("empty", d / "empty.jpg")).write_bytes(b"")
    face_sized.convert("RGBA").save(files.setdefault("alpha", d / "alpha.png"))
    face_sized.convert("L").save(files.setdefault("gray", d / "gray.jpg"))
    face_sized.convert("CMYK").save(files.setdefault("cmyk", d / "cmyk.jpg"))
    Image.new("RGB", (1, 1), (128, 64, 32)).save(files.setdefault("tiny", d / "one_pixel.png"))
    Image.new("L", (10_000, 10_000)).save(files.setdefault("bomb", d / "bomb.png"), optimize=True)
    from skimage import data as skdata

    Image.fromarray(skdata.coffee()).save(files.setdefault("no_face", d / "coffee.jpg"))
    return files


def test_bad_inputs_each_get_one_clear_line_and_the_rest_is_scored(bad_inputs, model_file):
    res = invoke(*map(str, bad_inputs.values()), "--model", str(model_file), "--json")
    assert res.exit_code == 1
    rows = {Path(r["file"]).name: r for r in json_rows(res.stdout)}
    errors = {name: r["error"] for name, r in rows.items() if r["error"]}
    assert errors["notes.jpg"].endswith("notes.jpg: not an image file (no known image format).")
    assert "truncated.jpg: the image cannot be decoded" in errors["truncated.jpg"]
    assert errors["empty.jpg"].endswith("empty.jpg: the file is empty (0 bytes).")
    assert "one_pixel.png: 1x1 pixels is too small to look for a face" in errors["one_pixel.png"]
    assert "bomb.png: 10000x10000 pixels is over the 50,000,000-pixel limit" in errors["bomb.png"]
    assert "coffee.jpg: no face found; score the whole image with --faces off" in errors["coffee.jpg"]
    for ok in ("alpha.png", "gray.jpg", "cmyk.jpg"):  # converted to RGB and scored
        assert rows[ok]["error"] is None and 0 <= rows[ok]["p_fake"] <= 1, rows[ok]
    stderr_lines = [line for line in res.stderr.splitlines() if line.startswith("error: ")]
    assert len(stderr_lines) == 6, res.stderr
    assert "3 face(s) scored in 3 file(s); 6 input(s) failed" in res.stderr


def test_without_face_detection_every_decodable_image_is_scored(bad_inputs, model_file):
    files = [bad_inputs[k] for k in ("no_face", "tiny", "alpha")]
    res = invoke(*map(str, files), "--model", str(model_file), "--faces", "off", "--json")
    assert res.exit_code == 0, res.output
    assert [r["face"] for r in json_rows(res.stdout)] == [None, None, None]


def test_missing_input_is_reported_and_others_scored(tiny_sample, model_file, tmp_path):
    one = next((tiny_sample / "real_vs_fake" / "real-vs-fake" / "test" / "real").iterdir())
    res = invoke(str(one), str(tmp_path / "nope.jpg"), "--model", str(model_file), "--json")
    assert res.exit_code == 1
    rows = json_rows(res.stdout)
    assert sum(r["error"] is None for r in rows) == 1
    assert "nope.jpg: no such file or folder" in res.stderr


def test_unreadable_and_foreign_model_files(tmp_path, astronaut):
    broken = tmp_path / "broken.pt"
    broken.write_bytes(b"\x00garbage")
    res = invoke(str(astronaut), "--model", str(broken))
    assert res.exit_code == 2 and "cannot be read as a realfake model file" in res.stderr
    foreign = tmp_path / "resnet.pt"
    torch.save({"fc.weight": torch.zeros(2, 2)}, foreign)
    res = invoke(str(astronaut), "--model", str(foreign))
    assert res.exit_code == 2 and "is not a realfake model file" in res.stderr
    res = invoke(str(astronaut), "--model", str(tmp_path / "missing.pt"))
    assert res.exit_code == 2 and "no such file, and not a models:/ or runs:/ URI" in res.stderr
    assert "Traceback" not in res.output


def test_registry_uris(tmp_path, monkeypatch, model_file, astronaut):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    monkeypatch.chdir(tmp_path)
    from helpers.models import with_decision
    from realfake.mlops import tracking
    from realfake.mlops.registry import Candidate, RegisterConfig, log_pyfunc, register

    res = invoke(str(astronaut), "--model", "models:/realfake@champion")
    assert res.exit_code == 2 and "No MLflow store at" in res.stderr
    assert not (tmp_path / "mlflow.db").exists(), "predict must not create a store"
    mlflow = tracking.setup(tmp_path)
    res = invoke(str(astronaut), "--model", "models:/realfake@champion")
    assert res.exit_code == 2 and "models:/realfake@champion cannot be loaded from the MLflow store" in res.stderr
    with mlflow.start_run() as run:
        info = log_pyfunc(with_decision(model_file, 0.37), example_image=None)
        figures = {"test_roc_auc": 0.95, "robust_mean_auc": 0.9, "robust_score": 0.9}
        register(Candidate(info.model_uri, run.info.run_id, "x", figures), RegisterConfig(), lambda cur: (None, None))
    res = invoke(str(astronaut), "--model", "models:/realfake@champion", "--json")
    assert res.exit_code == 0, res.output
    (row,) = json_rows(res.stdout)
    assert row["threshold"] == pytest.approx(0.37)  # the registered model file's threshold, not 0.5
    res = invoke(str(astronaut), "--model", "models:/realfake@challenger")
    assert res.exit_code == 2 and "models:/realfake@challenger cannot be loaded" in res.stderr


def test_the_table_comes_first_and_each_error_once_after_it(bad_inputs, model_file):
    files = [bad_inputs[k] for k in ("no_face", "alpha")]
    res = invoke(*map(str, files), "--model", str(model_file))
    assert res.exit_code == 1
    out = res.output
    assert out.count("no face found") == 1, out  # once, not in the table as well
    assert out.index("model:") < out.rindex("┘") < out.index("error: ") < out.index("1 face(s) scored"), out
    assert "error (below)" in res.stdout


def test_every_verdict_says_which_data_the_model_learned_from():
    from realfake.data.config import DataConfig
    from realfake.detector.modelfile import trained_on_label, trained_on_note

    sample = DataConfig().trained_on("0123456789abcdef0123", 2000)
    assert trained_on_label(sample) == "sample"
    note = trained_on_note(sample)
    assert "embedded sample" in note and "2,000 training images" in note and "0123456789ab" in note
    assert "never a real photograph" in note and "dvc exp run -S data.source=kaggle" in note
    kaggle = DataConfig(source="kaggle").trained_on("f" * 40, 100_000)
    assert trained_on_label(kaggle) == "kaggle:xhlulu/140k-real-and-fake-faces"
    assert trained_on_note(kaggle).startswith("Trained on Kaggle's xhlulu/140k-real-and-fake-faces (100,000 training")
    assert "data.source" not in trained_on_note(kaggle)
    assert trained_on_label(DataConfig(source="dir", dir="/data/faces").trained_on("a", 10)) == "dir:/data/faces"
    for old in (None, {}, {"source": "elsewhere"}):  # a model file from before the entry
        assert trained_on_label(old) == "unknown" and "does not say" in trained_on_note(old)
