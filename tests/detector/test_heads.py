"""A new generator's head: it turns to FAKE the verdicts of the images it recognises and leaves every other logit as
the parent gave it; a model file keeps it, and a malformed or mismatched one is a clear error."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from realfake.detector.decision import FAKE, Decision
from realfake.detector.heads import FamilyHead, head_entry, heads_from_entries
from realfake.detector.modelfile import add_entry, load_model_file, save_model_file
from realfake.detector.network import EMBEDDING, build_model
from realfake.detector.preprocess import InputSpec
from realfake.detector.spectrum import (
    CYCLIC_KINDS,
    N_CYCLIC,
    N_FEATURES,
    SpectralProbe,
    cyclic_features,
    spectral_entry,
    spectrum_features,
)
from realfake.errors import RealfakeError


def first_input_head(n_inputs: int, bar: float) -> FamilyHead:
    """A head whose logit is its first input (where positive), firing from ``bar``."""
    head = FamilyHead(n_inputs, 2, "toy")
    with torch.no_grad():
        head.layer.weight.zero_()
        head.layer.weight[0, 0] = 1.0
        head.layer.bias.zero_()
        head.out.weight.copy_(torch.tensor([[1.0, 0.0]]))
        head.out.bias.zero_()
        head.bar.fill_(bar)
    return head


@pytest.mark.parametrize("decision", [Decision(0.8, (2.0,), -1.0), Decision(0.7, (1.5, 0.4, -0.3), 0.2)])
def test_a_head_turns_what_it_recognises_to_fake_and_leaves_every_other_logit(decision):
    g = torch.Generator().manual_seed(0)
    n = 400
    fused = torch.randn(n, 1, generator=g) * 3
    evidence = torch.randn(n, 6, generator=g) * 2
    detail = torch.randn(n, 2, generator=g)
    live = torch.rand(n, generator=g) > 0.2
    head = first_input_head(6, bar=1.0)
    head.set_decision(decision.threshold, decision.coef, decision.intercept)
    with torch.no_grad():
        lifted = head.lift(fused, evidence, detail, live)
    fires = (live & (evidence[:, 0] >= 1.0)).numpy()
    assert fires.any() and (~fires).any()
    before, after = (decision.verdicts(z.squeeze(1).double().numpy(), detail.numpy()) for z in (fused, lifted))
    assert np.all(after.label[fires] == FAKE), "every image the head recognises is called fake"
    assert torch.equal(lifted[~torch.from_numpy(fires)], fused[~torch.from_numpy(fires)]), "the rest is untouched"
    assert np.all(after.p_fake >= before.p_fake), "a head only raises p_fake"
    was_fake = before.label == FAKE
    assert np.all(after.label[was_fake] == FAKE), "no verdict of fake is undone"
    just = fires & ~was_fake & (evidence[:, 0].numpy() < 1.05)  # at its bar: just over the threshold
    assert np.all(after.p_fake[just] - decision.threshold < 0.05)


def test_a_head_needs_a_decision_whose_calibration_rises_with_the_logit():
    with pytest.raises(RealfakeError, match="calibration rises with the logit"):
        first_input_head(3, 0.0).set_decision(0.5, (-1.0,), 0.0)


def test_a_head_entry_gives_back_the_same_head_and_a_malformed_one_is_a_clear_error():
    head = first_input_head(5, bar=0.3)
    head.set_decision(0.6, (1.0,), 0.0)
    entry = head_entry(head, n_fakes=10)
    (back,) = heads_from_entries([entry], "m.pt")
    x = torch.randn(20, 5)
    assert torch.equal(back.logit(x), head.logit(x)) and back.family == "toy" and float(back.bar) == pytest.approx(0.3)
    assert heads_from_entries(None, "m.pt") == []
    broken = {**entry, "state_dict": {k: v for k, v in entry["state_dict"].items() if k != "bar"}}
    with pytest.raises(RealfakeError, match="m.pt: its heads entry is malformed.*update the model again"):
        heads_from_entries([broken], "m.pt")


def test_a_head_of_some_columns_reads_those_alone_and_its_entry_keeps_them():
    head = first_input_head(4, bar=0.5)  # a head of 4 inputs, reading columns 3..6 of a wider evidence
    narrow = FamilyHead(4, 2, "toy", columns=(3, 7))
    narrow.load_state_dict(head.state_dict())
    g = torch.Generator().manual_seed(0)
    evidence = torch.randn(30, 10, generator=g)
    assert torch.equal(narrow.logit(evidence), head.logit(evidence[:, 3:7]))
    other = evidence.clone()
    other[:, :3], other[:, 7:] = 99.0, -99.0
    assert torch.equal(narrow.logit(other), narrow.logit(evidence)), "the columns it does not read change nothing"
    assert narrow.reads(10) and narrow.reads(7) and not narrow.reads(6) and head.reads(4) and not head.reads(10)
    (back,) = heads_from_entries([head_entry(narrow)], "m.pt")
    assert back.columns == (3, 7) and torch.equal(back.logit(evidence), narrow.logit(evidence))
    (whole,) = heads_from_entries([{k: v for k, v in head_entry(head).items() if k != "columns"}], "m.pt")
    assert whole.columns is None, "a file from before the columns: the head reads the whole evidence"
    with pytest.raises(RealfakeError, match="a head of 4 inputs cannot read columns \\(0, 3\\)"):
        FamilyHead(4, 2, columns=(0, 3))
    with pytest.raises(RealfakeError, match="m.pt: its heads entry is malformed.*update the model again"):
        heads_from_entries([{**head_entry(narrow), "columns": [0, 3]}], "m.pt")


@pytest.mark.parametrize("kind, said", [("hann", "hann"), ("plain", True)])  # plain: files that say true
def test_a_model_that_measures_the_cyclic_coherence_gives_it_to_the_heads_that_read_it(tmp_path, kind, said):
    torch.manual_seed(0)
    n_cyclic = CYCLIC_KINDS[kind]
    spec = InputSpec(96, "crop", "npr-white", network_window=96, probe_window=128)
    path = tmp_path / "m.pt"
    save_model_file(path, build_model("none", dropout=0.0).state_dict(), spec, {})
    entry = {"state_dict": SpectralProbe(4).state_dict(), "hidden": 4, "weights": [0.5, 2.0], "bias": -0.25,
             "gate": None, "rule": "sum", "cyclic": said}
    add_entry(path, "spectral", entry)
    parent, _, _ = load_model_file(path)
    x = torch.randn(6, 3, 128, 128)
    width = N_FEATURES + EMBEDDING
    with torch.no_grad():
        found = parent.evidence_parts(x)[0]
        assert parent.cyclic == kind and found.shape == (6, width + n_cyclic) == (6, parent.n_evidence)
        torch.testing.assert_close(found[:, width:], cyclic_features(x, kind))
        head = FamilyHead(n_cyclic, 3, "toy", columns=(width, width + n_cyclic))
        h = head.logit(found)
        head.bar.fill_(float(h.median()))
        head.set_decision(0.5, (1.0,), 0.0)
    add_entry(path, "heads", [head_entry(head)])
    model, _, _ = load_model_file(path)
    with torch.no_grad():
        fires = h >= h.median()
        lifted, base = model(x), parent(x)
    assert 0 < int(fires.sum()) < len(x) and torch.all(lifted[fires] > 0)
    assert torch.equal(lifted[~fires], base[~fires])
    add_entry(path, "spectral", {**entry, "cyclic": False})  # the same head on a model that does not measure it
    with pytest.raises(RealfakeError, match=f"a head reads \\[\\(1056, {1056 + n_cyclic}\\)\\] inputs where this "
                                            "model gives 1056"):
        load_model_file(path)
    add_entry(path, "spectral", {**entry, "cyclic": "yes"})
    with pytest.raises(RealfakeError, match="spectral probe entry is malformed.*cyclic 'yes'; expected false, true or "
                                            "one of hann, plain"):
        load_model_file(path)
    saved = spectral_entry(parent.probe, parent.weights, parent.bias, rule="sum", cyclic=kind)["cyclic"]
    assert saved == said and N_CYCLIC == CYCLIC_KINDS["hann"], "written as read: a file of before hann says true"


def test_a_model_file_keeps_its_heads_and_refuses_one_that_does_not_fit(tmp_path):
    torch.manual_seed(0)
    spec = InputSpec(96, "crop", "npr-white", network_window=96, probe_window=128)
    path = tmp_path / "m.pt"
    save_model_file(path, build_model("none", dropout=0.0).state_dict(), spec, {})
    probe = SpectralProbe(4)
    add_entry(path, "spectral", {"state_dict": probe.state_dict(), "hidden": 4, "weights": [0.5, 2.0], "bias": -0.25,
                                 "gate": None, "rule": "sum"})
    x = torch.randn(6, 3, 128, 128)
    parent, _, _ = load_model_file(path)
    with torch.no_grad():
        evidence = torch.cat([spectrum_features(x), parent.network_evidence(x)[:, :-1]], 1)
        assert torch.allclose(parent.network_evidence(x)[:, -1:], parent.network_logit(x)), "one pass, one logit"
        head = FamilyHead(N_FEATURES + EMBEDDING, 3, "toy")
        h = head.logit(evidence)
        head.bar.fill_(float(h.median()))  # fires on half of them
        head.set_decision(0.5, (1.0,), 0.0)
    add_entry(path, "heads", [head_entry(head)])
    model, _, extra = load_model_file(path)
    assert len(model.heads) == 1 and extra["heads"][0]["family"] == "toy" and "state_dict" not in extra["heads"][0]
    with torch.no_grad():
        base, lifted = parent(x), model(x)
        fires = h >= h.median()
        assert 0 < int(fires.sum()) < len(x)
        assert torch.equal(lifted[~fires], base[~fires]), "the images it does not recognise keep the parent's logit"
        assert torch.all(lifted[fires] > 0), "the ones it does are called fake (p_fake 0.5 is logit 0)"
        assert torch.equal(model.dense(x), lifted)

    add_entry(path, "heads", [head_entry(first_input_head(7, 0.0))])
    with pytest.raises(RealfakeError, match="a head reads \\[7\\] inputs where this model gives"):
        load_model_file(path)
