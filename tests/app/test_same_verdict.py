"""One image, one verdict: predict, the API (what the page shows), and the served MLflow model give the same
p_fake, label, threshold and reason for the same image, "uncertain" and a soft image's higher threshold included,
from the decision in the model file."""

from __future__ import annotations

import io
import json

import pandas as pd
import pytest
import requests
from typer.testing import CliRunner

from helpers.models import with_decision
from helpers.servers import ThreadedServer
from realfake.app.server import create_app
from realfake.app.service import ModelHolder
from realfake.cli import app as cli
from realfake.detector.decision import TOO_SOFT, Decision
from realfake.detector.modelfile import load_model_file
from realfake.detector.scoring import Detector


@pytest.mark.parametrize("which", ["decided", "stricter_when_soft"])
def test_predict_the_api_and_the_served_model_agree(which, faces, tmp_path, monkeypatch, request):
    import mlflow

    from realfake.mlops import registry, tracking

    decided = request.getfixturevalue(which)
    files = faces
    order = ["sharp", "blurred"]
    # realfake predict --json
    res = CliRunner().invoke(cli, ["predict", *(str(files[k]) for k in order), "--model", str(decided), "--json"])
    assert res.exit_code == 0, res.output
    by_predict = [json.loads(line) for line in res.stdout.splitlines()]
    assert by_predict[0]["label"] in ("real", "fake") and by_predict[0]["reason"] is None
    trained_on = "unknown" if which == "decided" else "sample"  # and the note says so, with what to run instead
    assert {r["trained_on"] for r in by_predict} == {trained_on}
    assert ("dvc exp run -S data.source=kaggle" in res.stderr) == (trained_on == "sample")
    assert by_predict[0]["threshold"] == 0.3
    if which == "decided":
        assert [r["label"] for r in by_predict][1] == "uncertain" and by_predict[1]["reason"] == TOO_SOFT
    else:  # judged, against the soft images' threshold
        assert by_predict[1]["threshold"] == 0.97 and by_predict[1]["reason"] is None
        assert by_predict[1]["label"] == ("fake" if by_predict[1]["p_fake"] >= 0.97 else "real")
    # the API behind the page
    with ThreadedServer(create_app(ModelHolder(str(decided)))) as url:
        by_api = []
        for k in order:
            r = requests.post(f"{url}/api/predict", files={"file": (k, files[k].read_bytes())}, timeout=120)
            assert r.status_code == 200, r.text
            (face,) = r.json()["faces"]
            by_api.append(face)
            assert r.json()["model"]["trained_on"] == trained_on
    # the served model: the pyfunc MLflow loads (and `mlflow models serve` runs)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    tracking.setup(tmp_path)
    with mlflow.start_run():
        info = registry.log_pyfunc(decided, None)
    served = mlflow.pyfunc.load_model(info.model_uri).predict(
        pd.DataFrame({"image": [files[k].read_bytes() for k in order]}))
    for i in range(len(order)):
        label, p = by_predict[i]["label"], by_predict[i]["p_fake"]
        assert by_api[i]["verdict"] == label == served["label"][i]
        assert by_api[i]["p_fake"] == pytest.approx(p, abs=1e-6) and served["p_fake"][i] == pytest.approx(p, abs=1e-6)
        assert (by_api[i]["reason"] or "") == (by_predict[i]["reason"] or "") == served["reason"][i]
        assert by_api[i]["threshold"] == by_predict[i]["threshold"] == served["threshold"][i]
        assert served["trained_on"][i] == trained_on


def test_a_threshold_given_on_the_command_line_keeps_the_uncertain_rule(decided, faces):
    files = faces
    res = CliRunner().invoke(cli, ["predict", str(files["blurred"]), "--model", str(decided), "--json",
                                   "--threshold", "0.9"])
    (row,) = [json.loads(line) for line in res.stdout.splitlines()]
    assert row["threshold"] == 0.9 and row["label"] == "uncertain"


def test_a_malformed_decision_is_a_clear_error(model_file, tmp_path):
    import shutil

    from realfake.detector.modelfile import add_entry
    from realfake.errors import RealfakeError

    broken = tmp_path / "broken.pt"
    shutil.copy(model_file, broken)
    add_entry(broken, "decision", {"threshold": 2.0, "coef": [1.0], "intercept": 0.0})
    with pytest.raises(RealfakeError, match="its decision entry is malformed.*train the model again"):
        Detector(broken)
    res = CliRunner().invoke(cli, ["predict", str(io.__file__), "--model", str(broken)])
    assert res.exit_code == 2 and "decision entry is malformed" in res.stderr


def test_the_table_says_when_a_soft_image_was_judged_against_a_higher_threshold(stricter_when_soft, faces, tmp_path):
    # a table wide enough for the temporary paths (under pytest-xdist, .../popen-gw1/...) on one line each
    res = CliRunner(env={"COLUMNS": "300"}).invoke(cli, ["predict", str(faces["sharp"]), str(faces["blurred"]),
                                                         "--model", str(stricter_when_soft)])
    assert res.exit_code == 0, res.output
    (blurred,) = [line for line in res.stdout.splitlines() if faces["blurred"].name in line]
    (sharp,) = [line for line in res.stdout.splitlines() if faces["sharp"].name in line]
    assert "(t=0.970)" in blurred and "(t=" not in sharp
    assert "t=: judged against a soft image's threshold, above 0.300" in res.stderr
    # an uncertain answer was judged against no threshold: nothing to mark
    soft_level = Decision.from_entry(load_model_file(stricter_when_soft)[2]["decision"], "m").soft_thresholds[0][0]
    unsure = with_decision(stricter_when_soft, 0.3, soft_level, folder=tmp_path, soft=[(soft_level, 0.97)])
    res = CliRunner().invoke(cli, ["predict", str(faces["blurred"]), "--model", str(unsure)])
    assert res.exit_code == 0 and "UNCERTAIN" in res.stdout and "(t=" not in res.stdout and "t=:" not in res.stderr
