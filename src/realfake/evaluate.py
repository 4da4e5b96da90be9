"""Evaluation on the test split, with the decision threshold chosen on the valid split.

Metrics come from scikit-learn; the positive class is *fake* (the model's
output is p_fake). Everything is computed once and written both to the DVC
metrics/plots files and to the MLflow run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from realfake.errors import RealfakeError
from realfake.params import build_config
from realfake.train import FaceDataset, load_model_file, loader, predict_logits, resolve_device, split_rows

THRESHOLD_RULES = ("youden", "f1", "eer", "fixed")


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section of params.yaml."""

    threshold_rule: str = "youden"  # youden | f1 | eer | fixed, chosen on the valid split
    threshold: float = 0.5  # used when threshold_rule is fixed
    batch_size: int = 64
    gallery_size: int = 16  # most confidently wrong test images shown in errors.png
    device: str = "auto"

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "EvaluateConfig":
        cfg = build_config(cls, params, "evaluate")
        if cfg.threshold_rule not in THRESHOLD_RULES:
            raise RealfakeError(f"evaluate.threshold_rule is {cfg.threshold_rule!r}; use one of {', '.join(THRESHOLD_RULES)}.")
        return cfg


def sigmoid(x: np.ndarray) -> np.ndarray:
    return 1.0 / (1.0 + np.exp(-np.asarray(x, dtype=np.float64)))


def equal_error_rate(y_fake: np.ndarray, p_fake: np.ndarray) -> tuple[float, float]:
    """(EER, threshold at which the false-positive and false-negative rates cross)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y_fake, p_fake)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2), float(min(thr[i], 1.0))


def choose_threshold(y_fake: np.ndarray, p_fake: np.ndarray, rule: str, fixed: float = 0.5) -> float:
    """The decision threshold on p_fake by ``rule``, fitted on (valid) scores."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    if rule == "fixed":
        return float(fixed)
    if rule == "eer":
        return equal_error_rate(y_fake, p_fake)[1]
    if rule == "youden":
        fpr, tpr, thr = roc_curve(y_fake, p_fake)
        return float(min(thr[int(np.argmax(tpr - fpr))], 1.0))
    if rule == "f1":
        precision, recall, thr = precision_recall_curve(y_fake, p_fake)
        f1 = 2 * precision[:-1] * recall[:-1] / np.maximum(precision[:-1] + recall[:-1], 1e-12)
        return float(thr[int(np.argmax(f1))])
    raise RealfakeError(f"unknown threshold rule {rule!r}")


def classification_metrics(y_fake: np.ndarray, p_fake: np.ndarray, threshold: float) -> dict[str, Any]:
    """Test metrics at ``threshold`` (predict fake when p_fake >= threshold)."""
    from sklearn import metrics as M

    pred = (p_fake >= threshold).astype(int)
    eer, _ = equal_error_rate(y_fake, p_fake)
    tn, fp, fn, tp = M.confusion_matrix(y_fake, pred, labels=[0, 1]).ravel()
    report = M.classification_report(y_fake, pred, labels=[0, 1], target_names=["real", "fake"], output_dict=True, zero_division=0)
    return {
        "accuracy": float(M.accuracy_score(y_fake, pred)),
        "precision": float(M.precision_score(y_fake, pred, zero_division=0)),
        "recall": float(M.recall_score(y_fake, pred, zero_division=0)),
        "f1": float(M.f1_score(y_fake, pred, zero_division=0)),
        "roc_auc": float(M.roc_auc_score(y_fake, p_fake)),
        "average_precision": float(M.average_precision_score(y_fake, p_fake)),
        "eer": eer,
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "per_class": {
            cls: {k: float(v) for k, v in report[cls].items()} for cls in ("real", "fake")
        },
    }


def score_split(model, spec, rows: pd.DataFrame, raw_dir: Path, cfg: EvaluateConfig) -> np.ndarray:
    device = resolve_device(cfg.device)
    ds = FaceDataset(rows, raw_dir, spec)
    return sigmoid(predict_logits(model.to(device), loader(ds, cfg.batch_size, 0, device), device))


@dataclass
class Evaluation:
    metrics: dict[str, Any]
    predictions: pd.DataFrame  # test rows: path, actual, predicted, p_fake


