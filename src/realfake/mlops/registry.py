"""The MLflow model registry: log the pyfunc, register a version, move ``champion`` only when earned.

Promotion rule (:func:`decide`): the new version takes the alias when its test
ROC-AUC is at least ``register.min_auc`` and at least the current champion's
measured on the same data. When the champion was evaluated on other data
(another fingerprint), it is re-scored on this run's test split first, so the
comparison is always like for like. A worse run never takes the alias. The register
stage does the re-scoring; this module only speaks to the registry.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from realfake.config import build_config, require
from realfake.errors import RealfakeError
from realfake.mlops import CHAMPION_ALIAS, REGISTERED_NAME
from realfake.mlops.serving import WEIGHTS, signature

#: The realfake package, logged with every model as its code (MLflow "models from code").
SRC_PACKAGE = Path(__file__).resolve().parents[1]
PYFUNC_ENTRY = SRC_PACKAGE / "mlops" / "pyfunc_model.py"
#: The figures a champion can be chosen by, over the robustness table (clean, every perturbation, every held-out
#: generator family): the balanced accuracy of the verdicts the model ships (an "uncertain" answer a coin flip), or
#: the mean ROC-AUC; or the test split's ROC-AUC.
FIGURES = ("robust_score", "robust_mean_auc", "test_roc_auc")
#: The figures measured by the robustness stage (a champion measured on other data is re-scored for them).
ROBUST_FIGURES = ("robust_score", "robust_mean_auc")
#: The logged model's name in each run (``runs:/<run id>/realfake``).
MODEL_NAME = "realfake"
#: The registered model's description.
DESCRIPTION = (
    "realfake: an Inception-ResNet-V1 (facenet-pytorch) fused with a spectral probe that scores a face image with "
    "p_fake, the calibrated probability that it was generated. Input: image bytes (an 'image' column); output: "
    "p_fake, label (fake, real, or uncertain where too little fine detail is left to judge) and reason. The "
    "calibration, threshold and uncertain rule travel in the model file. Each version is tagged with its test "
    "metrics, robust_score, robust_mean_auc and data "
    "fingerprint; the 'champion' alias is moved by the register stage only when earned (see each version's "
    "description)."
)


@dataclass(frozen=True)
class RegisterConfig:
    """The ``register`` section of params.yaml."""

    model_name: str = REGISTERED_NAME
    alias: str = CHAMPION_ALIAS
    min_auc: float = 0.9  # a floor on the test ROC-AUC, whatever the figure the champion is chosen by
    champion_by: str = "robust_score"  # one of FIGURES: the figure compared with the champion's

    def __post_init__(self) -> None:
        require(self.champion_by in FIGURES,
                f"register.champion_by is {self.champion_by!r}; use one of {', '.join(FIGURES)}.")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "RegisterConfig":
        """The config from the ``register`` section of params.yaml."""
        return build_config(cls, params, "register")


@dataclass(frozen=True)
class Decision:
    """Whether a new version takes the alias, and why (recorded on the version)."""

    promote: bool
    reason: str


def decide(new: float, champion: float | None, champion_version: str | None = None, *, figure: str = "test_roc_auc",
           test_auc: float | None = None, min_auc: float = 0.0) -> Decision:
    """Whether a new version with ``figure`` = ``new`` takes the alias.

    ``champion`` is the current champion's figure on the *same* data (None: no champion);
    ``test_auc`` (default: ``new``) must reach ``min_auc`` first.
    """
    test_auc = new if test_auc is None else test_auc
    if not test_auc >= min_auc:  # also false for NaN
        return Decision(False, f"test ROC-AUC {test_auc:.4f} is below register.min_auc {min_auc:.4f}")
    if champion is None:
        return Decision(True, f"{figure} {new:.4f}, test ROC-AUC {test_auc:.4f} passes min_auc {min_auc:.4f}, "
                              "and there is no champion yet")
    if new >= champion:
        return Decision(True, f"{figure} {new:.4f} >= champion v{champion_version}'s {champion:.4f} on the same data")
    return Decision(False, f"{figure} {new:.4f} < champion v{champion_version}'s {champion:.4f} on the same data")


def log_pyfunc(model_path: Path, example_image: bytes | None) -> Any:
    """Log the detector (its model file, which carries its decision) as a pyfunc in the active run; returns
    MLflow's ModelInfo.

    The file is logged from a copy: MLflow refuses an artifact that resolves outside its folder, which a DVC
    cache link (``dvc config cache.type symlink``) does."""
    import mlflow
    import pandas as pd

    example = pd.DataFrame({"image": [example_image]}) if example_image is not None else None
    with tempfile.TemporaryDirectory() as tmp:
        weights = Path(tmp) / "model.pt"  # the name model_artifacts finds, whatever the source file is called
        shutil.copyfile(model_path, weights)
        return mlflow.pyfunc.log_model(
            name=MODEL_NAME,
            python_model=str(PYFUNC_ENTRY),
            artifacts={WEIGHTS: str(weights)},
            code_paths=[str(SRC_PACKAGE)],
            signature=signature(),
            input_example=example,
            pip_requirements=_requirements(),
        )


def _requirements() -> list[str]:
    from importlib.metadata import version

    return [
        f"{name}=={version(name)}"
        for name in ("torch", "torchvision", "facenet-pytorch", "pillow", "numpy", "pandas", "scikit-learn", "mlflow")
    ]


def champion(cfg: RegisterConfig):
    """The version holding the alias, or None."""
    import mlflow

    try:
        return mlflow.MlflowClient().get_model_version_by_alias(cfg.model_name, cfg.alias)
    except Exception:  # noqa: BLE001 - MlflowException when the model or alias does not exist
        return None


def recorded(version, data_fingerprint: str, figure: str, robust_table: str | None = None) -> float | None:
    """A version's recorded ``figure`` when it was measured on the same data (same fingerprint) and, for a
    robustness figure with ``robust_table`` given, on the same robustness table (its ``robust_table`` tag); else
    None."""
    tags = (version.tags or {}) if version is not None else {}
    if tags.get("data_fingerprint") != data_fingerprint or figure not in tags:
        return None
    if figure in ROBUST_FIGURES and robust_table is not None and tags.get("robust_table") != robust_table:
        return None
    return float(tags[figure])


@dataclass(frozen=True)
class Candidate:
    """A logged model of this run, to register: its URI, run, data fingerprint, and its figures
    (test_roc_auc, robust_mean_auc when measured, other test metrics), recorded as version tags."""

    model_uri: str
    run_id: str
    data_fingerprint: str
    metrics: dict[str, float]
    robust_table: str | None = None  # what the robustness figures were measured on (the register stage's key)

    @property
    def test_auc(self) -> float:
        """The test split's ROC-AUC."""
        return float(self.metrics["test_roc_auc"])


