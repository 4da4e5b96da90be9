"""A team's shared MLflow: the pipeline logs to a tracking server through MLFLOW_TRACKING_URI, no code change."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from helpers.project import clone_project, run
from helpers.servers import first_answer, free_port

pytestmark = pytest.mark.slow


@pytest.fixture
def mlflow_server(tmp_path):
    port = free_port()
    store = tmp_path / "server"
    store.mkdir()
    env = dict(os.environ, MLFLOW_DISABLE_TELEMETRY="true")
    log = (tmp_path / "server.log").open("w")  # a file, not a pipe: a pipe nobody reads fills, and the server blocks
    server = subprocess.Popen(
        [str(Path(sys.executable).parent / "mlflow"), "server",
         "--backend-store-uri", f"sqlite:///{store / 'tracking.db'}",
         "--artifacts-destination", str(store / "artifacts"),
         "--host", "127.0.0.1", "--port", str(port), "--workers", "1"],
        cwd=store, env=env, stdout=log, stderr=subprocess.STDOUT, text=True,
    )
    url = f"http://127.0.0.1:{port}"
    first_answer(server, f"{url}/health")
    yield url, store
    server.terminate()
    server.wait(timeout=30)
    log.close()


def test_pipeline_logs_and_registers_on_a_tracking_server(mlflow_server, tmp_path):
    url, store = mlflow_server
    (tmp_path / "repo").mkdir()
    repo = clone_project(tmp_path / "repo")
    env = dict(os.environ, MLFLOW_TRACKING_URI=url)
    run(["dvc", "repro"], repo, env=env)
    assert not (repo / "mlflow.db").exists() and not (repo / "mlruns").exists(), "nothing may land in the local store"
    import mlflow

    client = mlflow.MlflowClient(tracking_uri=url)
    run_id = json.loads((repo / "models/run.json").read_text())["run_id"]
    r = client.get_run(run_id)
    assert "eval/test_roc_auc" in r.data.metrics and r.data.params["train.epochs"] == "1"
    assert {a.path for a in client.list_artifacts(run_id, "eval")} >= {"eval/roc.png", "eval/metrics.json"}
    assert any((store / "artifacts").rglob("roc.png")), "artifacts go to the server's artifact store"
    assert int(client.get_model_version_by_alias("realfake", "champion").version) == 1
