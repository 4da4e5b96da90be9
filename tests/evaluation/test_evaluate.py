"""The evaluate stage's library: metrics.json as register and robustness read it, and MLflow's flat keys."""

from __future__ import annotations

import json

import pytest

from realfake.errors import RealfakeError
from realfake.evaluation.evaluate import flat_metrics, read_eval_metrics


def test_flat_metrics_for_mlflow():
    metrics = {"test": {"roc_auc": 0.9, "confusion": {"tp": 3}, "per_class": {"real": {"f1-score": 0.5}}}, "rule": "x"}
    flat = flat_metrics(metrics)
    # one "eval/" section in the MLflow UI; the confusion counts stay in metrics.json and the plot
    assert flat == {"eval/test_roc_auc": 0.9, "eval/test_per_class_real_f1_score": 0.5}


def test_eval_metrics_are_read_with_a_clear_error_when_missing_or_foreign(tmp_path):
    path = tmp_path / "metrics.json"
    with pytest.raises(RealfakeError, match="metrics.json not found: run the evaluate stage first"):
        read_eval_metrics(path)
    path.write_text(json.dumps({"test": {"roc_auc": 0.9}}))
    foreign = "is not the evaluate stage's metrics .*threshold.*rerun the evaluate stage"
    with pytest.raises(RealfakeError, match=foreign):
        read_eval_metrics(path)
    path.write_text("{not json")
    with pytest.raises(RealfakeError, match="is not the evaluate stage's metrics"):
        read_eval_metrics(path)
    path.write_text(json.dumps({"threshold": 0.7, "test": {"roc_auc": 0.9}}))
    assert read_eval_metrics(path)["threshold"] == 0.7
