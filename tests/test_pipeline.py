"""End to end: `dvc repro` in a temporary clone of the project, as a user runs it."""

from __future__ import annotations

import json
import time

import pandas as pd
import pytest

from helpers.project import TINY_SIZES, clone_project, find_key, run

pytestmark = pytest.mark.slow


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
    dvc_files = {"dvc.lock", "data/.gitignore", "reports/validation/.gitignore"}
    assert {line[3:] for line in status if line} <= dvc_files, status
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
    from helpers.archives import tree_bytes, zip_tree
    from helpers.kaggle_standin import KaggleStandin, kaggle_env

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
