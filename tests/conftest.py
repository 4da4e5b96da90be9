"""Shared fixtures: one tiny embedded sample per session, copied where a test breaks it."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from realfake.sample import SampleConfig, generate_sample

os.environ.setdefault("DVC_NO_ANALYTICS", "1")
os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")

REPO = Path(__file__).resolve().parents[1]
#: Per-class sizes small enough for unit tests, large enough for every split to hold both classes.
TINY = SampleConfig(seed=7, train=12, valid=6, test=6)


@pytest.fixture(scope="session")
def tiny_sample(tmp_path_factory) -> Path:
    """A read-only-by-convention tiny sample; copy it (``sample_copy``) before changing it."""
    root = tmp_path_factory.mktemp("tiny") / "raw"
    generate_sample(root, TINY, workers=1)
    return root


@pytest.fixture
def sample_copy(tiny_sample, tmp_path) -> Path:
    dest = tmp_path / "raw"
    shutil.copytree(tiny_sample, dest)
    return dest


@pytest.fixture(scope="session")
def tiny_manifest(tiny_sample, tmp_path_factory) -> Path:
    """The validated manifest of the tiny sample (what training reads)."""
    from realfake.validation import ValidateConfig, run_validate

    out = tmp_path_factory.mktemp("validated")
    cfg = ValidateConfig(min_images_per_class={"train": 2, "valid": 2, "test": 2}, workers=1)
    run_validate(tiny_sample, cfg, out / "manifest.parquet", out / "ge", out / "summary.json")
    return out / "manifest.parquet"
