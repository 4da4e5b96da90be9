"""A running ``realfake app`` (an untrained model file: the page's mechanics do not depend on
what the weights learned) and the photos a user would try on it."""

from __future__ import annotations

import io
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from helpers.servers import ThreadedServer
from realfake.app.server import create_app
from realfake.app.service import Limits, ModelHolder
from realfake.detector.modelfile import save_model_file
from realfake.detector.network import build_model
from realfake.detector.preprocess import InputSpec

#: The running app's upload limit: small, so a test can exceed it cheaply.
MAX_BYTES = 2 * 1024 * 1024


@pytest.fixture(scope="package")
def model_file(tmp_path_factory) -> Path:
    torch.manual_seed(0)
    path = tmp_path_factory.mktemp("app-model") / "model.pt"
    save_model_file(path, build_model(dropout=0.2).eval().state_dict(), InputSpec(96, "crop"), {})
    return path


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
