"""The train, evaluate and register stages: library functions wiring training, evaluation and the
registry to one MLflow run. The scripts in ``pipeline/`` only pass params and paths.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from realfake.errors import RealfakeError


@dataclass(frozen=True)
class Paths:
    """The fixed paths that dvc.yaml declares."""

    raw_dir: Path = Path("data/raw")
    manifest: Path = Path("data/manifest.parquet")
    packed: Path = Path("data/packed")
    model: Path = Path("models/model.pt")
    checkpoints: Path = Path("models/checkpoints")
    run_info: Path = Path("models/run.json")
    train_report: Path = Path("reports/train")
    eval_metrics: Path = Path("reports/eval/metrics.json")
    eval_plots: Path = Path("reports/eval/plots")
    register_report: Path = Path("reports/register.json")
    heldout_dir: Path = Path("data/heldout")
    robustness_report: Path = Path("reports/robustness")


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}.{k}" if prefix else str(k)
        if isinstance(v, dict):
            out.update(flatten(v, key))
        else:
            out[key] = v
    return out


class _Tracker:
    def __init__(self, mlflow, run):
        self.mlflow = mlflow
        self.run_id = run.info.run_id

    def log_epoch(self, row: dict[str, float]) -> None:
        step = int(row["epoch"])
        self.mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=step)


def train_stage(params: dict[str, Any], paths: Paths = Paths()) -> dict[str, Any]:
    from realfake import tracking
    from realfake.manifest import fingerprint
    from realfake.train import TrainConfig, train

    import pandas as pd

    cfg = TrainConfig.from_params(params["train"])
    if int(os.environ.get("RANK", "0")) != 0:
        # Another torchrun process: it trains its share; rank 0 tracks and writes.
        train(cfg, paths.manifest, paths.raw_dir, paths.model, paths.checkpoints, progress=False, log=lambda s: None,
              packed_dir=paths.packed)
        return {}
    if not paths.manifest.is_file():
        raise RealfakeError(f"{paths.manifest} not found: run validation first (`dvc repro validate`).")
    data_fp = fingerprint(pd.read_parquet(paths.manifest))
    mlflow = tracking.setup()

    def open_run(resume_run_id: str | None):
        if resume_run_id:
            try:
                run = mlflow.start_run(run_id=resume_run_id)
            except Exception:  # noqa: BLE001 - the run is gone (store reset): start a new one
                resume_run_id = None
        if not resume_run_id:
            # Inside `mlflow run`, start_run adopts the project's run (MLFLOW_RUN_ID).
            run = mlflow.start_run(run_name=tracking.run_name(), tags=tracking.run_tags(data_fp))
            mlflow.set_tag("mlflow.runName", tracking.run_name())
            # The sections this stage declares in dvc.yaml; evaluate and register
            # record theirs as tags, which (unlike params) may change on a rerun.
            logged = {k: v for k, v in flatten({"data": params["data"], "train": params["train"]}).items()
                      if not k.startswith("data.sample.heldout")}  # as declared in dvc.yaml
            mlflow.log_params({k: str(v)[:500] for k, v in logged.items()})
        tracking.write_run_info(paths.run_info, run.info.run_id, run.info.experiment_id)
        return _Tracker(mlflow, run)

    try:
        result = train(
            cfg,
            paths.manifest,
            paths.raw_dir,
            paths.model,
            paths.checkpoints,
            history_path=paths.train_report / "history.csv",
            mlflow_run=open_run,
            packed_dir=paths.packed,
        )
        summary = {**result.metrics, "resumed_from_epoch": result.resumed_from_epoch}
        (paths.train_report / "metrics.json").write_text(json.dumps(summary, indent=2) + "\n")
        mlflow.log_metrics({"best_val_auc": result.metrics["best_val_auc"], "best_epoch": result.metrics["best_epoch"]})
        mlflow.log_artifact(str(paths.train_report / "history.csv"), artifact_path="train")
    finally:
        if mlflow.active_run():
            mlflow.end_run()
    return summary


def evaluate_stage(params: dict[str, Any], paths: Paths = Paths()) -> dict[str, Any]:
    from realfake import tracking
    from realfake.evaluate import EvaluateConfig, evaluate, flat_metrics, write_reports

    cfg = EvaluateConfig.from_params(params["evaluate"])
    ev = evaluate(paths.model, paths.manifest, paths.raw_dir, cfg)
    pngs = write_reports(ev, paths.raw_dir, paths.eval_metrics, paths.eval_plots, cfg.gallery_size)
    with tracking.reopen_run(paths.run_info):
        import mlflow

        mlflow.set_tags(flatten({"evaluate": params["evaluate"]}))
        mlflow.log_metrics(flat_metrics({"test": ev.metrics["test"], "valid": ev.metrics["valid"], "threshold": ev.metrics["threshold"]}))
        mlflow.log_artifact(str(paths.eval_metrics), artifact_path="eval")
        for png in pngs:
            mlflow.log_artifact(str(png), artifact_path="eval")
        for name in ("roc.csv", "pr.csv"):
            mlflow.log_artifact(str(paths.eval_plots / name), artifact_path="eval")
    return ev.metrics


def register_stage(params: dict[str, Any], paths: Paths = Paths()) -> dict[str, Any]:
    import pandas as pd

    from realfake import tracking
    from realfake.evaluate import EvaluateConfig, score_split
    from realfake.layout import image_root
    from realfake.registry import RegisterConfig, log_pyfunc, model_artifacts, register
    from realfake.train import load_model_file, split_rows

    cfg = RegisterConfig.from_params(params["register"])
    try:
        metrics = json.loads(paths.eval_metrics.read_text())
    except FileNotFoundError:
        raise RealfakeError(f"{paths.eval_metrics} not found: run the evaluate stage first.") from None
    test = split_rows(pd.read_parquet(paths.manifest), "test")
    example = (image_root(paths.raw_dir) / test["path"].iloc[0]).read_bytes()

    def rescore(model_uri: str) -> float:
        from sklearn.metrics import roc_auc_score

        model, spec, _ = load_model_file(model_artifacts(model_uri)[0])
        p = score_split(model, spec, test, paths.raw_dir, EvaluateConfig(device="cpu"))
        return float(roc_auc_score((test["label"].to_numpy() == 0).astype(int), p))

    with tracking.reopen_run(paths.run_info) as run:
        import mlflow

        mlflow.set_tags(flatten({"register": params["register"]}))
        info = log_pyfunc(mlflow, paths.model, metrics["threshold"], example)
        test_metrics = {f"test_{k}": v for k, v in metrics["test"].items() if isinstance(v, (int, float))}
        test_metrics["threshold"] = metrics["threshold"]
        record = register(
            mlflow,
            info.model_uri,
            run.info.run_id,
            float(metrics["test"]["roc_auc"]),
            metrics["data_fingerprint"],
            test_metrics,
            cfg,
            rescore,
        )
        mlflow.set_tags({"registered_version": str(record["version"]), "champion": str(record["alias_moved"])})
    paths.register_report.parent.mkdir(parents=True, exist_ok=True)
    paths.register_report.write_text(json.dumps(record, indent=2) + "\n")
    return record


def robustness_stage(params: dict[str, Any], paths: Paths = Paths()) -> dict[str, Any]:
    """Re-score the test split under perturbations and the held-out fakes; log to the pipeline's MLflow run."""
    from realfake import tracking
    from realfake.robustness import RobustnessConfig, flat_metrics, run_robustness, write_reports

    cfg = RobustnessConfig.from_params(params.get("robustness"))
    try:
        threshold = float(json.loads(paths.eval_metrics.read_text())["threshold"])
    except FileNotFoundError:
        raise RealfakeError(f"{paths.eval_metrics} not found: run the evaluate stage first.") from None
    except (ValueError, KeyError, TypeError) as exc:
        raise RealfakeError(f"{paths.eval_metrics} holds no decision threshold ({exc}); rerun the evaluate stage.") from None
    result = run_robustness(paths.model, paths.manifest, paths.raw_dir, paths.heldout_dir, threshold, cfg)
    files = write_reports(result, paths.robustness_report)
    with tracking.reopen_run(paths.run_info):
        import mlflow

        mlflow.set_tags({"robustness.perturbations": ", ".join(p.name for p in cfg.perturbations) or "none",
                         "robustness.seed": str(cfg.seed)})
        mlflow.log_metrics({**flat_metrics(result.metrics), "robust_seconds": result.seconds})
        for path in files.values():
            mlflow.log_artifact(str(path), artifact_path="robustness")
    print(f"robustness: {len(result.table)} conditions scored in {result.seconds:.1f} s")
    return result.metrics
