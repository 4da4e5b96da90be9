"""The decision: a calibrated p_fake, one threshold held to its false-alarm budget, and "uncertain" only where
the threshold no longer catches the fakes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import roc_auc_score

from realfake.detector.decision import (
    TOO_SOFT,
    Decision,
    expected_calibration_error,
    false_alarm_threshold,
    fit_decision,
    reliability,
    soft_thresholds,
)
from realfake.detector.spectrum import Fused, SpectralProbe, fit_fusion
from realfake.errors import ConfigError, RealfakeError
from realfake.training.config import DecisionConfig, TrainConfig


def mix(n: int = 4000, seed: int = 0):
    """A validation mix: a sharp half whose logits separate the classes, a soft half whose logits are noise (the
    trace is gone), as blur does; detail (high band, middle band) tells them apart."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    soft = np.arange(n) >= n // 2
    logit = np.where(soft, rng.normal(-1, 1, n), np.where(y == 1, 3.0, -3.0) + rng.normal(0, 1, n))
    detail = np.column_stack([rng.normal(-6, 0.5, n), np.where(soft, rng.normal(-8, 0.5, n), rng.normal(-4, 0.5, n))])
    return logit, detail, y, ~soft


def test_the_fit_keeps_its_false_alarm_budget_and_says_uncertain_where_the_trace_is_gone():
    logit, detail, y, sharp = mix()
    d = fit_decision(logit, detail, y, sharp, DecisionConfig(max_false_alarm=0.02))
    v = d.verdicts(logit, detail)
    soft = ~sharp
    assert np.mean(v.label[soft] == "uncertain") > 0.9 and np.mean(v.label[sharp] == "uncertain") < 0.02
    assert set(v.reason[v.label == "uncertain"]) == {TOO_SOFT} and set(v.reason[v.label != "uncertain"]) == {""}
    judged_reals = (v.label != "uncertain") & (y == 0)
    assert np.mean(v.label[judged_reals] == "fake") <= 0.02
    assert np.mean(v.label[sharp & (y == 1)] == "fake") > 0.95
    assert d.facts["mix_ece"] == pytest.approx(expected_calibration_error(y, v.p_fake))
    assert d.facts["mix_uncertain"] == pytest.approx(np.mean(v.label == "uncertain"))
    # without the rule, the soft half gets confident verdicts, half of them wrong
    never = fit_decision(logit, detail, y, sharp, DecisionConfig(uncertain=False))
    assert never.min_detail is None and not (never.verdicts(logit, detail).label == "uncertain").any()


