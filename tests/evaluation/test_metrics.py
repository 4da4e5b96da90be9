"""Metrics (scikit-learn underneath), on scores whose answers are known; the verdicts' metrics."""

from __future__ import annotations

import numpy as np
import pytest

from realfake.detector.decision import Verdicts
from realfake.evaluation.metrics import classification_metrics, equal_error_rate, verdict_metrics


def test_perfect_separation():
    y = np.array([0, 0, 0, 1, 1, 1])
    p = np.array([0.1, 0.2, 0.3, 0.7, 0.8, 0.9])
    m = classification_metrics(y, p, threshold=0.5)
    assert m["roc_auc"] == 1.0 and m["accuracy"] == 1.0 and m["eer"] == 0.0
    assert m["confusion"] == {"tn": 3, "fp": 0, "fn": 0, "tp": 3}


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


def test_verdict_metrics_count_uncertain_answers_apart():
    y = np.array([0, 0, 0, 0, 1, 1, 1, 1])
    label = np.array(["real", "fake", "uncertain", "real", "fake", "fake", "uncertain", "real"], dtype=object)
    p = np.array([0.1, 0.9, 0.5, 0.2, 0.8, 0.95, 0.4, 0.3])
    m = verdict_metrics(y, Verdicts(p, label, np.where(label == "uncertain", "why", "")))
    assert m["reals_called_fake"] == 0.25 and m["fakes_caught"] == 0.5 and m["uncertain"] == 0.25
    assert m["acc"] == pytest.approx((2 / 3 + 2 / 3) / 2)  # of the verdicts given: 2 of 3 reals, 2 of 3 fakes right
    assert m["score"] == pytest.approx(((2 + 0.5) / 4 + (2 + 0.5) / 4) / 2)  # an uncertain answer: a coin flip
    assert m["auc"] == pytest.approx(11 / 16)  # 11 of 16 (fake, real) pairs ranked right
    only_fakes = verdict_metrics(np.ones(2, int), Verdicts(p[:2], label[:2], label[:2]))
    assert only_fakes["reals_called_fake"] is None and only_fakes["auc"] is None and only_fakes["score"] is None


def test_tpr_at_low_fpr():
    y = np.array([0] * 100 + [1] * 10)
    p = np.concatenate([np.linspace(0, 0.5, 100), np.linspace(0.3, 1.0, 10)])  # the top real scores 0.5
    m = classification_metrics(y, p, threshold=0.5)
    caught_above_all_reals = np.mean(p[100:] > 0.5)
    assert m["tpr_at_fpr_0p1pct"] == pytest.approx(caught_above_all_reals)  # 0.1 % of 100 reals: none may pass
    assert m["tpr_at_fpr_1pct"] >= m["tpr_at_fpr_0p1pct"]
    separated = classification_metrics(np.array([0, 0, 1, 1]), np.array([0.1, 0.2, 0.8, 0.9]), 0.5)
    assert separated["tpr_at_fpr_0p1pct"] == 1.0