def evaluate(model_path: Path, manifest_path: Path, raw_dir: Path, cfg: EvaluateConfig) -> Evaluation:
    """Score valid and test, choose the threshold on valid, compute the test metrics."""
    model, spec, extra = load_model_file(model_path)
    manifest = pd.read_parquet(manifest_path)
    valid, test = split_rows(manifest, "valid"), split_rows(manifest, "test")
    y_valid = (valid["label"].to_numpy() == 0).astype(int)
    y_test = (test["label"].to_numpy() == 0).astype(int)
    p_valid = score_split(model, spec, valid, raw_dir, cfg)
    p_test = score_split(model, spec, test, raw_dir, cfg)
    threshold = choose_threshold(y_valid, p_valid, cfg.threshold_rule, cfg.threshold)
    from sklearn.metrics import roc_auc_score

    metrics = {
        "threshold": threshold,
        "threshold_rule": cfg.threshold_rule,
        "test": classification_metrics(y_test, p_test, threshold),
        "valid": {"roc_auc": float(roc_auc_score(y_valid, p_valid)), "n": int(len(valid))},
        "n_test": int(len(test)),
        "data_fingerprint": extra.get("data_fingerprint", ""),
    }
    names = np.array(["real", "fake"])
    predictions = pd.DataFrame(
        {
            "path": test["path"],
            "actual": names[y_test],
            "predicted": names[(p_test >= threshold).astype(int)],
            "p_fake": p_test,
        }
    )
    return Evaluation(metrics=metrics, predictions=predictions)


# --------------------------------------------------------------------------- reports


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics as flat MLflow keys: test_roc_auc, test_confusion_tp, valid_roc_auc, threshold..."""
    out: dict[str, float] = {}

    def walk(prefix: str, obj: Any) -> None:
        if isinstance(obj, dict):
            for k, v in obj.items():
                walk(f"{prefix}_{k}" if prefix else str(k), v)
        elif isinstance(obj, (int, float)) and not isinstance(obj, bool):
            out[prefix.replace("-", "_")] = float(obj)

    walk("", metrics)
    return out


def write_reports(ev: Evaluation, raw_dir: Path, metrics_path: Path, plots_dir: Path, gallery_size: int = 16) -> list[Path]:
    """metrics.json, the DVC plot data (roc.csv, pr.csv, predictions.csv) and the PNGs; returns the PNGs."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    metrics_path.parent.mkdir(parents=True, exist_ok=True)
    metrics_path.write_text(json.dumps(ev.metrics, indent=2) + "\n")
    plots_dir.mkdir(parents=True, exist_ok=True)
    y = (ev.predictions["actual"] == "fake").astype(int).to_numpy()
    p = ev.predictions["p_fake"].to_numpy()
    fpr, tpr, thr = roc_curve(y, p)
    pd.DataFrame({"fpr": fpr, "tpr": tpr, "threshold": np.minimum(thr, 1.0)}).to_csv(plots_dir / "roc.csv", index=False)
    precision, recall, _ = precision_recall_curve(y, p)
    pd.DataFrame({"recall": recall, "precision": precision}).to_csv(plots_dir / "pr.csv", index=False)
    ev.predictions.to_csv(plots_dir / "predictions.csv", index=False)
    return _pngs(ev, raw_dir, plots_dir, fpr, tpr, recall, precision, gallery_size)


def _pngs(ev, raw_dir, plots_dir, fpr, tpr, recall, precision, gallery_size) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from PIL import Image

    from realfake.layout import image_root

    m = ev.metrics["test"]
    paths = []

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"ROC AUC {m['roc_auc']:.4f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fake caught)", title="ROC, test split")
    ax.legend(loc="lower right")
    paths.append(_save(fig, plots_dir / "roc.png"))

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(recall, precision, label=f"AP {m['average_precision']:.4f}")
    ax.set(xlabel="recall (fake)", ylabel="precision (fake)", title="Precision-recall, test split", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    paths.append(_save(fig, plots_dir / "pr.png"))

    c = m["confusion"]
    mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(mat, cmap="Blues")
    for (i, j), v in np.ndenumerate(mat):
        ax.text(j, i, str(v), ha="center", va="center", color="black" if v < mat.max() / 2 else "white")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "fake"], yticklabels=["real", "fake"],
           xlabel="predicted", ylabel="actual", title=f"Confusion at threshold {ev.metrics['threshold']:.3f}")
    paths.append(_save(fig, plots_dir / "confusion.png"))

    # The most confidently wrong test images: what the model gets badly wrong.
    pred = ev.predictions
    wrong = pred[pred["actual"] != pred["predicted"]].copy()
    wrong["confidence"] = np.where(wrong["predicted"] == "fake", wrong["p_fake"], 1 - wrong["p_fake"])
    wrong = wrong.sort_values("confidence", ascending=False).head(gallery_size)
    cols = 4
    rows = max(1, int(np.ceil(len(wrong) / cols)))
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 2.2, rows * 2.4), squeeze=False)
    for ax in axes.ravel():
        ax.axis("off")
    for ax, r in zip(axes.ravel(), wrong.itertuples()):
        ax.imshow(Image.open(image_root(raw_dir) / r.path).convert("RGB"))
        ax.set_title(f"{r.actual}, p_fake {r.p_fake:.2f}", fontsize=8)
    fig.suptitle("Most confidently wrong (test)" if len(wrong) else "No test image misclassified", fontsize=10)
    paths.append(_save(fig, plots_dir / "errors.png"))
    return paths


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
