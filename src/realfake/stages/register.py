"""The register stage: log the pyfunc, register a version, move the champion alias only when earned."""

from __future__ import annotations

import json
from typing import Any

from realfake.atomic import write_text
from realfake.config import as_dict, flatten
from realfake.data.layout import is_fake
from realfake.data.manifest import Manifest
from realfake.evaluation.evaluate import read_eval_metrics, score_split
from realfake.mlops import registry
from realfake.paths import PATHS, Paths


def run(cfg: registry.RegisterConfig, paths: Paths = PATHS) -> dict[str, Any]:
    """Register this run's model; compare with the champion on this run's test data."""
    from realfake.mlops import tracking

    metrics = read_eval_metrics(paths.eval_metrics)
    data = Manifest(paths.manifest, paths.raw_dir)
    example = data.files(data.rows("test"))[0].read_bytes()
    with tracking.reopen_run(paths.run_info) as run:
        import mlflow

        mlflow.set_tags(flatten({"register": as_dict(cfg)}))
        info = registry.log_pyfunc(paths.model, metrics["threshold"], example)
        current = registry.champion(cfg)
        champion_auc, compared_on = champion_auc_on(current, cfg, metrics["data_fingerprint"], data)
        test_metrics = {f"test_{k}": v for k, v in metrics["test"].items() if isinstance(v, (int, float))}
        new = registry.Candidate(info.model_uri, run.info.run_id, float(metrics["test"]["roc_auc"]),
                                 metrics["data_fingerprint"], {**test_metrics, "threshold": metrics["threshold"]})
        record = registry.register(new, cfg, current, champion_auc, compared_on)
        mlflow.set_tags({"registered_version": str(record["version"]), "champion": str(record["alias_moved"])})
    write_text(paths.register_report, json.dumps(record, indent=2) + "\n")
    return record


def champion_auc_on(current, cfg: registry.RegisterConfig, data_fingerprint: str,
                    data: Manifest) -> tuple[float | None, str | None]:
    """The champion's test ROC-AUC on this run's data, and how it was obtained (None, None: no champion)."""
    if current is None:
        return None, None
    auc = registry.recorded_auc(current, data_fingerprint)
    if auc is not None:
        return auc, "recorded"
    return rescore(f"models:/{cfg.model_name}/{current.version}", data), "re-scored on this test split"


def rescore(model_uri: str, data: Manifest) -> float:
    """A registered model's test ROC-AUC on ``data``, scored on the CPU."""
    from sklearn.metrics import roc_auc_score

    from realfake.detector.modelfile import load_model_file

    model, spec, _ = load_model_file(registry.model_artifacts(model_uri)[0])
    p = score_split(model, spec, data, "test", batch_size=64, device="cpu")
    return float(roc_auc_score(is_fake(data.rows("test")["label"]), p))
