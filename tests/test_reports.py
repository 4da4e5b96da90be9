"""Reading an earlier stage's metrics: one clear error when the file is missing or is not that stage's."""

from __future__ import annotations

import json

import pytest

from realfake.errors import RealfakeError
from realfake.evaluation.robustness import read_robustness_metrics
from realfake.reports import read_stage_metrics


def test_a_stages_metrics_need_the_keys_the_reader_uses(tmp_path):
    path = tmp_path / "metrics.json"
    with pytest.raises(RealfakeError, match=r"metrics.json not found: run the robustness stage first \(`dvc repro"):
        read_robustness_metrics(path)
    path.write_text(json.dumps({"clean": {"auc": 1.0}}))
    with pytest.raises(RealfakeError, match="lacks robust_score.*rerun the robustness stage"):
        read_robustness_metrics(path)
    path.write_text(json.dumps({"a": {"b": 2}}))
    assert read_stage_metrics(path, "x", ("a.b",)) == {"a": {"b": 2}}
    with pytest.raises(RealfakeError, match="lacks a.c"):
        read_stage_metrics(path, "x", ("a.c",))
