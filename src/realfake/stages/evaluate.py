"""The evaluate stage: test metrics with the model's own decision, reports and plots, logged to the run."""

from __future__ import annotations

from typing import Any

from realfake.config import as_dict, flatten
from realfake.data.manifest import Manifest
from realfake.evaluation.evaluate import EvaluateConfig, evaluate, flat_metrics, write_reports
from realfake.paths import PATHS, Paths


def run(cfg: EvaluateConfig, paths: Paths = PATHS) -> dict[str, Any]:
    """Evaluate the trained model; write metrics.json and the plots; log them to the pipeline's run."""
    from realfake.mlops import tracking

    ev = evaluate(paths.model, Manifest(paths.manifest, paths.raw_dir), cfg)
    pngs = write_reports(ev, paths.raw_dir, paths.eval_metrics, paths.eval_plots, cfg.gallery_size)
    with tracking.reopen_run(paths.run_info):
        import mlflow

        mlflow.set_tags(flatten({"evaluate": as_dict(cfg)}))
        mlflow.log_metrics(flat_metrics({k: ev.metrics[k] for k in ("test", "threshold")}))
        tables = (paths.eval_plots / f for f in ("roc.csv", "pr.csv", "reliability.csv"))
        for path in (paths.eval_metrics, *pngs, *tables):
            mlflow.log_artifact(str(path), artifact_path="eval")
    return ev.metrics
