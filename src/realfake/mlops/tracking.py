"""MLflow conventions: where the store is, which run a pipeline execution owns, its name and tags.

- Store: ``sqlite:///<project root>/mlflow.db`` with artifacts under
  ``<project root>/mlruns``, unless ``MLFLOW_TRACKING_URI`` is set. The project
  root is ``DVC_ROOT`` when DVC sets it: experiments that DVC runs in a
  temporary copy (``--temp``, ``--queue``) log into the main repository's store,
  so ``mlflow ui`` in the repo root shows them and their artifacts outlive the copy.
- One run per pipeline execution: train opens it and writes its id to
  ``models/run.json``; evaluate and register reopen it by that id.
- Experiments side by side (``dvc queue start -j 2``) share the store: a sqlite
  store is switched to WAL on first use (readers never block the writer; MLflow
  itself waits 20 s on a busy database), and :func:`store_lock` serialises what
  must not interleave: first-time creation and the champion decision.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import subprocess
import time
import warnings
from pathlib import Path
from typing import Any, Iterator

from realfake.atomic import write_text
from realfake.errors import RealfakeError

EXPERIMENT = "realfake"
#: The experiment tag that MLflow 3's UI reads to open an experiment on its model-training view (runs, charts) rather
#: than on GenAI traces, and the value it names that view by (MLflow's ``ExperimentKind.CUSTOM_MODEL_DEVELOPMENT``).
KIND_TAG, KIND = "mlflow.experimentKind", "custom_model_development"


def project_root() -> Path:
    """Where the store lives: ``DVC_ROOT`` when DVC runs the stage (in a temporary copy too), else the cwd."""
    return Path(os.environ.get("DVC_ROOT") or os.getcwd()).resolve()


def tracking_uri(root: Path | None = None) -> str:
    """``MLFLOW_TRACKING_URI`` when set, else the project's sqlite store."""
    if os.environ.get("MLFLOW_TRACKING_URI"):
        return os.environ["MLFLOW_TRACKING_URI"]
    return f"sqlite:///{(root or project_root()) / 'mlflow.db'}"


def sqlite_path(uri: str) -> Path | None:
    """The database file of a ``sqlite:///`` tracking URI (None for a server or another database)."""
    return Path(uri[len("sqlite:///") :].split("?", 1)[0]) if uri.startswith("sqlite:///") else None


def lock_path(uri: str | None = None) -> Path:
    """The lock file that realfake processes sharing a store take turns on: beside a sqlite
    store, else in the project root (experiments that DVC queues on this machine share it)."""
    uri = uri or tracking_uri()
    db = sqlite_path(uri)
    return db.with_name(db.name + ".lock") if db else project_root() / ".mlflow-registry.lock"


@contextlib.contextmanager
def store_lock(timeout_s: float = 900.0, uri: str | None = None) -> Iterator[None]:
    """Hold the store's lock (:func:`lock_path`); released when the block ends or the process dies.

    Waits for another realfake process that holds it (a parallel experiment registering its model)
    up to ``timeout_s``.
    """
    path = lock_path(uri)
    path.parent.mkdir(parents=True, exist_ok=True)
    deadline = time.monotonic() + timeout_s
    with open(path, "a") as handle:
        while True:
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    raise RealfakeError(
                        f"Another realfake process has held {path} for over {timeout_s:.0f} s (a parallel "
                        "experiment registering its model?). Wait for it to finish, or stop it, and rerun."
                    ) from None
                time.sleep(0.2)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def use_wal(db: Path) -> None:
    """Switch a sqlite store to write-ahead logging (persistent in the file): readers, such as
    ``mlflow ui`` or a parallel experiment's reads, no longer block a writer, nor it them."""
    db.parent.mkdir(parents=True, exist_ok=True)
    with contextlib.closing(sqlite3.connect(db, timeout=30)) as con:
        if con.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
            con.execute("PRAGMA journal_mode=WAL")


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
    uri = tracking_uri(root)
    mlflow.set_tracking_uri(uri)
    # First use of a store, by several experiments at once: one creates its tables, the others wait and find them.
    with store_lock(uri=uri):
        db = sqlite_path(uri)
        if db is not None:
            use_wal(db)
        client = mlflow.MlflowClient()
        client.search_experiments(max_results=1)  # opens the store: creates or migrates its schema
        if os.environ.get("MLFLOW_RUN_ID"):
            # Inside `mlflow run`: the project run is the pipeline's run, in its experiment
            # (pass --experiment-name realfake to keep it beside the others).
            mlflow.set_experiment(experiment_id=client.get_run(os.environ["MLFLOW_RUN_ID"]).info.experiment_id)
            return mlflow
        experiment = client.get_experiment_by_name(EXPERIMENT)
        if experiment is None:
            location = (root / "mlruns").as_uri() if db is not None else None
            try:
                client.create_experiment(EXPERIMENT, artifact_location=location, tags={KIND_TAG: KIND})
            except Exception:  # noqa: BLE001 - a process on another machine sharing the server created it first
                if client.get_experiment_by_name(EXPERIMENT) is None:
                    raise
        elif KIND_TAG not in experiment.tags:  # a store made before the tag: open it on its runs too
            client.set_experiment_tag(experiment.experiment_id, KIND_TAG, KIND)
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


def log_dataset(data) -> None:
    """The validated manifest (a :class:`realfake.data.manifest.Manifest`) as the active run's input
    dataset, with the data fingerprint as its digest: the Datasets column of ``mlflow ui``."""
    import mlflow

    columns = [c for c in ("split", "path", "label", "sha256", "width", "height") if c in data.table.columns]
    dataset = mlflow.data.from_pandas(data.table[columns], source=str(data.path.resolve()), name="manifest",
                                      digest=data.fingerprint)
    mlflow.log_input(dataset, context="training")


class EpochMetrics:
    """Each epoch's history row as step metrics of the active run (training's ``epoch_logger``), in the
    ``curves/`` section: the MLflow UI groups a run's charts into sections by the prefix before "/"
    (curves/, eval/, heldout/, robust/, train/), so the per-epoch curves are no longer lost among
    some forty single-value charts."""

    def log_epoch(self, row: dict[str, float]) -> None:
        """Log the row's values at step ``epoch``."""
        import mlflow

        mlflow.log_metrics({f"curves/{k}": float(v) for k, v in row.items() if k != "epoch"}, step=int(row["epoch"]))