#: What the register stage gives :func:`register`: the current champion (None: none) -> its figure on this
#: run's data and how it was obtained ("recorded", "re-scored on this data", "re-scored on this data by an
#: earlier run"), or (None, None) without a champion.
ChampionScorer = Callable[[Any], tuple[float | None, str | None]]


def register(new: Candidate, cfg: RegisterConfig, score_champion: ChampionScorer) -> dict[str, Any]:
    """Register ``new`` as a version, tag it, and move the alias if :func:`decide` says so.

    The decision and the alias move happen under the store's lock (:func:`tracking.store_lock`), so
    two experiments finishing together decide one after the other: they cannot both take the alias,
    nor leave it on the worse one. Right before the move the alias is read again; if it moved
    meanwhile (a process on another machine sharing a tracking server), the decision is taken again.
    """
    import mlflow

    from realfake.mlops import tracking

    client = mlflow.MlflowClient()
    tags = {"data_fingerprint": new.data_fingerprint}
    if new.robust_table:
        tags["robust_table"] = new.robust_table
    version = mlflow.register_model(new.model_uri, cfg.model_name, tags=tags)
    for key, value in new.metrics.items():
        client.set_model_version_tag(cfg.model_name, version.version, key, f"{value:.6g}")
    client.set_model_version_tag(cfg.model_name, version.version, "run_id", new.run_id)
    score = float(new.metrics[cfg.champion_by])
    with tracking.store_lock():
        for _ in range(MAX_DECISIONS):
            current = champion(cfg)
            champion_score, compared_on = score_champion(current)
            decision = decide(score, champion_score, current.version if current else None, figure=cfg.champion_by,
                              test_auc=new.test_auc, min_auc=cfg.min_auc)
            if _version(champion(cfg)) != _version(current):
                continue  # moved while we decided: decide again against the new champion
            if decision.promote:
                client.set_registered_model_alias(cfg.model_name, cfg.alias, version.version)
            break
        else:
            raise RealfakeError(
                f"The {cfg.alias!r} alias of {cfg.model_name} moved {MAX_DECISIONS} times while this run decided "
                f"whether to take it; version {version.version} is registered without it. "
                "Rerun `dvc repro register` when the other runs have finished."
            )
    client.set_model_version_tag(cfg.model_name, version.version, "promotion", decision.reason)
    client.update_registered_model(cfg.model_name, description=DESCRIPTION)
    client.update_model_version(cfg.model_name, version.version,
                                description=version_description(new, cfg, decision.reason, decision.promote))
    return {
        "model_name": cfg.model_name,
        "version": int(version.version),
        "alias": cfg.alias,
        "alias_moved": decision.promote,
        "reason": decision.reason,
        "previous_champion": int(current.version) if current else None,
        "champion_by": cfg.champion_by,
        "score": score,
        "previous_champion_score": champion_score,
        "champion_score_source": compared_on,
        "champion": int(version.version) if decision.promote else (int(current.version) if current else None),
        "test_roc_auc": new.test_auc,
        "data_fingerprint": new.data_fingerprint,
        "model_uri": f"models:/{cfg.model_name}/{version.version}",
        "run_id": new.run_id,
    }


