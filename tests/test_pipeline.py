"""End to end: `dvc repro` in a temporary clone of the project, as a user runs it."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import yaml

from conftest import REPO

pytestmark = pytest.mark.slow

TINY_SIZES = {"train": 10, "valid": 4, "test": 4}
TINY_HELDOUT = 4  # held-out fakes (data/heldout) for the cross-generator check


def run(cmd: list[str], cwd: Path, check: bool = True, env: dict | None = None) -> subprocess.CompletedProcess:
    env = dict(env or os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env.update(DVC_NO_ANALYTICS="1", MLFLOW_DISABLE_TELEMETRY="true", GX_ANALYTICS_ENABLED="False")
    proc = subprocess.run(cmd, cwd=cwd, env=env, text=True, capture_output=True, timeout=900)
    if check and proc.returncode != 0:
        raise AssertionError(f"{' '.join(cmd)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
    return proc


def find_key(obj, key: str) -> list:
    """Every value stored under ``key`` anywhere in a nested JSON object."""
    if isinstance(obj, dict):
        return [v for k, v in obj.items() if k == key] + [x for v in obj.values() for x in find_key(v, key)]
    if isinstance(obj, list):
        return [x for v in obj for x in find_key(v, key)]
    return []


def clone_project(dest: Path, **overrides) -> Path:
    """Copy the project's tracked and untracked-not-ignored files to ``dest`` as a fresh git repo."""
    files = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard"], cwd=REPO, text=True, capture_output=True, check=True
    ).stdout.split()
    for rel in files:
        src = REPO / rel
        if src.is_file() and not rel.startswith(("data/", "reports/", "models/")):
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    params = yaml.safe_load((dest / "params.yaml").read_text())
    params["data"]["sample"]["sizes"] = TINY_SIZES
    params["data"]["sample"]["heldout"]["size"] = TINY_HELDOUT
    params["validate"]["min_images_per_class"] = {"train": 2, "valid": 2, "test": 2}
    params["train"].update(epochs=1, batch_size=8)
    params["register"]["min_auc"] = 0.0  # a one-epoch model on 20 images still becomes champion
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        params[section][key] = value
    (dest / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q"], dest)
    # A repo-local identity: `dvc exp run` commits too, and CI may have no global git config.
    run(["git", "config", "user.name", "realfake tests"], dest)
    run(["git", "config", "user.email", "tests@realfake.invalid"], dest)
    run(["git", "add", "-A"], dest)
    run(["git", "commit", "-qm", "clone"], dest)
    return dest


def test_dvc_repro_download_and_validate(tmp_path):
    repo = clone_project(tmp_path)
    run(["dvc", "repro", "validate"], repo)
    assert (repo / "data/raw/train.csv").is_file()
    manifest = pd.read_parquet(repo / "data/manifest.parquet")
    assert len(manifest) == 2 * sum(TINY_SIZES.values())
    assert (repo / "reports/validation/ge/data_docs/index.html").is_file()
    summary = json.loads((repo / "reports/validation/summary.json").read_text())
    assert summary["success"] and summary["validated_images"] == len(manifest)
    # data, manifest and reports are DVC outputs, never git's
    status = run(["git", "status", "--porcelain", "--untracked-files=all"], repo).stdout.split("\n")
    assert {line[3:] for line in status if line} <= {"dvc.lock", "data/.gitignore", "reports/validation/.gitignore"}, status
    again = run(["dvc", "repro", "validate"], repo)
    assert "didn't change, skipping" in again.stdout and "Running stage" not in again.stdout
    metrics = json.loads(run(["dvc", "metrics", "show", "--json"], repo).stdout)
    assert find_key(metrics, "validated_images") == [2 * sum(TINY_SIZES.values())]


def test_invalid_data_stops_the_pipeline_with_the_fault_named(tmp_path):
    repo = clone_project(tmp_path, validate__image_width=128)
    proc = run(["dvc", "repro"], repo, check=False)
    assert proc.returncode != 0
    out = proc.stdout + proc.stderr
    assert "Data validation failed" in out and "image width is 128" in out
    assert "Traceback" not in out
    assert not (repo / "data/manifest.parquet").exists()


@pytest.mark.port80
def test_dvc_repro_with_kaggle_source_against_local_standin(tmp_path, tiny_sample):
    from kaggle_standin import KaggleStandin, kaggle_env
    from test_download import tree_bytes, zip_tree

    (tmp_path / "repo").mkdir()
    repo = clone_project(tmp_path / "repo", data__source="kaggle")
    env = kaggle_env(tmp_path)
    with KaggleStandin(zip_tree(tiny_sample)) as standin:
        run(["dvc", "repro", "validate"], repo, env=env)
    assert len(standin.download_requests) == 1
    assert tree_bytes(repo / "data/raw") == tree_bytes(tiny_sample)
    assert (repo / "data/manifest.parquet").is_file()

    # Without credentials the stage stops within seconds, with the ways to log in.
    t0 = time.monotonic()
    proc = run(["dvc", "repro", "--force", "download"], repo, check=False, env=kaggle_env(tmp_path, credentials=False))
    assert proc.returncode != 0
    assert time.monotonic() - t0 < 30
    out = proc.stdout + proc.stderr
    assert "No Kaggle credentials were found" in out and "KAGGLE_API_TOKEN" in out
    assert "Traceback" not in out
