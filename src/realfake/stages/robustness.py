"""The robustness stage: the test split under perturbations and the held-out fakes, logged to the run."""

from __future__ import annotations

from typing import Any

from realfake.data.manifest import Manifest
from realfake.detector.scoring import resolve_device, save_network_logits
from realfake.evaluation.robustness import (
    NETWORK_LOGITS,
    RobustnessConfig,
    flat_metrics,
    run_robustness,
    write_reports,
)
from realfake.paths import PATHS, Paths


def run(cfg: RobustnessConfig, paths: Paths = PATHS) -> dict[str, Any]:
    """Re-score the test split with the model's own decision; write the reports; log them."""
    from realfake.mlops import tracking

    network_logits: dict = {}  # kept for an update, whose lineage shares this network (update stage)
    result = run_robustness(paths.model, Manifest(paths.manifest, paths.raw_dir), paths.heldout_dir, cfg,
                            network_logits=network_logits)
    files = write_reports(result, paths.robustness_report)
    logits_file = paths.robustness_report / NETWORK_LOGITS
    kept = save_network_logits(network_logits, logits_file, resolve_device(cfg.device), cfg.amp)
    with tracking.reopen_run(paths.run_info):
        import mlflow

        mlflow.set_tags({"robustness.perturbations": ", ".join(p.name for p in cfg.perturbations) or "none",
                         "robustness.seed": str(cfg.seed)})
        mlflow.log_metrics({**flat_metrics(result.metrics), "robust/seconds": result.seconds})
        for path in files.values():
            mlflow.log_artifact(str(path), artifact_path="robustness")
    print(f"robustness: {len(result.table)} conditions scored in {result.seconds:.1f} s; the network's logits of "
          f"{kept} batches kept in {logits_file} for an update of this model")
    return result.metrics