def three_levels(n: int = 6000, seed: int = 0):
    """A mix at three levels of detail, softest first: noise (the trace is gone; a fifth of the mix); a weakened
    trace, whose fakes rank above its reals with a ROC-AUC under 0.9 while many still clear the threshold (two
    fifths); and sharp (two fifths). The levels fall on the edges of the decision's bins and strata."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 2, n)
    level = np.searchsorted([n // 5, 3 * n // 5], np.arange(n), side="right")
    logit = np.choose(level, [rng.normal(-1, 1, n), np.where(y == 1, rng.normal(0.5, 3.0, n), rng.normal(-3, 0.5, n)),
                              np.where(y == 1, 3.0, -3.0) + rng.normal(0, 1, n)])
    middle = np.choose(level, [rng.normal(-8, 0.2, n), rng.normal(-6, 0.2, n), rng.normal(-4, 0.2, n)])
    return logit, np.column_stack([rng.normal(-6, 0.5, n), middle]), y, level


def test_uncertain_is_read_from_the_fakes_the_threshold_catches_not_from_the_ranking():
    logit, detail, y, level = three_levels()
    weak = level == 1
    assert roc_auc_score(y[weak], logit[weak]) < 0.9  # what the ranking rule before called "no trace"
    d = fit_decision(logit, detail, y, level == 2, DecisionConfig(max_false_alarm=0.02))
    v = d.verdicts(logit, detail)
    assert np.mean(v.label[level == 0] == "uncertain") > 0.95
    assert not (v.label[level > 0] == "uncertain").any()
    assert np.mean(v.label[weak & (y == 1)] == "fake") > 0.3  # a verdict that still catches fakes is given
    # a stricter rule takes the weakened level too; min_caught 0 never says uncertain
    strict = fit_decision(logit, detail, y, level == 2, DecisionConfig(max_false_alarm=0.02, min_caught=0.9))
    assert np.mean(strict.verdicts(logit, detail).label[weak] == "uncertain") > 0.95
    assert fit_decision(logit, detail, y, level == 2, DecisionConfig(min_caught=0.0)).min_detail is None


def test_the_false_alarm_budget_holds_at_every_level_of_detail():
    # sharp images separate well; a band of softer ones (enlarged photos) has reals that score higher
    rng = np.random.default_rng(2)
    n = 6000
    y = rng.integers(0, 2, n)
    mid = rng.uniform(-6, -4, n)
    softer = mid < -5.2
    logit = np.where(y == 1, 3.0, -3.0) + rng.normal(0, 1, n) + np.where(softer & (y == 0), 2.5, 0.0)
    detail = np.column_stack([mid - 2, mid])
    cfg = DecisionConfig(max_false_alarm=0.02, uncertain=False)
    one = fit_decision(logit, detail, y, np.ones(n, bool), DecisionConfig(max_false_alarm=0.02, uncertain=False,
                                                                            strata=1))
    held = fit_decision(logit, detail, y, np.ones(n, bool), cfg)

    def false_alarms(d, where):
        return np.mean(d.verdicts(logit, detail).label[where & (y == 0)] == "fake")

    assert one.soft_thresholds == () and false_alarms(one, softer) > 0.04  # one threshold: the soft band pays
    assert held.soft_thresholds and all(t > held.threshold for _, t in held.soft_thresholds)
    assert false_alarms(held, softer) <= 0.03 and false_alarms(held, ~softer) <= 0.03
    assert held.facts["mix_worst_bin_false_alarm"] <= 0.035 < 0.04 < one.facts["mix_worst_bin_false_alarm"]
    v = held.verdicts(logit, detail)  # each image says which threshold it was judged against
    assert np.all(v.threshold[mid > -5.0] == held.threshold) and np.all(v.threshold[mid < -5.4] > held.threshold)
    assert np.array_equal(v.label == "fake", v.p_fake >= v.threshold)
    assert np.all(held.with_threshold(0.9).verdicts(logit, detail).threshold == 0.9)  # a user's: everywhere
    # a bin of detail with no reals in it raises nothing
    y_soft_fakes_sharp_reals = np.r_[np.ones(5), np.zeros(5)].astype(int)
    assert soft_thresholds(np.arange(10.0), y_soft_fakes_sharp_reals, np.r_[np.full(5, 0.9), np.full(5, 0.1)], 0.3,
                           2, 0.02) == ()


def test_calibrated_p_fake_means_a_probability():
    rng = np.random.default_rng(1)
    y = rng.integers(0, 2, 20000)
    logit = 0.3 * (np.where(y == 1, 2.0, -2.0) + rng.normal(0, 2, len(y)))  # under-confident logits
    detail = np.zeros((len(y), 2))
    d = fit_decision(logit, detail, y, np.ones(len(y), bool), DecisionConfig(uncertain=False))
    raw, calibrated = 1 / (1 + np.exp(-logit)), d.p_fake(logit, detail)
    assert expected_calibration_error(y, calibrated) < 0.02 < expected_calibration_error(y, raw)
    near = (calibrated > 0.75) & (calibrated < 0.85)
    assert abs(y[near].mean() - 0.8) < 0.05  # of the images given about 0.8, about 80 % are fake
    points = reliability(y, calibrated)
    assert sum(p["n"] for p in points) == len(y) and all(abs(p["p_fake"] - p["fake_share"]) < 0.05 for p in points)


def test_calibrating_on_detail_uses_both_bands_and_needs_them():
    logit, detail, y, sharp = mix()
    d = fit_decision(logit, detail, y, sharp, DecisionConfig(detail=True))
    assert len(d.coef) == 3
    with pytest.raises(RealfakeError, match="needs the images' detail"):
        d.p_fake(logit, None)


def test_the_threshold_allows_exactly_its_share_of_false_alarms():
    p_real = np.linspace(0, 0.99, 100)
    t = false_alarm_threshold(p_real, 0.05)
    assert np.sum(p_real >= t) == 5 and false_alarm_threshold(p_real, 0.001) > p_real.max()


def test_a_decision_travels_as_plain_numbers_and_a_bad_one_is_a_clear_error():
    d = Decision(0.7, (1.2, 0.1, -0.2), 0.3, -6.0, {"n_mix": 10}, ((-5.0, 0.8), (-5.5, 0.9)))
    assert Decision.from_entry(d.to_entry(), "m.pt") == d
    assert Decision.from_entry(None, "m.pt") == Decision()  # a model file from before the decision: p >= 0.5
    assert Decision().verdicts(np.array([0.1, -0.1])).label.tolist() == ["fake", "real"]
    assert d.with_threshold(0.9).threshold == 0.9 and d.with_threshold(None) is d
    with pytest.raises(ConfigError, match="threshold must be in"):
        d.with_threshold(1.5)
    for broken in ({"threshold": 0.5}, {**d.to_entry(), "threshold": "high"}, {**d.to_entry(), "coef": []},
                   {**d.to_entry(), "intercept": float("nan")}, {**d.to_entry(), "soft_thresholds": [[-5.0, 0.6]]},
                   {**d.to_entry(), "soft_thresholds": [[float("nan"), 0.8]]},
                   {**d.to_entry(), "soft_thresholds": [1]}):
        with pytest.raises(RealfakeError, match="m.pt: its decision entry is malformed.*train the model again"):
            Decision.from_entry(broken, "m.pt")


def test_one_class_is_a_clear_error():
    logit, detail, y, sharp = mix(100)
    with pytest.raises(RealfakeError, match="one class only"):
        fit_decision(logit, detail, np.zeros_like(y), sharp, DecisionConfig())


@pytest.mark.parametrize("params, message", [
    ({"max_false_alarm": 0}, "max_false_alarm must be a share in"),
    ({"min_caught": 1.5}, "min_caught must be a share in"),
    ({"min_auc": 0.9}, "'train.decision.min_auc' was replaced by 'train.decision.min_caught' "),
    ({"passes": 0}, "passes must be a positive integer"),
    ({"strata": 0}, "strata must be a positive integer"),
    ({"fusion": "average"}, "fusion is 'average'; use either"),
    ({"uncertain": "yes"}, "uncertain must be true or false"),
])
def test_bad_decision_settings_are_clear_errors(params, message):
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_params({"decision": params})


def test_the_fusion_weights_follow_the_detector_that_separates():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 2, 2000)
    good, noise = np.where(y == 1, 2.0, -2.0) + rng.normal(0, 1, 2000), rng.normal(0, 1, 2000)
    parts = np.column_stack([noise, good, np.ones(2000)])  # network logit, probe logit, the network's share
    weights, bias = fit_fusion(parts, y, "sum")
    assert weights[1] > 1 and abs(weights[0]) < 0.2 and bias.shape == (1,)
    weights, bias = fit_fusion(parts, y, "either")  # each calibrated on its own: the noise gets no weight
    assert weights[1] > 1 and abs(weights[0]) < 0.2 and bias.shape == (2,)


def test_either_rule_lets_one_confident_detector_call_a_fake_the_other_misses():
    # the mix: the probe separates every image, the network all but the 30 % it reads as noise (re-compressed);
    # a new family that only the network sees (the probe reads its fakes as real), as held-out up-samplers are
    rng = np.random.default_rng(1)
    n, m = 4000, 500
    y = rng.integers(0, 2, n)
    sign = np.where(y == 1, 1.0, -1.0)
    noisy = rng.random(n) < 0.3
    net = np.where(noisy, rng.normal(0, 1.5, n), 3 * sign + rng.normal(0, 1, n))
    parts = np.column_stack([net, 3 * sign + rng.normal(0, 1, n), np.ones(n)])
    new = np.column_stack([4 + rng.normal(0, 1, m), -3 + rng.normal(0, 1, m), np.ones(m)])
    model = Fused(torch.nn.Identity(), SpectralProbe(), torch.ones(2), torch.zeros(1))

    def fused(p: np.ndarray) -> np.ndarray:
        return model.combine(*torch.from_numpy(p).float().T.unsqueeze(-1)).squeeze(-1).numpy()

    caught = {}
    for rule in ("either", "sum"):
        model.set_fusion(rule, *fit_fusion(parts, y, rule))
        threshold = np.quantile(fused(parts)[y == 0], 0.99)  # 1 % of the mix's reals called fake
        caught[rule] = (np.mean(fused(parts)[y == 1] > threshold), np.mean(fused(new) > threshold))
    assert caught["either"][0] > 0.99 and caught["sum"][0] > 0.99, caught  # the mix: both catch its fakes
    assert caught["either"][1] > 0.85 and caught["sum"][1] < 0.1, caught  # the new family: the sum outvotes it
    # no say for the network (share 0): the probe's calibrated logit alone, whatever the network's logit
    model.set_fusion("either", *fit_fusion(parts, y, "either"))
    off = torch.tensor([[50.0], [-50.0]]), torch.zeros(2, 1), torch.zeros(2, 1)
    torch.testing.assert_close(model.combine(*off), (model.bias[1] + torch.zeros(2, 1)))
