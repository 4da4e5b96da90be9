"""The detection metrics: the test metrics at a threshold, and the metrics of verdicts (uncertain included).

The positive class is *fake* (the model's output is p_fake). Everything comes
from scikit-learn; the equal error rate is read off its ROC curve.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from realfake.detector.decision import UNCERTAIN, Verdicts

#: Verdict metrics are rounded to this many decimals (reports stay readable; far below sampling noise).
DECIMALS = 6
#: The low false-positive rates the field reports the true-positive rate at (Ojha et al. 2023, Tan et al. 2024):
#: metric name -> FPR. A detector that flags real photos is unusable however high its AUC.
LOW_FPRS = {"tpr_at_fpr_1pct": 0.01, "tpr_at_fpr_0p1pct": 0.001}


def equal_error_rate(y_fake: np.ndarray, p_fake: np.ndarray) -> tuple[float, float]:
    """(EER, threshold at which the false-positive and false-negative rates cross)."""
    from sklearn.metrics import roc_curve

    fpr, tpr, thr = roc_curve(y_fake, p_fake)
    fnr = 1 - tpr
    i = int(np.nanargmin(np.abs(fnr - fpr)))
    return float((fpr[i] + fnr[i]) / 2), float(min(thr[i], 1.0))


def tpr_at_fpr(y_fake: np.ndarray, p_fake: np.ndarray, max_fpr: float) -> float:
    """The highest true-positive rate (fakes caught) at a threshold whose false-positive rate is at most ``max_fpr``.

    With n reals the FPR moves in steps of 1/n: below 1/n (0.1 % of 250 reals) it is the rate at
    which no real is flagged.
    """
    from sklearn.metrics import roc_curve

    fpr, tpr, _ = roc_curve(y_fake, p_fake)
    return float(tpr[fpr <= max_fpr].max())


def low_fpr_metrics(y_fake: np.ndarray, p_fake: np.ndarray) -> dict[str, float]:
    """:func:`tpr_at_fpr` at each of :data:`LOW_FPRS`."""
    return {name: tpr_at_fpr(y_fake, p_fake, fpr) for name, fpr in LOW_FPRS.items()}


def classification_metrics(y_fake: np.ndarray, p_fake: np.ndarray, threshold: float) -> dict[str, Any]:
    """Test metrics at ``threshold`` (predict fake when p_fake >= threshold)."""
    from sklearn import metrics as M

    pred = (p_fake >= threshold).astype(int)
    eer, _ = equal_error_rate(y_fake, p_fake)
    tn, fp, fn, tp = M.confusion_matrix(y_fake, pred, labels=[0, 1]).ravel()
    report = M.classification_report(y_fake, pred, labels=[0, 1], target_names=["real", "fake"], output_dict=True,
                                     zero_division=0)
    return {
        "accuracy": float(M.accuracy_score(y_fake, pred)),
        "precision": float(M.precision_score(y_fake, pred, zero_division=0)),
        "recall": float(M.recall_score(y_fake, pred, zero_division=0)),
        "f1": float(M.f1_score(y_fake, pred, zero_division=0)),
        "roc_auc": float(M.roc_auc_score(y_fake, p_fake)),
        "average_precision": float(M.average_precision_score(y_fake, p_fake)),
        "eer": eer,
        **low_fpr_metrics(y_fake, p_fake),
        "confusion": {"tn": int(tn), "fp": int(fp), "fn": int(fn), "tp": int(tp)},
        "per_class": {
            cls: {k: float(v) for k, v in report[cls].items()} for cls in ("real", "fake")
        },
    }


def _auc(y: np.ndarray, p: np.ndarray) -> float | None:
    from sklearn.metrics import roc_auc_score

    return round(float(roc_auc_score(y, p)), DECIMALS) if len(np.unique(y)) == 2 else None


def _share(mask: np.ndarray) -> float | None:
    return round(float(np.mean(mask)), DECIMALS) if len(mask) else None


def verdict_metrics(y: np.ndarray, v: Verdicts) -> dict[str, float | None]:
    """The verdicts of images with 0/1 fake ``y``: the share of reals called fake (``reals_called_fake``), of
    fakes called fake (``fakes_caught``) and of all answered uncertain (``uncertain``); ``acc``, the balanced
    accuracy of the verdicts given (uncertain ones left out); ``score``, the balanced accuracy with an uncertain
    answer counted as a coin flip (what the champion is chosen by); and the ROC-AUC and TPR at 1 % FPR of p_fake.
    None where undefined (no reals, no fakes, no verdict)."""
    y = np.asarray(y).astype(int)
    fake, unsure = v.label == "fake", v.label == UNCERTAIN
    real_ok, fake_ok = (v.label == "real")[y == 0], fake[y == 1]
    given = ~unsure
    both_given = (given & (y == 0)).any() and (given & (y == 1)).any()
    acc = (np.mean(~fake[given & (y == 0)]) + np.mean(fake[given & (y == 1)])) / 2 if both_given else None
    both = len(np.unique(y)) == 2
    coin = (np.mean(real_ok + 0.5 * unsure[y == 0]) + np.mean(fake_ok + 0.5 * unsure[y == 1])) / 2 if both else None
    return {
        "reals_called_fake": _share(fake[y == 0]),
        "fakes_caught": _share(fake_ok),
        "uncertain": _share(unsure),
        "acc": None if acc is None else round(float(acc), DECIMALS),
        "score": None if coin is None else round(float(coin), DECIMALS),
        "auc": _auc(y, v.p_fake),
        "tpr_at_fpr_1pct": round(tpr_at_fpr(y, v.p_fake, 0.01), DECIMALS) if both else None,
    }
