"""A running ``realfake app`` (an untrained model file: the page's mechanics do not depend on
what the weights learned) and the photos a user would try on it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, ImageFilter

from helpers.models import with_decision
from helpers.servers import ThreadedServer
from realfake.app.server import create_app
from realfake.app.service import Limits, ModelHolder
from realfake.data.config import DataConfig
from realfake.detector.modelfile import save_model_file
from realfake.detector.network import build_model
from realfake.detector.preprocess import InputSpec, Preprocessor
from realfake.detector.scoring import Detector, image_detail

#: The running app's upload limit: small, so a test can exceed it cheaply.
MAX_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="package")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("app-model") / "model.pt"
    save_model_file(path, build_model(dropout=0.2).eval().state_dict(), InputSpec(96, "crop"), {})
    return path


@pytest.fixture(scope="package")
def faces(tiny_sample, tmp_path_factory):
    """A sharp 256x256 face crop (scored whole, as training crops are), and the same face blurred."""
    src = sorted((tiny_sample / "real_vs_fake/real-vs-fake/test/fake").iterdir())[0]
    d = tmp_path_factory.mktemp("faces")
    with Image.open(src) as im:
        sharp = im.convert("RGB")
    files = {"sharp": d / "sharp.png", "blurred": d / "blurred.png"}
    sharp.save(files["sharp"])
    sharp.filter(ImageFilter.GaussianBlur(3)).save(files["blurred"])
    return files


@pytest.fixture(scope="package")
def decided(model_file, faces, tmp_path_factory):
    """The app's model file with a decision whose "uncertain" level lies between the two faces' detail."""
    files = faces
    pre = Preprocessor(Detector(model_file).spec)
    detail = {k: float(image_detail(torch.from_numpy(pre.load(p))[None])[0, 1]) for k, p in files.items()}
    assert detail["blurred"] < detail["sharp"], "a blur takes fine detail away"
    level = (detail["blurred"] + detail["sharp"]) / 2
    return with_decision(model_file, 0.3, level, folder=tmp_path_factory.mktemp("decided"))


@pytest.fixture(scope="package")
def stricter_when_soft(model_file, faces, tmp_path_factory):
    """The app's model file with a decision that judges every image, the blurred face against a higher threshold
    (0.97) than the sharp one (0.3); trained, it says, on the embedded sample."""
    pre = Preprocessor(Detector(model_file).spec)
    detail = {k: float(image_detail(torch.from_numpy(pre.load(p))[None])[0, 1]) for k, p in faces.items()}
    level = (detail["blurred"] + detail["sharp"]) / 2
    sample = DataConfig().trained_on("0123456789abcdef", 2000)
    return with_decision(model_file, 0.3, None, folder=tmp_path_factory.mktemp("soft"), soft=[(level, 0.97)],
                         trained_on=sample)


@pytest.fixture(scope="package")
def decided_url(decided) -> str:
    """A running app answering with :func:`decided`."""
    with ThreadedServer(create_app(ModelHolder(str(decided)))) as url:
        yield url


@pytest.fixture(scope="package")
def app_url(model_file) -> str:
    app = create_app(ModelHolder(str(model_file)), Limits(max_bytes=MAX_BYTES))
    with ThreadedServer(app) as url:
        yield url


@pytest.fixture(scope="package")
def photos(tmp_path_factory) -> dict[str, Path]:
    """A real photograph with a face, a photo without one, and files that are not images."""
    from skimage import data

    d = tmp_path_factory.mktemp("uploads")
    files = {
        "face": d / "astronaut.png",
        "no_face": d / "coffee.jpg",
        "broken": d / "broken.jpg",
        "truncated": d / "truncated.jpg",
        "empty": d / "empty.png",
        "bomb": d / "bomb.png",
    }
    Image.fromarray(data.astronaut()).save(files["face"])  # Eileen Collins, NASA: a real photograph
    Image.fromarray(data.coffee()).save(files["no_face"])
    files["broken"].write_text("this is a text file with a .jpg name")
    buf = io.BytesIO()
    Image.fromarray(data.astronaut()).save(buf, format="JPEG")
    files["truncated"].write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    files["empty"].write_bytes(b"")
    Image.new("L", (10_000, 10_000)).save(files["bomb"], optimize=True)  # ~100 KB that decodes to 100 Mpx
    return files


@pytest.fixture(scope="package")
def noise_bytes() -> bytes:
    """More bytes than the app accepts."""
    return np.random.default_rng(0).integers(0, 256, MAX_BYTES + 1024, dtype=np.uint8).tobytes()
