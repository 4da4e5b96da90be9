"""The train stage: open (or resume) the pipeline's MLflow run, train, record the result.

Under torchrun, every process trains its share; rank 0 alone opens the run,
receives the epoch rows and writes the outputs.
"""

from __future__ import annotations

import json
from typing import Any

from realfake.atomic import write_text
from realfake.config import as_dict, flatten
from realfake.data.config import DataConfig
from realfake.data.manifest import Manifest
from realfake.detector.scoring import resolve_device
from realfake.paths import PATHS, Paths
from realfake.training import distributed
from realfake.training.checkpoint import resumable_run
from realfake.training.config import TrainConfig
from realfake.training.train import TrainOutputs, train


def run(cfg: TrainConfig, data_cfg: DataConfig, paths: Paths = PATHS) -> dict[str, Any]:
    """Train on the validated manifest; ``data_cfg`` is logged with the run (what shaped data/raw)."""
    from realfake.mlops import tracking

    data = Manifest(paths.manifest, paths.raw_dir)
    dist = distributed.from_env(resolve_device(cfg.device))
    out = TrainOutputs(paths.model, paths.checkpoints, paths.train_history)
    if not dist.is_main:
        train(cfg, data, out, packed_dir=paths.packed, dist=dist, progress=False, log=lambda s: None)
        return {}
    resume = resumable_run(paths.checkpoints, cfg, data.fingerprint)
    run = tracking.start_pipeline_run(resume.run_id if resume else None, data.fingerprint, logged_params(cfg, data_cfg))
    import mlflow

    try:
        tracking.write_run_info(paths.run_info, run.info.run_id, run.info.experiment_id)
        if not resume:
            tracking.log_dataset(data)
        trained_on = data_cfg.trained_on(data.fingerprint, len(data.rows("train")))
        result = train(cfg, data, out, packed_dir=paths.packed, run_id=run.info.run_id,
                       epoch_logger=tracking.EpochMetrics(), dist=dist, facts={"trained_on": trained_on})
        summary = {**result.metrics, "resumed_from_epoch": result.resumed_from_epoch}
        write_text(paths.train_metrics, json.dumps(summary, indent=2) + "\n")
        # best_val_auc, best_epoch, model_epoch, model_val_auc (each member's, named after it, for an ensemble)
        mlflow.log_metrics({f"train/{k}": v for k, v in result.metrics.items() if not k.endswith("epochs_run")})
        mlflow.log_artifact(str(paths.train_history), artifact_path="train")
    finally:
        mlflow.end_run()
    return summary


def logged_params(cfg: TrainConfig, data_cfg: DataConfig) -> dict[str, Any]:
    """The run's params: the ``train`` section and the ``data`` keys this stage declares in dvc.yaml
    (not ``data.sample.heldout``, which shapes only data/heldout)."""
    params = flatten({"data": as_dict(data_cfg), "train": as_dict(cfg)})
    return {k: v for k, v in params.items() if not k.startswith("data.sample.heldout")}
