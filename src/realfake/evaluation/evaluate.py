"""Evaluation on the test split, with the decision threshold chosen on the valid split.

Metrics (:mod:`realfake.evaluation.metrics`) treat *fake* as the positive class.
Everything is computed once and written to the DVC metrics and plots files; the
evaluate stage logs the same numbers to the MLflow run.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from realfake.atomic import write_text
from realfake.config import build_config, flatten, is_int, require
from realfake.data.layout import image_root, is_fake
from realfake.data.manifest import Manifest
from realfake.detector.modelfile import load_model_file
from realfake.detector.preprocess import Preprocessor
from realfake.detector.scoring import p_fake, resolve_device
from realfake.evaluation.metrics import THRESHOLD_RULES, choose_threshold, classification_metrics
from realfake.images import ImageFiles


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section of params.yaml."""

    threshold_rule: str = "youden"  # youden | f1 | eer | fixed, chosen on the valid split
    threshold: float = 0.5  # used when threshold_rule is fixed
    batch_size: int = 64
    gallery_size: int = 16  # most confidently wrong test images shown in errors.png
    device: str = "auto"
    amp: bool = True  # score in bf16 where the device does it natively (CUDA, AMX/AVX-512 BF16 CPUs)

    def __post_init__(self) -> None:
        require(isinstance(self.amp, bool), f"evaluate.amp must be true or false, got {self.amp!r}.")
        require(self.threshold_rule in THRESHOLD_RULES,
                f"evaluate.threshold_rule is {self.threshold_rule!r}; use one of {', '.join(THRESHOLD_RULES)}.")
        require(is_int(self.batch_size) and self.batch_size >= 1,
                f"evaluate.batch_size must be a positive integer, got {self.batch_size!r}.")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "EvaluateConfig":
        """The config from the ``evaluate`` section of params.yaml."""
        return build_config(cls, params, "evaluate")


def score_split(model, spec, data: Manifest, split: str, batch_size: int, device: str = "auto",
                amp: bool = True) -> np.ndarray:
    """p_fake of every image of ``split``, decoded from the files, in manifest order."""
    images = ImageFiles(data.files(data.rows(split)))
    return p_fake(model, images, Preprocessor(spec), resolve_device(device), batch_size, amp=amp)


@dataclass
class Evaluation:
    """The metrics (as metrics.json) and the test split's predictions."""

    metrics: dict[str, Any]
    predictions: pd.DataFrame  # test rows: path, actual, predicted, p_fake


def evaluate(model_path: Path, data: Manifest, cfg: EvaluateConfig) -> Evaluation:
    """Score valid and test, choose the threshold on valid, compute the test metrics."""
    from sklearn.metrics import roc_auc_score

    model, spec, extra = load_model_file(model_path)
    valid, test = data.rows("valid"), data.rows("test")
    y_valid, y_test = is_fake(valid["label"]), is_fake(test["label"])
    p_valid = score_split(model, spec, data, "valid", cfg.batch_size, cfg.device, cfg.amp)
    p_test = score_split(model, spec, data, "test", cfg.batch_size, cfg.device, cfg.amp)
    threshold = choose_threshold(y_valid, p_valid, cfg.threshold_rule, cfg.threshold)
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
        {"path": test["path"], "actual": names[y_test], "predicted": names[(p_test >= threshold).astype(int)],
         "p_fake": p_test}
    )
    return Evaluation(metrics=metrics, predictions=predictions)


def read_eval_metrics(path: Path) -> dict[str, Any]:
    """The evaluate stage's metrics.json (register and robustness read its threshold and test metrics)."""
    from realfake.reports import read_stage_metrics

    return read_stage_metrics(path, "evaluate", ("threshold", "test.roc_auc"))


# --------------------------------------------------------------------------- reports


def flat_metrics(metrics: dict[str, Any]) -> dict[str, float]:
    """Numeric metrics as MLflow keys in the ``eval/`` section: eval/test_roc_auc, eval/valid_roc_auc,
    eval/threshold... The confusion counts stay in metrics.json and the confusion plot: as single-value
    charts they read as empty bars (a count of 0 shows nothing)."""
    return {f"eval/{k.replace('-', '_')}": float(v) for k, v in flatten(metrics, sep="_").items()
            if isinstance(v, (int, float)) and not isinstance(v, bool) and "_confusion_" not in f"_{k}"}


def write_reports(ev: Evaluation, raw_dir: Path, metrics_path: Path, plots_dir: Path,
                  gallery_size: int = 16) -> list[Path]:
    """metrics.json, the DVC plot data (roc.csv, pr.csv, predictions.csv) and the PNGs; returns the PNGs."""
    from sklearn.metrics import precision_recall_curve, roc_curve

    write_text(metrics_path, json.dumps(ev.metrics, indent=2) + "\n")
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
    m = ev.metrics["test"]
    return [
        _roc_png(fpr, tpr, m["roc_auc"], plots_dir / "roc.png"),
        _pr_png(recall, precision, m["average_precision"], plots_dir / "pr.png"),
        _confusion_png(m["confusion"], ev.metrics["threshold"], plots_dir / "confusion.png"),
        _errors_png(ev.predictions, raw_dir, gallery_size, plots_dir / "errors.png"),
    ]


def _roc_png(fpr, tpr, auc: float, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(fpr, tpr, label=f"ROC AUC {auc:.4f}")
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8)
    ax.set(xlabel="false positive rate (real called fake)", ylabel="true positive rate (fake caught)",
           title="ROC, test split")
    ax.legend(loc="lower right")
    return _save(fig, path)


def _pr_png(recall, precision, ap: float, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot(recall, precision, label=f"AP {ap:.4f}")
    ax.set(xlabel="recall (fake)", ylabel="precision (fake)", title="Precision-recall, test split", ylim=(0, 1.02))
    ax.legend(loc="lower left")
    return _save(fig, path)


def _confusion_png(c: dict[str, int], threshold: float, path: Path) -> Path:
    import matplotlib.pyplot as plt

    mat = np.array([[c["tn"], c["fp"]], [c["fn"], c["tp"]]])
    fig, ax = plt.subplots(figsize=(4, 3.6))
    ax.imshow(mat, cmap="Blues")
    for (i, j), v in np.ndenumerate(mat):
        ax.text(j, i, str(v), ha="center", va="center", color="black" if v < mat.max() / 2 else "white")
    ax.set(xticks=[0, 1], yticks=[0, 1], xticklabels=["real", "fake"], yticklabels=["real", "fake"],
           xlabel="predicted", ylabel="actual", title=f"Confusion at threshold {threshold:.3f}")
    return _save(fig, path)


def _errors_png(pred: pd.DataFrame, raw_dir: Path, gallery_size: int, path: Path) -> Path:
    """The most confidently wrong test images: what the model gets badly wrong."""
    import matplotlib.pyplot as plt
    from PIL import Image

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
    return _save(fig, path)


def _save(fig, path: Path) -> Path:
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
