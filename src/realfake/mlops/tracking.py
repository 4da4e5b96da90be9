"""MLflow conventions: where the store is, which run a pipeline execution owns, its name and tags.

- Store: ``sqlite:///<project root>/mlflow.db`` with artifacts under
  ``<project root>/mlruns``, unless ``MLFLOW_TRACKING_URI`` is set. The project
  root is ``DVC_ROOT`` when DVC sets it: experiments that DVC runs in a
  temporary copy (``--temp``, ``--queue``) log into the main repository's store,
  so ``mlflow ui`` in the repo root shows them and their artifacts outlive the copy.
- One run per pipeline execution: train opens it and writes its id to
  ``models/run.json``; evaluate and register reopen it by that id.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
import warnings
from pathlib import Path
from typing import Any, Iterator

from realfake.atomic import write_text
from realfake.errors import RealfakeError

EXPERIMENT = "realfake"


def project_root() -> Path:
    """Where the store lives: ``DVC_ROOT`` when DVC runs the stage (in a temporary copy too), else the cwd."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the project's sqlite store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


def quiet() -> None:
    """Keep MLflow's and its database layer's chatter out of the user's terminal.

    Called after importing mlflow, which sets up its own loggers on import.
    """
    os.environ.setdefault("MLFLOW_DISABLE_TELEMETRY", "true")
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    for name in ("mlflow", "alembic", "alembic.runtime.migration", "sqlalchemy", "urllib3"):
        logging.getLogger(name).setLevel(logging.ERROR)
    warnings.filterwarnings("ignore", module=r"mlflow(\.|$)")
    warnings.filterwarnings("ignore", category=FutureWarning)
    warnings.filterwarnings("ignore", message=r".*pkg_resources.*")


def setup(root: Path | None = None):
    """Point MLflow at the project store and make sure the experiment exists; returns the mlflow module."""
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    quiet()
    root = root or project_root()
    mlflow.set_tracking_uri(tracking_uri(root))
    client = mlflow.MlflowClient()
    if os.environ.get("MLFLOW_RUN_ID"):
        # Inside `mlflow run`: the project run is the pipeline's run, in its experiment
        # (pass --experiment-name realfake to keep it beside the others).
        mlflow.set_experiment(experiment_id=client.get_run(os.environ["MLFLOW_RUN_ID"]).info.experiment_id)
        return mlflow
    exp = client.get_experiment_by_name(EXPERIMENT)
    if exp is None:
        location = None
        if tracking_uri(root).startswith("sqlite:"):
            location = (root / "mlruns").as_uri()
        try:
            client.create_experiment(EXPERIMENT, artifact_location=location)
        except Exception:  # noqa: BLE001 - another process created it first
            if client.get_experiment_by_name(EXPERIMENT) is None:
                raise
    mlflow.set_experiment(EXPERIMENT)
    return mlflow


def use_existing_store():
    """Point MLflow at the project store for reading (predict), without creating anything.

    An sqlite store that does not exist yet would be created empty by MLflow;
    say instead where we looked and what to do.
    """
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    import mlflow

    quiet()
    uri = tracking_uri()
    if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
        raise RealfakeError(
            f"No MLflow store at {uri[len('sqlite:///'):]}: run this in the repository root (where `dvc repro` "
            "wrote mlflow.db), set MLFLOW_TRACKING_URI, or pass a model file with --model models/model.pt."
        )
    mlflow.set_tracking_uri(uri)
    return mlflow


def git(*args: str) -> str | None:
    """A git command's output, or None outside a repository."""
    try:
        out = subprocess.run(["git", *args], capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        return out or None
    except (OSError, subprocess.SubprocessError):
        return None


def run_name() -> str:
    """The DVC experiment's name, else the short commit."""
    return os.environ.get("DVC_EXP_NAME") or (git("rev-parse", "--short", "HEAD") or "workspace")


def run_tags(data_fingerprint: str | None) -> dict[str, str]:
    """Commit, DVC experiment and baseline, data fingerprint (the empty ones left out)."""
    tags = {
        "git_commit": git("rev-parse", "HEAD") or "unknown",
        "dvc_exp_name": os.environ.get("DVC_EXP_NAME", ""),
        "dvc_baseline_rev": os.environ.get("DVC_EXP_BASELINE_REV", ""),
        "data_fingerprint": data_fingerprint or "",
    }
    return {k: v for k, v in tags.items() if v}


def write_run_info(path: Path, run_id: str, experiment_id: str) -> None:
    """``models/run.json``: the run that evaluate, register and robustness reopen."""
    info = {"run_id": run_id, "experiment_id": experiment_id, "tracking_uri": tracking_uri()}
    write_text(path, json.dumps(info, indent=2) + "\n")


def read_run_id(path: Path) -> str:
    """The run id in ``models/run.json``."""
    try:
        return json.loads(Path(path).read_text())["run_id"]
    except FileNotFoundError:
        raise RealfakeError(f"{path} not found: run the train stage first (`dvc repro train`).") from None
    except (ValueError, KeyError) as exc:
        raise RealfakeError(f"{path} is not a run record written by the train stage ({exc}).") from None


@contextlib.contextmanager
def reopen_run(run_info: Path) -> Iterator[Any]:
    """Reopen the MLflow run that the train stage started (evaluate, register)."""
    mlflow = setup()
    run_id = read_run_id(run_info)
    try:
        mlflow.get_run(run_id)
    except Exception:  # noqa: BLE001
        raise RealfakeError(
            f"MLflow run {run_id} (from {run_info}) is not in the store at {tracking_uri()}. Was mlflow.db "
            "deleted or MLFLOW_TRACKING_URI changed? Rerun training: `dvc repro --force train`."
        ) from None
    with mlflow.start_run(run_id=run_id) as run:
        yield run


def start_pipeline_run(resume_run_id: str | None, data_fingerprint: str, params: dict[str, Any]):
    """The pipeline's run for a training stage: ``resume_run_id`` reopened (a resumed training run),
    else a new run named and tagged by :func:`run_name` and :func:`run_tags`, with ``params`` logged.

    Inside ``mlflow run``, starting a run adopts the project's run (``MLFLOW_RUN_ID``).
    """
    mlflow = setup()
    if resume_run_id:
        try:
            return mlflow.start_run(run_id=resume_run_id)
        except Exception:  # noqa: BLE001 - the run is gone (store reset): start a new one
            pass
    run = mlflow.start_run(run_name=run_name(), tags=run_tags(data_fingerprint))
    mlflow.set_tag("mlflow.runName", run_name())
    mlflow.log_params({k: str(v)[:500] for k, v in params.items()})
    return run


class EpochMetrics:
    """Each epoch's history row as step metrics of the active run (training's ``epoch_logger``)."""

    def log_epoch(self, row: dict[str, float]) -> None:
        """Log the row's values at step ``epoch``."""
        import mlflow

        mlflow.log_metrics({k: float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