def version_description(new: Candidate, cfg: RegisterConfig, reason: str, promoted: bool) -> str:
    """What a version is, how it measured, on which data, and why it did or did not take the alias."""
    m = new.metrics
    figures = ", ".join(f"{k} {m[k]:.4f}" for k in ("test_roc_auc", "test_reals_called_fake", "test_fakes_caught",
                                                    "test_uncertain", "robust_score", "robust_mean_auc",
                                                    "threshold") if k in m)
    verdict = f"Took the {cfg.alias!r} alias" if promoted else f"Did not take the {cfg.alias!r} alias"
    return (f"realfake detector from run {new.run_id}, trained and evaluated on data fingerprint "
            f"{new.data_fingerprint}. {figures}. {verdict}: {reason} (chosen by {cfg.champion_by}).")


#: How many times :func:`register` decides again when the alias moves under it before giving up.
MAX_DECISIONS = 5


def _int(value: str | None) -> int | None:
    return None if value is None else int(value)


def _version(model_version) -> str | None:
    return None if model_version is None else str(model_version.version)


@contextmanager
def model_artifacts(model_uri: str) -> Iterator[Path]:
    """The model file (weights and decision) of a logged realfake model (``models:/...`` or ``runs:/...``),
    downloaded to a temporary folder that is removed when the ``with`` block ends: load it inside the block."""
    import mlflow

    with tempfile.TemporaryDirectory(prefix="realfake-model-") as dest:
        try:
            local = Path(mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=dest))
        except Exception as exc:  # noqa: BLE001 - MlflowException for a missing model, alias or run
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise RealfakeError(
                f"{model_uri} cannot be loaded from the MLflow store at {mlflow.get_tracking_uri()}: {first}. "
                "Run `dvc repro` to train and register a model, check the name/alias/version "
                "(`mlflow ui` > Models), or pass a model file with --model models/model.pt."
            ) from None
        weights = sorted(local.rglob("artifacts/model.pt")) + sorted(local.rglob(f"artifacts/{WEIGHTS}"))
        if not weights:
            raise RealfakeError(
                f"{model_uri} holds no realfake weights (artifacts/model.pt); it was not logged by realfake."
            )
        yield weights[0]


# --------------------------------------------------------------------------- updates (realfake.stages.update)


def version_of(cfg: RegisterConfig, start: str | int):
    """The registered version that ``start`` names: an alias (``champion``) or a version number."""
    import mlflow

    client = mlflow.MlflowClient()
    try:
        if str(start).isdigit():
            return client.get_model_version(cfg.model_name, str(start))
        return client.get_model_version_by_alias(cfg.model_name, str(start))
    except Exception as exc:  # noqa: BLE001 - MlflowException for a missing model, alias or version
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise RealfakeError(
            f"update.start is {start!r}, but {cfg.model_name} has no such alias or version in the MLflow store at "
            f"{mlflow.get_tracking_uri()} ({first}). Run `dvc repro` first to train and register a champion, or "
            "name an existing version (`mlflow ui` > Models)."
        ) from None


def lineage(cfg: RegisterConfig, version) -> list:
    """``version`` and the versions it was updated from (tag ``parent_version``), oldest first."""
    import mlflow

    client, chain = mlflow.MlflowClient(), [version]
    while (parent := (chain[0].tags or {}).get("parent_version")) and len(chain) < MAX_LINEAGE:
        chain.insert(0, client.get_model_version(cfg.model_name, parent))
    return chain


#: The most versions an update's accuracy matrix goes back.
MAX_LINEAGE = 8


def register_update(model_uri: str, run_id: str, cfg: RegisterConfig, parent, promote: bool, reason: str,
                    tags: dict[str, str], description: str) -> dict[str, Any]:
    """Register an updated model (logged at ``model_uri`` in run ``run_id``) as a version of ``cfg.model_name``,
    tagged with its ``parent`` version and ``tags``; move the alias to it when ``promote`` and the alias still
    names the parent (another run may have moved it meanwhile: then it stays, and the record says so)."""
    import mlflow

    from realfake.mlops import tracking

    client = mlflow.MlflowClient()
    version = mlflow.register_model(model_uri, cfg.model_name, tags={**tags, "parent_version": str(parent.version),
                                                                     "run_id": run_id})
    moved = False
    if promote:
        with tracking.store_lock():
            current = champion(cfg)
            if _version(current) == str(parent.version):
                client.set_registered_model_alias(cfg.model_name, cfg.alias, version.version)
                moved = True
            else:
                reason += (f"; but the {cfg.alias!r} alias is on version {_version(current)}, not on the parent "
                           f"{parent.version} (it was never there, or another run moved it meanwhile), so it stays "
                           "there: an update is judged against its parent, so run it again from the alias")
    client.set_model_version_tag(cfg.model_name, version.version, "promotion", reason)
    verdict = f"Took the {cfg.alias!r} alias" if moved else f"Did not take the {cfg.alias!r} alias"
    client.update_model_version(cfg.model_name, version.version, description=f"{description} {verdict}: {reason}.")
    return {"model_name": cfg.model_name, "version": int(version.version), "parent_version": int(parent.version),
            "alias": cfg.alias, "alias_moved": moved, "reason": reason,
            "champion": int(version.version) if moved else _int(_version(champion(cfg))),
            "model_uri": f"models:/{cfg.model_name}/{version.version}", "run_id": run_id}
