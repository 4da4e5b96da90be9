"""Shared fixtures: one tiny embedded sample per session, copied where a test breaks it."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import pytest

from helpers.samples import TINY
from realfake.data.sample.generate import generate_sample

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")


def pytest_configure(config) -> None:
    """Under pytest-xdist, each worker gets its share of the cores, for itself and the processes it starts
    (dvc, the stages): two workers each running torch on every core oversubscribe the machine."""
    workers = os.environ.get("PYTEST_XDIST_WORKER_COUNT")
    if workers:
        threads = str(max(1, len(os.sched_getaffinity(0)) // int(workers)))
        for name in ("OMP_NUM_THREADS", "MKL_NUM_THREADS"):
            os.environ.setdefault(name, threads)
        import torch

        torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items) -> None:
    """Under pytest-xdist (whole files per worker), the files with the most end-to-end tests (marker ``slow``)
    are handed out first: the longest file starting last would leave one worker running it alone."""
    if not os.environ.get("PYTEST_XDIST_WORKER"):
        return
    slow = Counter(item.path for item in items if item.get_closest_marker("slow"))
    items.sort(key=lambda item: -slow[item.path])  # stable: each file's tests stay together, in order


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> Path:
    """A read-only-by-convention tiny sample; copy it (``sample_copy``) before changing it."""
    root = tmp_path_factory.mktemp("tiny") / "raw"
    generate_sample(root, TINY, workers=1)
    return root


@pytest.fixture(scope="module")
def module_tmp(tmp_path_factory, request) -> Iterator[Path]:
    """A folder for one module's shared fixtures, removed after the module when all its tests passed:
    what ``tmp_path_retention_policy = "failed"`` does for ``tmp_path`` (a failure keeps it to look at)."""
    failed = request.session.testsfailed
    path = tmp_path_factory.mktemp(request.module.__name__.rsplit(".", 1)[-1])
    yield path
    if request.session.testsfailed == failed and request.config.getini("tmp_path_retention_policy") == "failed":
        shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def sample_copy(tiny_sample, tmp_path) -> Path:
    dest = tmp_path / "raw"
    shutil.copytree(tiny_sample, dest)
    return dest


@pytest.fixture(scope="session")
def tiny_manifest(tiny_sample, tmp_path_factory) -> Path:
    """The validated manifest of the tiny sample (what training reads)."""
    from realfake.data.validation import ValidateConfig, run_validate

    out = tmp_path_factory.mktemp("validated")
    cfg = ValidateConfig(min_images_per_class={"train": 2, "valid": 2, "test": 2}, workers=1)
    run_validate(tiny_sample, cfg, out / "manifest.parquet", out / "ge", out / "summary.json")
    return out / "manifest.parquet"


@pytest.fixture(scope="session")
def tiny_data(tiny_manifest, tiny_sample):
    """The tiny sample's validated manifest, as the stages after validation take their data."""
    from realfake.data.manifest import Manifest

    return Manifest(tiny_manifest, tiny_sample)


@pytest.fixture(autouse=True)
def _hermetic_environment():
    """Each test starts from the same environment: MLflow writes MLFLOW_EXPERIMENT_ID and friends into
    os.environ when a test calls it in-process, and a later test's subprocess pipeline would inherit them."""
    before = dict(os.environ)
    yield
    for key in set(os.environ) - set(before):
        del os.environ[key]
    os.environ.update(before)
