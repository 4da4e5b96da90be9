"""An update's accuracy matrix, its average accuracy and forgetting, and the gate before the champion alias."""

from __future__ import annotations

import pytest

from realfake.evaluation.continual import FAMILY, Matrix, columns, gate


def _cell(reals_fake=0.0, caught=1.0, uncertain=0.0, auc=1.0, score=None):
    score = (1 - reals_fake + caught) / 2 if score is None else score
    return {"reals_called_fake": reals_fake, "fakes_caught": caught, "uncertain": uncertain, "auc": auc, "score": score}


def _row(**cells):
    return {name.replace("family_", FAMILY): c for name, c in cells.items()}


def test_columns_are_the_robustness_rows_and_every_family():
    metrics = {"clean": _cell(), "perturbations": {"blur_s1": _cell(caught=0.9)},
               "cross_generator": {"families": {"bicubic": {**_cell(caught=0.2), "n_fake": 150}}}}
    row = columns(metrics)
    assert list(row) == ["clean", "blur_s1", "family bicubic"]
    assert row["family bicubic"]["fakes_caught"] == 0.2 and "n_fake" not in row["family bicubic"]


def test_the_gate_passes_a_gain_on_the_new_family_with_losses_within_tolerance():
    before = _row(clean=_cell(), blur_s1=_cell(caught=0.90), family_new=_cell(caught=0.2))
    after = _row(clean=_cell(), blur_s1=_cell(caught=0.895), family_new=_cell(caught=0.97))
    g = gate(before, after, [FAMILY + "new"], tolerance=0.01)
    assert g.promote and not g.regressions
    assert "family new: fakes caught 20.0% -> 97.0%" in g.reason


def test_the_gate_names_each_row_that_regressed_and_by_how_much():
    before = _row(clean=_cell(), jpeg_q50=_cell(reals_fake=0.004), blur_s1=_cell(caught=0.904),
                  family_old=_cell(caught=1.0), family_new=_cell(caught=0.2))
    after = _row(clean=_cell(), jpeg_q50=_cell(reals_fake=0.052), blur_s1=_cell(caught=0.740),
                 family_old=_cell(reals_fake=0.5, caught=1.0), family_new=_cell(caught=0.9))
    g = gate(before, after, [FAMILY + "new"], tolerance=0.01)
    assert not g.promote
    assert g.regressions == ["jpeg_q50: reals called fake 0.4% -> 5.2% (+4.8 points)",
                             "blur_s1: fakes caught 90.4% -> 74.0% (-16.4 points)"]
    assert "at most 1.0 points" in g.reason
    # a family's reals are the clean test reals: judged on the clean row, not once per family


def test_an_update_that_does_not_catch_more_of_the_new_family_is_not_promoted():
    before = _row(clean=_cell(), family_new=_cell(caught=0.2))
    g = gate(before, _row(clean=_cell(), family_new=_cell(caught=0.2)), [FAMILY + "new"], tolerance=0.01)
    assert not g.promote and g.regressions == ["family new (the new generator): fakes caught 20.0% -> 20.0%, no gain"]


def test_average_accuracy_and_forgetting_follow_chaudhry():
    rows = [_row(clean=_cell(score=0.99), family_a=_cell(score=0.60), family_b=_cell(score=0.70)),
            _row(clean=_cell(score=0.98), family_a=_cell(score=0.95), family_b=_cell(score=0.75)),
            _row(clean=_cell(score=0.97), family_a=_cell(score=0.93), family_b=_cell(score=0.96))]
    m = Matrix(["v1", "v2 +a", "v3 +b"], rows, [[], [FAMILY + "a"], [FAMILY + "b"]])
    assert m.average_accuracy() == pytest.approx((0.97 + 0.93 + 0.96) / 3)
    # clean: best earlier 0.99 -> 0.97; a: best earlier 0.95 -> 0.93; b is what the last update learned
    assert m.average_forgetting() == pytest.approx((0.02 + 0.02) / 2)
    assert Matrix(["v1"], rows[:1]).average_forgetting() is None
    text = "\n".join(m.markdown())
    assert "| family b | 0.0 % / 100.0 % / 0.0 %, 1.000 |" in text
    assert "Average forgetting after the last update: 2.0" in text
    assert [r["model"] for r in m.records()].count("v3 +b") == 3
