"""The register stage: log the pyfunc, register a version, move the champion alias only when earned.

It runs after robustness: by default the champion is chosen by the balanced accuracy of its shipped
verdicts over the robustness table (``register.champion_by``: ``robust_score``), since users read
verdicts, on fakes and post-processing the model was not trained on.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, replace
from typing import Any

from realfake.atomic import write_text
from realfake.config import as_dict, flatten
from realfake.data.layout import is_fake
from realfake.data.manifest import Manifest
from realfake.evaluation.evaluate import read_eval_metrics, score_split
from realfake.evaluation.robustness import RobustnessConfig, read_robustness_metrics, run_robustness
from realfake.mlops import registry
from realfake.paths import PATHS, Paths


def run(cfg: registry.RegisterConfig, robust_cfg: RobustnessConfig, paths: Paths = PATHS) -> dict[str, Any]:
    """Register this run's model; compare with the champion on this run's data by ``cfg.champion_by``.

    ``robust_cfg`` (the robustness section) is what a champion evaluated on other data is re-scored with.
    """
    from realfake.mlops import tracking

    metrics = read_eval_metrics(paths.eval_metrics)
    robust = read_robustness_metrics(paths.robustness_report / "metrics.json")
    data = Manifest(paths.manifest, paths.raw_dir)
    example = data.files(data.rows("test"))[0].read_bytes()
    figures = {f"test_{k}": v for k, v in metrics["test"].items() if isinstance(v, (int, float))}
    figures.update(threshold=metrics["threshold"], **{k: robust[k] for k in registry.ROBUST_FIGURES})
    rescoring = Rescoring(data, paths, robust_cfg)
    with tracking.reopen_run(paths.run_info) as run:
        import mlflow

        mlflow.set_tags(flatten({"register": as_dict(cfg)}))
        info = registry.log_pyfunc(paths.model, example)
        new = registry.Candidate(info.model_uri, run.info.run_id, metrics["data_fingerprint"], figures,
                                 robust_table(rescoring))
        record = registry.register(
            new, cfg, lambda current: champion_score_on(current, cfg, metrics["data_fingerprint"], rescoring)
        )
        mlflow.set_tags({"registered_version": str(record["version"]), "champion": str(record["alias_moved"])})
    write_text(paths.register_report, json.dumps(record, indent=2) + "\n")
    return record


@dataclass(frozen=True)
class Rescoring:
    """What a champion evaluated on other data is re-scored on: this run's data, held-out families and table."""

    data: Manifest | None
    paths: Paths
    robust_cfg: RobustnessConfig


def champion_score_on(current, cfg: registry.RegisterConfig, data_fingerprint: str,
                      rescoring: Rescoring | None) -> tuple[float | None, str | None]:
    """The champion's ``cfg.champion_by`` figure on this run's data, and how it was obtained (None, None: none).

    A champion measured on other data (an update's version, a model of another dataset) or, for a robustness
    figure, on another robustness table is re-scored here, and the figure is kept as a tag of its version
    (:func:`rescored_tag`), so the next run on the same data and table reads it instead of scoring the champion
    again: on 2 cores the robustness table is a minute of every run."""
    if current is None:
        return None, None
    table = robust_table(rescoring)
    score = registry.recorded(current, data_fingerprint, cfg.champion_by, table)
    if score is not None:
        return score, "recorded"
    tag = rescored_tag(cfg.champion_by, data_fingerprint, table)
    if tag in (current.tags or {}):
        return float(current.tags[tag]), "re-scored on this data by an earlier run"
    score = rescore(f"models:/{cfg.model_name}/{current.version}", cfg.champion_by, rescoring)
    import mlflow

    mlflow.MlflowClient().set_model_version_tag(cfg.model_name, current.version, tag, repr(score))
    return score, "re-scored on this data"


def robust_table(rescoring: Rescoring | None) -> str | None:
    """A key of the robustness table this run's figures come from: its perturbations, the noise's seed, the
    precision and the held-out families' index (None without one). Robustness figures of two tables are not
    compared."""
    if rescoring is None:
        return None
    r = rescoring.robust_cfg
    index = rescoring.paths.heldout_dir / "heldout.csv"
    what = [[p.name for p in r.perturbations], r.seed, r.amp,
            hashlib.sha256(index.read_bytes()).hexdigest() if index.is_file() else None]
    return hashlib.sha256(json.dumps(what).encode()).hexdigest()[:16]


def rescored_tag(figure: str, data_fingerprint: str, table: str | None) -> str:
    """The version tag that keeps a champion's ``figure`` re-scored on data ``data_fingerprint`` (and, for a
    robustness figure, on the robustness table keyed ``table``, :func:`robust_table`'s), so other data or a changed
    table is scored again."""
    return f"rescored/{figure}/{data_fingerprint}/{(table if figure in registry.ROBUST_FIGURES else None) or 'test'}"


def rescore(model_uri: str, figure: str, rescoring: Rescoring) -> float:
    """A registered model's ``figure`` on this run's data, scored on the CPU with its own decision."""
    from sklearn.metrics import roc_auc_score

    from realfake.detector.modelfile import load_model_file

    with registry.model_artifacts(model_uri) as weights:
        data = rescoring.data
        if figure in registry.ROBUST_FIGURES:
            cfg = replace(rescoring.robust_cfg, device="cpu")
            heldout = rescoring.paths.heldout_dir
            result = run_robustness(weights, data, heldout, cfg, log=lambda s: None)
            return float(result.metrics[figure])
        model, spec, _ = load_model_file(weights)
        cfg = rescoring.robust_cfg
        logits, _ = score_split(model, spec, data, "test", batch_size=cfg.batch_size, device="cpu", amp=cfg.amp)
        return float(roc_auc_score(is_fake(data.rows("test")["label"]), logits))
