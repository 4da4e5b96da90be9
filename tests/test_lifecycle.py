"""End to end, the model lifecycle: `dvc repro` trains, evaluates and registers; experiments
(`dvc exp run`, queued or not) show up in DVC and in the one MLflow store; the champion serves."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pandas as pd
import pytest
import yaml

from helpers.project import TINY_HELDOUT, clone_project, find_key, run
from helpers.servers import first_answer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> Path:
    repo = clone_project(tmp_path_factory.mktemp("lifecycle"))
    run(["dvc", "repro"], repo)
    return repo


def client(repo: Path):
    import mlflow

    return mlflow.MlflowClient(tracking_uri=f"sqlite:///{repo / 'mlflow.db'}")


def test_repro_runs_all_seven_stages_into_one_mlflow_run(repo):
    for out in ("data/packed/index.json", "data/packed/train.npy", "models/model.pt", "models/run.json",
                "reports/train/history.csv", "reports/eval/metrics.json", "reports/eval/plots/roc.png",
                "reports/eval/plots/errors.png", "reports/register.json",
                "data/heldout/heldout.csv", "reports/robustness/metrics.json", "reports/robustness/auc.csv",
                "reports/robustness/auc.png"):
        assert (repo / out).is_file(), out
    lock = yaml.safe_load((repo / "dvc.lock").read_text())["stages"]
    assert "data/packed" in {d["path"] for d in lock["train"]["deps"]}, "train reads the packed store"
    assert "data/raw" not in {d["path"] for d in lock["train"]["deps"]}
    run_id = json.loads((repo / "models/run.json").read_text())["run_id"]
    c = client(repo)
    r = c.get_run(run_id)
    metrics = json.loads((repo / "reports/eval/metrics.json").read_text())
    assert r.data.metrics["test_roc_auc"] == pytest.approx(metrics["test"]["roc_auc"])
    assert "val_auc" in r.data.metrics and "best_val_auc" in r.data.metrics
    assert len(c.get_metric_history(run_id, "val_auc")) == 1  # one epoch, one step
    assert r.data.params["train.epochs"] == "1" and r.data.params["data.source"] == "sample"
    assert r.data.tags["git_commit"] and r.data.tags["data_fingerprint"] == metrics["data_fingerprint"]
    assert r.info.run_name == r.data.tags["git_commit"][:7]
    artifacts = {a.path for a in c.list_artifacts(run_id, "eval")}
    assert {"eval/roc.png", "eval/confusion.png", "eval/metrics.json"} <= artifacts
    reg = json.loads((repo / "reports/register.json").read_text())
    assert reg["version"] == 1 and reg["alias_moved"] and reg["run_id"] == run_id
    assert int(c.get_model_version_by_alias("realfake", "champion").version) == 1

    # robustness: one row per perturbation plus clean, the clean row is the evaluate stage's test
    # score, each held-out family is scored against the test reals, all in the same MLflow run.
    robust = json.loads((repo / "reports/robustness/metrics.json").read_text())
    table = pd.read_csv(repo / "reports/robustness/auc.csv")
    n_perturbations = len(yaml.safe_load((repo / "params.yaml").read_text())["robustness"]["perturbations"])
    assert len(table) == n_perturbations + 1 and table["name"].iloc[0] == "clean"
    assert table[["auc", "acc"]].notna().all().all() and table["auc"].between(0, 1).all()
    assert robust["clean"]["auc"] == pytest.approx(metrics["test"]["roc_auc"], abs=1e-6)
    assert robust["threshold"] == pytest.approx(metrics["threshold"])
    families = yaml.safe_load((repo / "params.yaml").read_text())["data"]["sample"]["heldout"]["families"]
    assert list(robust["cross_generator"]["families"]) == families
    assert all(m["n_fake"] == TINY_HELDOUT for m in robust["cross_generator"]["families"].values())
    assert 0 <= robust["cross_generator_auc"] <= 1
    assert list(pd.read_csv(repo / "reports/robustness/families.csv")["family"]) == families
    assert r.data.metrics["robust_clean_auc"] == pytest.approx(robust["clean"]["auc"])
    assert r.data.metrics["robust_jpeg_q50_auc"] == pytest.approx(robust["perturbations"]["jpeg_q50"]["auc"])
    assert r.data.metrics["robust_cross_generator_auc"] == pytest.approx(robust["cross_generator_auc"])
    tconv = robust["cross_generator"]["families"]["tconv"]
    assert r.data.metrics["robust_heldout_tconv_auc"] == pytest.approx(tconv["auc"])
    assert "test_tpr_at_fpr_1pct" in r.data.metrics
    assert {"robustness/metrics.json", "robustness/auc.csv", "robustness/auc.png"} <= {
        a.path for a in c.list_artifacts(run_id, "robustness")}
    shown = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    assert robust["cross_generator_auc"] in find_key(shown, "cross_generator_auc")

    again = run(["dvc", "repro"], repo)
    assert "Running stage" not in again.stdout


def test_champion_loads_and_predicts(repo):
    import mlflow
    import pandas as pd

    mlflow.set_tracking_uri(f"sqlite:///{repo / 'mlflow.db'}")
    model = mlflow.pyfunc.load_model("models:/realfake@champion")
    paths = sorted((repo / "data/raw/real_vs_fake/real-vs-fake/test/fake").iterdir())[:2]
    by_bytes = model.predict(pd.DataFrame({"image": [p.read_bytes() for p in paths]}))
    by_path = model.predict(pd.DataFrame({"path": [str(p) for p in paths]}))
    assert list(by_bytes.columns) == ["p_fake", "label"]
    assert by_bytes["p_fake"].between(0, 1).all() and set(by_bytes["label"]) <= {"real", "fake"}
    pd.testing.assert_frame_equal(by_bytes, by_path)
    preds = pd.read_csv(repo / "reports/eval/plots/predictions.csv").set_index("path")
    for p, score in zip(paths, by_bytes["p_fake"]):
        assert score == pytest.approx(preds.loc[f"test/fake/{p.name}", "p_fake"], abs=1e-5)


def test_experiment_shows_up_in_dvc_and_mlflow(repo):
    run(["dvc", "exp", "run", "-n", "lr-low", "-S", "train.lr=0.0001"], repo)
    show = json.loads(run(["dvc", "exp", "show", "--json"], repo).stdout)
    assert "lr-low" in json.dumps(show)
    assert 0.0001 in find_key(show, "lr")
    c = client(repo)
    experiment = c.get_experiment_by_name("realfake").experiment_id
    runs = c.search_runs([experiment], filter_string="attributes.run_name = 'lr-low'")
    assert len(runs) == 1
    assert runs[0].data.params["train.lr"] == "0.0001" and runs[0].data.tags["dvc_exp_name"] == "lr-low"
    assert "test_roc_auc" in runs[0].data.metrics
    versions = c.search_model_versions("name='realfake'")
    assert len(versions) == 2


def test_queued_experiment_logs_to_the_main_store_and_outlives_its_temp_copy(repo):
    run(["dvc", "exp", "run", "--queue", "-n", "queued-lr", "-S", "train.lr=0.0005"], repo)
    run(["dvc", "queue", "start", "-j", "1"], repo)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        status = run(["dvc", "queue", "status"], repo).stdout
        if "queued-lr" in status and ("Success" in status or "Failed" in status):
            break
        time.sleep(3)
    assert "Success" in status, status + run(["dvc", "queue", "logs", "queued-lr"], repo, check=False).stdout
    run(["dvc", "queue", "stop", "--kill"], repo, check=False)
    c = client(repo)
    exp = c.get_experiment_by_name("realfake")
    runs = c.search_runs([exp.experiment_id], filter_string="attributes.run_name = 'queued-lr'")
    assert len(runs) == 1, "the queued run must log into the main repository's store"
    r = runs[0]
    assert r.data.params["train.lr"] == "0.0005" and "test_roc_auc" in r.data.metrics
    assert not list((repo / ".dvc/tmp/exps").glob("tmp*/models")), "DVC removed its temporary copy"
    local = Path(c.download_artifacts(r.info.run_id, "eval/metrics.json", str(repo / "dl")))
    assert json.loads(local.read_text())["test"]["roc_auc"] == pytest.approx(r.data.metrics["test_roc_auc"])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_mlflow_serves_the_champion_over_rest(repo):
    port = _free_port()
    env = dict(os.environ, MLFLOW_TRACKING_URI=f"sqlite:///{repo / 'mlflow.db'}", MLFLOW_DISABLE_TELEMETRY="true")
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env['PATH']}"
    server = subprocess.Popen(
        ["mlflow", "models", "serve", "-m", "models:/realfake@champion", "--env-manager", "local",
         "-h", "127.0.0.1", "-p", str(port)],
        cwd=repo, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        image = sorted((repo / "data/raw/real_vs_fake/real-vs-fake/test/real").iterdir())[0]
        encoded = base64.b64encode(image.read_bytes()).decode()
        body = json.dumps({"dataframe_split": {"columns": ["image"], "data": [[encoded]]}})
        url = f"http://127.0.0.1:{port}/invocations"
        req = urllib.request.Request(url, body.encode(), {"Content-Type": "application/json"})
        (pred,) = json.loads(first_answer(server, req))["predictions"]
        assert 0.0 <= pred["p_fake"] <= 1.0 and pred["label"] in ("real", "fake")
    finally:
        server.terminate()
        server.wait(timeout=30)
