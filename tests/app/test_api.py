"""The JSON API of `realfake app`: faces, boxes and scores for an upload; a clear 4xx for every bad one."""

from __future__ import annotations

import base64
import io
from concurrent.futures import ThreadPoolExecutor

import pytest
import requests
from PIL import Image

from realfake.detector.modelfile import trained_on_note


def upload(url: str, name: str, data: bytes, **params) -> requests.Response:
    return requests.post(f"{url}/api/predict", files={"file": (name, data)}, params=params, timeout=120)


def test_a_photo_gets_every_face_boxed_and_scored(app_url, photos, model_file):
    r = upload(app_url, "astronaut.png", photos["face"].read_bytes())
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["file"] == "astronaut.png" and (body["width"], body["height"]) == (512, 512)
    assert body["model"] == {"model": str(model_file), "version": None, "threshold": 0.5, "trained_on": "unknown",
                             "trained_on_note": trained_on_note(None)}
    (face,) = body["faces"]
    x1, y1, x2, y2 = face["box"]
    assert 150 < x1 < 220 and 30 < y1 < 100 and 240 < x2 < 300 and 140 < y2 < 210  # her face, as predict finds
    assert 0 <= face["p_fake"] <= 1 and face["verdict"] == ("fake" if face["p_fake"] >= 0.5 else "real")
    assert face["reason"] is None and face["explanation"] is None  # a model file without a decision: never uncertain
    preview = Image.open(io.BytesIO(base64.b64decode(body["preview"].split(",", 1)[1])))
    assert preview.size == (512, 512)


def test_the_api_agrees_with_realfake_predict(app_url, photos, model_file):
    from realfake.inference.predict import load_detector, predict

    detector, _ = load_detector(str(model_file))
    (row,) = predict([photos["face"]], detector)
    face = upload(app_url, "astronaut.png", photos["face"].read_bytes()).json()["faces"][0]
    assert face["box"] == row.box and face["p_fake"] == pytest.approx(row.p_fake, abs=1e-6)


def test_grad_cam_on_demand(app_url, photos):
    face = upload(app_url, "astronaut.png", photos["face"].read_bytes(), explain="true").json()["faces"][0]
    assert face["explanation"].startswith("data:image/png;base64,")
    cam = Image.open(io.BytesIO(base64.b64decode(face["explanation"].split(",", 1)[1])))
    assert cam.size == (96 * 3, 96 * 3)


@pytest.mark.parametrize(
    ("kind", "status", "message"),
    [
        ("no_face", 422, "coffee.jpg: no face found"),
        ("broken", 415, "broken.jpg: not an image file"),
        ("truncated", 400, "truncated.jpg: the image cannot be decoded"),
        ("empty", 400, "empty.png: the file is empty (0 bytes)"),
        ("bomb", 413, "bomb.png: 10000x10000 pixels is over the 50,000,000-pixel limit"),
    ],
)
def test_bad_uploads_get_a_clear_4xx_and_the_server_keeps_serving(app_url, photos, kind, status, message):
    r = upload(app_url, photos[kind].name, photos[kind].read_bytes())
    assert r.status_code == status and message in r.json()["error"], r.text
    assert r.json().get("code") == ("no_face" if kind == "no_face" else None), "a name only for the case to act on"
    assert upload(app_url, "astronaut.png", photos["face"].read_bytes()).status_code == 200


def test_uploads_over_the_limit_are_refused(app_url, noise_bytes):
    # Just over: the file part is read up to the limit and refused; far over: refused by its Content-Length.
    for data in (noise_bytes, noise_bytes * 2):
        r = upload(app_url, "huge.jpg", data)
        assert r.status_code == 413 and "over the 2,097,152-byte upload limit" in r.json()["error"], r.text


def test_concurrent_uploads_each_get_their_answer(app_url, photos):
    face, coffee = photos["face"].read_bytes(), photos["no_face"].read_bytes()
    jobs = [("astronaut.png", face), ("coffee.jpg", coffee)] * 4
    with ThreadPoolExecutor(8) as pool:
        answers = list(pool.map(lambda job: upload(app_url, *job), jobs))
    assert [a.status_code for a in answers] == [200, 422] * 4
    assert len({a.json()["faces"][0]["p_fake"] for a in answers[::2]}) == 1  # same photo, same score


def test_no_request_reads_a_file_by_path(app_url, model_file):
    # The only input is the uploaded bytes: a path as the file name or a form field is not opened.
    r = requests.post(f"{app_url}/api/predict", files={"file": (str(model_file), b"")}, timeout=30)
    assert r.status_code == 400 and "the file is empty" in r.json()["error"]
    r = requests.post(f"{app_url}/api/predict", data={"path": str(model_file)}, timeout=30)
    assert r.status_code == 422  # no file part: FastAPI's validation error, nothing read
    for probe in ("/static/../../pyproject.toml", "/static/%2e%2e/%2e%2e/pyproject.toml"):
        assert requests.get(app_url + probe, timeout=30).status_code == 404
    api = requests.get(f"{app_url}/openapi.json", timeout=30).json()
    assert sorted(api["paths"]) == ["/api/model", "/api/predict"]


def test_model_endpoint_and_docs(app_url, model_file):
    info = requests.get(f"{app_url}/api/model", timeout=30).json()
    assert info["model"] == str(model_file) and info["threshold"] == 0.5 and info["max_bytes"] > 0
    assert requests.get(f"{app_url}/docs", timeout=30).status_code == 200


def test_the_server_binds_to_localhost_by_default():
    import inspect

    from realfake.app.server import serve
    from realfake.cli import web_app

    assert inspect.signature(serve).parameters["host"].default == "127.0.0.1"
    assert inspect.signature(web_app).parameters["host"].default.default == "127.0.0.1"


def test_the_schema_documents_every_error_answer_with_its_body(app_url):
    schema = requests.get(f"{app_url}/openapi.json", timeout=30).json()
    answers = schema["paths"]["/api/predict"]["post"]["responses"]
    assert {"200", "400", "413", "415", "422"} <= set(answers)
    for code in ("400", "413", "415"):
        ref = answers[code]["content"]["application/json"]["schema"]["$ref"]
        assert ref.endswith("/ErrorBody") and answers[code]["description"]
    assert schema["components"]["schemas"]["ErrorBody"]["required"] == ["error"]


def test_the_docs_and_the_icon_are_served_by_the_app_itself(app_url):
    docs = requests.get(f"{app_url}/docs", timeout=30)
    assert docs.status_code == 200 and "swagger-ui-bundle.js" in docs.text
    assert "cdn." not in docs.text and "https://" not in docs.text.split("<body")[0], "no asset from outside"
    icon = requests.get(f"{app_url}/favicon.ico", timeout=30)
    assert icon.status_code == 200 and icon.headers["content-type"].startswith("image/svg+xml")


def test_a_face_judged_at_the_models_threshold_reports_that_same_number(model_file, faces, tmp_path):
    """The page marks a face "on a soft image" when its threshold is above the model's: a face judged at the model's
    own threshold must report the same number, whatever the threshold's float digits (the shipped one is a float32's
    0.7370998...)."""
    from helpers.models import with_decision
    from realfake.app.service import Limits, ModelHolder, analyse

    holder = ModelHolder(str(with_decision(model_file, 0.7370998263359070, None, folder=tmp_path)))
    answer = analyse(faces["sharp"].read_bytes(), "sharp.png", holder, Limits())
    assert answer["faces"][0]["threshold"] == answer["model"]["threshold"] == 0.7371
