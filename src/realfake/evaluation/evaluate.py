"""Evaluation on the test split, with the decision the model ships.

The calibration, threshold and "uncertain" rule were fitted by the train stage on the validation
mix (:mod:`realfake.detector.decision`) and travel in the model file; evaluation only reads them.
Metrics (:mod:`realfake.evaluation.metrics`) treat *fake* as the positive class: the verdicts'
(reals called fake, fakes caught, uncertain, the calibration error) and, beside them, the ranking's
(ROC-AUC, average precision, TPR at low FPR). Everything is computed once and written to the DVC
metrics and plots files; the evaluate stage logs the same numbers to the MLflow run.
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
from realfake.detector.decision import Decision, expected_calibration_error, reliability
from realfake.detector.modelfile import load_model_file
from realfake.detector.preprocess import Preprocessor
from realfake.detector.scoring import AMP, resolve_device, score
from realfake.evaluation.metrics import classification_metrics, verdict_metrics
from realfake.images import ImageFiles


@dataclass(frozen=True)
class EvaluateConfig:
    """The ``evaluate`` section of params.yaml."""

    batch_size: int = 64
    gallery_size: int = 16  # most confidently wrong test images shown in errors.png
    device: str = "auto"
    amp: bool = AMP  # score in bf16 where the device does it natively (CUDA, AMX/AVX-512 BF16 CPUs)

    def __post_init__(self) -> None:
        require(isinstance(self.amp, bool), f"evaluate.amp must be true or false, got {self.amp!r}.")
        require(is_int(self.batch_size) and self.batch_size >= 1,
                f"evaluate.batch_size must be a positive integer, got {self.batch_size!r}.")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "EvaluateConfig":
        """The config from the ``evaluate`` section of params.yaml."""
        return build_config(cls, params, "evaluate")


def score_split(model, spec, data: Manifest, split: str, batch_size: int, device: str = "auto",
                amp: bool = AMP) -> tuple[np.ndarray, np.ndarray]:
    """(logits, detail) of every image of ``split``, decoded from the files, in manifest order."""
    images = ImageFiles(data.files(data.rows(split)))
    return score(model, images, Preprocessor(spec), resolve_device(device), batch_size, amp=amp)


@dataclass
class Evaluation:
    """The metrics (as metrics.json) and the test split's predictions."""

    metrics: dict[str, Any]
    predictions: pd.DataFrame  # test rows: path, actual, predicted (fake, real or uncertain), p_fake, reason


def evaluate(model_path: Path, data: Manifest, cfg: EvaluateConfig) -> Evaluation:
    """Score the test split and give its verdicts with the model's own decision."""
    model, spec, extra = load_model_file(model_path)
    decision = Decision.from_entry(extra.get("decision"), str(model_path))
    test = data.rows("test")
    y_test = is_fake(test["label"])
    v = decision.verdicts(*score_split(model, spec, data, "test", cfg.batch_size, cfg.device, cfg.amp))
    metrics = {
        "threshold": decision.threshold,
        "test": {**classification_metrics(y_test, v.p_fake, decision.threshold),
                 **{k: m for k, m in verdict_metrics(y_test, v).items() if k not in ("auc", "tpr_at_fpr_1pct")},
                 "ece": expected_calibration_error(y_test, v.p_fake)},
        "reliability": reliability(y_test, v.p_fake),
        "n_test": int(len(test)),
        "data_fingerprint": extra.get("data_fingerprint", ""),
    }
    names = np.array(["real", "fake"])
    predictions = pd.DataFrame({"path": test["path"], "actual": names[y_test], "predicted": v.label.astype(str),
                                "p_fake": v.p_fake, "reason": v.reason.astype(str)})
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
            if isinstance(v, (int, float)) and not isinstance(v, bool) and "_confusion_" not in f"_{k}"
            and not k.startswith("reliability")}


def write_reports(ev: Evaluation, raw_dir: Path, metrics_path: Path, plots_dir: Path,
                  gallery_size: int = 16) -> list[Path]:
    """metrics.json, the DVC plot data (roc.csv, pr.csv, predictions.csv, reliability.csv) and the PNGs; returns
    the PNGs."""
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
    pd.DataFrame(ev.metrics["reliability"], columns=["p_fake", "fake_share", "n"]).to_csv(
        plots_dir / "reliability.csv", index=False)
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
        reliability_png(ev.metrics["reliability"], m["ece"], "test split", plots_dir / "reliability.png"),
    ]


def reliability_png(points: list[dict[str, float]], ece: float, what: str, path: Path) -> Path:
    """The reliability diagram: per bin of p_fake, the share of fakes against the mean p_fake (on the diagonal
    when p_fake is calibrated), each point's size its count."""
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(4.5, 4.5))
    ax.plot([0, 1], [0, 1], "--", color="grey", lw=0.8, label="calibrated")
    if points:
        n = np.array([q["n"] for q in points], dtype=float)
        ax.plot([q["p_fake"] for q in points], [q["fake_share"] for q in points], "-", color="tab:red", lw=1)
        ax.scatter([q["p_fake"] for q in points], [q["fake_share"] for q in points], s=20 + 200 * n / n.max(),
                   color="tab:red", label=f"ECE {ece:.3f}", zorder=3)
    ax.set(xlabel="p_fake (mean in the bin)", ylabel="share of fakes in the bin", xlim=(0, 1), ylim=(0, 1),
           title=f"Reliability, {what}")
    ax.legend(loc="upper left", fontsize=8)
    return _save(fig, path)


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

    wrong = pred[(pred["actual"] != pred["predicted"]) & (pred["predicted"] != "uncertain")].copy()
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
