"""Metrics and threshold rules (scikit-learn underneath), on scores whose answers are known."""

from __future__ import annotations

import numpy as np
import pytest

from realfake.evaluation.metrics import choose_threshold, classification_metrics, equal_error_rate


def test_perfect_separation():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    m = classification_metrics(y, p, threshold=0.5)
    assert m["roc_auc"] == 1.0 and m["accuracy"] == 1.0 and m["eer"] == 0.0
    assert m["confusion"] == {"tn": 3, "fp": 0, "fn": 0, "tp": 3}
    for rule in ("youden", "f1", "eer"):
        t = choose_threshold(y, p, rule)
        assert 0.3 < t <= 0.7, (rule, t)


def test_known_confusion_and_per_class_report():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.6, 0.3, 0.9, 0.4, 0.8, 0.7])
    m = classification_metrics(y, p, threshold=0.5)
    assert m["confusion"] == {"tn": 3, "fp": 1, "fn": 1, "tp": 3}
    assert m["precision"] == pytest.approx(0.75) and m["recall"] == pytest.approx(0.75)
    assert m["per_class"]["real"]["recall"] == pytest.approx(0.75)
    assert m["roc_auc"] == pytest.approx(15 / 16)  # 15 of 16 (fake, real) pairs ranked right


def test_eer_where_rates_cross():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.6, 0.4, 0.7, 0.8, 0.9])  # one error each way
    eer, t = equal_error_rate(y, p)
    assert eer == pytest.approx(0.25)
    assert choose_threshold(y, p, "fixed", 0.42) == 0.42


def test_tpr_at_low_fpr():
    y = np.array([0] * 100 + [1] * 10)
    p = np.concatenate([np.linspace(0, 0.5, 100), np.linspace(0.3, 1.0, 10)])  # the top real scores 0.5
    m = classification_metrics(y, p, threshold=0.5)
    caught_above_all_reals = np.mean(p[100:] > 0.5)
    assert m["tpr_at_fpr_0p1pct"] == pytest.approx(caught_above_all_reals)  # 0.1 % of 100 reals: none may pass
    assert m["tpr_at_fpr_1pct"] >= m["tpr_at_fpr_0p1pct"]
    separated = classification_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), 0.5)
    assert separated["tpr_at_fpr_0p1pct"] == 1.0
