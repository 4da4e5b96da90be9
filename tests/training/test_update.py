"""Updating a trained detector on a new generator: the probe tuned with replay and distillation, the model file
it writes, and clear errors."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.samples import TINY, with_heldout
from helpers.training import TINY_SPECTRAL, TINY_TRAIN, run_train
from realfake.data.newimages import check_new_images
from realfake.data.sample.generate import generate_heldout
from realfake.data.validation import ValidateConfig
from realfake.detector.decision import Decision
from realfake.detector.heads import FamilyHead
from realfake.detector.modelfile import load_model_file, save_torch
from realfake.detector.network import load_state_dict
from realfake.detector.spectrum import SpectralProbe, fit_probe, pixel_features, tune_probe
from realfake.errors import ConfigError, RealfakeError
from realfake.images import ImageFiles
from realfake.training.config import TrainConfig
from realfake.training.data import targets
from realfake.training.update import HeadUpdate, ProbeUpdate, UpdateConfig, update_model

#: The tiny run's settings: the network and a small probe.
TINY_FUSED = {**TINY_TRAIN, "epochs": 1, "spectral": TINY_SPECTRAL}
#: An update's settings for the tiny run: a head on one perturbed pass of the reals and two of the new fakes; a probe
#: tuned for 200 steps on one replayed pass and two of the new fakes.
TINY_HEAD = HeadUpdate(real_passes=1, new_passes=2)
TINY_PROBE = ProbeUpdate(passes=1, new_passes=2, steps=200)
TINY_PROBE_REFIT = ProbeUpdate(passes=1, new_passes=2, steps=200, refit=True)


def _clusters(n: int, centre: float, seed: int, dims: int = 40) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(n, dims, generator=g)
    x[:, 0] += centre
    return x


def _features(n_per: int = 300):
    """Reals at -2 and fakes at +2 along one feature; the new generator's fakes at -2 too, but off along another."""
    reals, fakes = _clusters(n_per, -2.0, 0), _clusters(n_per, 2.0, 1)
    new = _clusters(60, -2.0, 2)
    new[:, 1] += 8.0
    x = torch.cat([reals, fakes])
    y = torch.cat([torch.zeros(n_per), torch.ones(n_per)])
    return x, y, new


def _padded(x: torch.Tensor) -> torch.Tensor:
    from realfake.detector.spectrum import N_FEATURES

    return torch.nn.functional.pad(x, (0, N_FEATURES - x.shape[1]))


def test_the_tuned_probe_catches_the_new_fakes_and_distillation_holds_the_old_logits():
    x, y, new = (_padded(t) if t.dim() == 2 else t for t in _features())
    parent = fit_probe(x, y, l2=1e-3, hidden=8, steps=500)

    def accuracy(probe) -> float:
        return float(((probe.logit(x).squeeze(1) > 0).float() == y).float().mean())

    def caught(probe) -> float:
        return float((probe.logit(new) > 0).float().mean())

    kw = dict(new_share=0.25, l2=1e-3, steps=400, seed=0)
    original = {k: v.clone() for k, v in parent.state_dict().items()}
    free = tune_probe(parent, x, y, new, torch.ones(len(new)), distill=0.0, **kw)
    held = tune_probe(parent, x, y, new, torch.ones(len(new)), distill=0.3, **kw)
    with torch.no_grad():
        assert caught(parent) < 0.1, "the parent calls the new fakes real"
        assert caught(free) > 0.9 and caught(held) > 0.8, "the new fakes are caught"
        assert accuracy(held) >= accuracy(free) and accuracy(held) > accuracy(parent) - 0.01, "the old task holds"
        drift = {name: float((p.logit(x) - parent.logit(x)).abs().mean()) for name, p in (("free", free),
                                                                                           ("held", held))}
    assert drift["held"] < drift["free"] / 1.5, drift
    assert isinstance(free, SpectralProbe) and torch.equal(free.mean, parent.mean), "the standardisation is kept"
    assert all(torch.equal(v, parent.state_dict()[k]) for k, v in original.items()), "the parent is left as it was"


@pytest.fixture(scope="module")
def parent_model(tiny_manifest, tiny_sample, module_tmp):
    """A tiny fused model, and a held-out folder of 40 fakes of each of two generator families it never saw."""
    run_train(TrainConfig(**TINY_FUSED), tiny_manifest, tiny_sample, module_tmp / "run")
    held = module_tmp / "heldout"
    generate_heldout(held, with_heldout(TINY, 40, ("bicubic", "nearest")), workers=1)
    return module_tmp / "run" / "model.pt", held / "bicubic"


def test_an_update_tunes_the_probe_keeps_the_network_and_refits_the_decision(parent_model, tiny_data, tmp_path):
    parent, folder = parent_model
    new = [check_new_images(folder, "fakes", ValidateConfig(), tiny_data, count=20)]
    cfg = UpdateConfig(fakes=str(folder), count=20, method="probe", probe=TINY_PROBE_REFIT)
    out = tmp_path / "updated.pt"
    lines = []
    figures = update_model(parent, out, new, tiny_data, cfg, TrainConfig(**TINY_FUSED),
                           lineage={"parent_version": 1, "family": "bicubic"}, log=lines.append)
    before, after = load_state_dict(parent), load_state_dict(out)
    for k, v in before["state_dict"].items():
        assert torch.equal(v, after["state_dict"][k]), f"the network changed at {k}"
    changed = [k for k, v in before["spectral"]["state_dict"].items()
               if not torch.equal(v, after["spectral"]["state_dict"][k])]
    assert changed, "the probe was not tuned"
    assert after["updates"] == [{"parent_version": 1, "family": "bicubic"}]
    assert after["decision"] != before["decision"] and "threshold" in after["decision"]
    assert len(before["heads"]) == len(after["heads"]) == 2  # the train stage's synthetic heads, kept ...
    refitted = Decision.from_entry(after["decision"], "updated")  # ... their lift mapped into the refitted decision
    for was, now in zip(before["heads"], after["heads"]):
        assert now["family"] == was["family"] and now["columns"] == was["columns"]
        assert all(torch.equal(v, now["state_dict"][k]) for k, v in was["state_dict"].items() if k != "to_fused")
        mapped = FamilyHead(now["n_inputs"], now["hidden"])
        mapped.set_decision(refitted.threshold, refitted.coef, refitted.intercept)
        assert torch.equal(now["state_dict"]["to_fused"], mapped.to_fused)
        assert not torch.equal(now["state_dict"]["to_fused"], was["state_dict"]["to_fused"])
    assert figures["update/n_new"] == 20 and figures["update/n_new_windows"] == 40
    assert figures["update/n_replay_windows"] == len(tiny_data.rows("train"))
    assert any("probe tuned on 40 windows of 20 new images" in line for line in lines)
    kept = tmp_path / "kept.pt"  # the default: the parent's fusion and decision stay as they were
    update_model(parent, kept, new, tiny_data,
                 UpdateConfig(fakes=str(folder), count=20, method="probe", probe=TINY_PROBE), TrainConfig(**TINY_FUSED),
                 lineage={},
                 log=lambda s: None)
    same = load_state_dict(kept)
    assert same["decision"] == before["decision"]
    assert {k: same["spectral"][k] for k in ("weights", "bias", "gate")} == {
        k: before["spectral"][k] for k in ("weights", "bias", "gate")}
    model, spec, _ = load_model_file(out)  # a model file every user of it reads
    with torch.no_grad():
        def probe_logits(path):
            m, s, _ = load_model_file(path)
            x = torch.from_numpy(np.stack([ImageFiles(new[0].learn)[i] for i in range(20)]))
            return m.probe.logit(pixel_features(x)).squeeze(1)
        assert probe_logits(out).mean() > probe_logits(parent).mean(), "the new fakes score higher"


def test_a_head_learns_the_new_family_and_leaves_the_parent_as_it_was(parent_model, tiny_data, tmp_path):
    from realfake.detector.decision import FAKE
    from realfake.detector.preprocess import Preprocessor
    from realfake.detector.scoring import score

    parent, folder = parent_model
    new = [check_new_images(folder, "fakes", ValidateConfig(), tiny_data, count=20)]
    out, lines = tmp_path / "headed.pt", []
    train_cfg = TrainConfig(**TINY_FUSED)
    figures = update_model(parent, out, new, tiny_data, UpdateConfig(fakes=str(folder), count=20, head=TINY_HEAD),
                           train_cfg, lineage={"parent_version": 1, "family": "bicubic"}, log=lines.append)
    before, after = load_state_dict(parent), load_state_dict(out)
    assert torch.equal(torch.cat([v.flatten() for v in before["state_dict"].values()]),
                       torch.cat([v.flatten() for v in after["state_dict"].values()])), "the network is the parent's"
    assert after["decision"] == before["decision"] and after["updates"] == [{"parent_version": 1, "family": "bicubic"}]
    assert all(torch.equal(v, after["spectral"]["state_dict"][k]) for k, v in before["spectral"]["state_dict"].items())
    (*parents, head) = after["heads"]  # the parent's heads (the train stage's) as they were, and the new one
    assert [h["family"] for h in parents] == [h["family"] for h in before["heads"]] == [
        "synthetic up-samplers", "synthetic up-samplers (cyclic coherence)"]
    assert all(torch.equal(v, mine["state_dict"][k]) for mine, theirs in zip(parents, before["heads"])
               for k, v in theirs["state_dict"].items())
    assert head["columns"] is None  # the new family's head reads the whole evidence, the cyclic coherence too
    n_reals, n_valid = (int((targets(tiny_data, split) == 0).sum()) for split in ("train", "valid"))
    # its reals: the train split's clean, in one perturbed pass, and enlarged 2x (update.head.enlarged_reals)
    assert (head["family"], head["n_fakes"], head["n_reals"]) == ("bicubic", 20 * 3, n_reals * 3)
    assert head["n_bar_reals"] == n_valid * (1 + train_cfg.decision.passes)
    assert figures["update/head_fires_on_learned"] > 0
    assert any("a head for bicubic learned 60 windows of 20 new images" in line for line in lines)

    (parent_model_, spec, extra), (headed, _, _) = load_model_file(parent), load_model_file(out)
    decision = Decision.from_entry(extra["decision"], "parent")
    images = [*ImageFiles(tiny_data.files(tiny_data.rows("test"))), *ImageFiles(new[0].learn + new[0].test)]
    (lp, detail), (lu, _) = (score(m, images, Preprocessor(spec), torch.device("cpu"), 16, amp=False)
                             for m in (parent_model_, headed))
    was, now = decision.verdicts(lp, detail), decision.verdicts(lu, detail)
    lifted = lu != lp
    assert lifted[-len(new[0].learn + new[0].test):].any(), "it recognises some of the new family"
    assert np.all(lu >= lp) and np.all(now.label[was.label == FAKE] == FAKE), "a head never takes a fake back"
    assert len(decision.coef) == 1  # p_fake of the logit alone: the lift lands above the threshold, whatever the detail
    assert np.all(now.p_fake[lifted] > decision.threshold), "what it recognises clears the model's threshold"
    judged = lifted & (now.label != "uncertain")  # fake, unless a softer image's stricter threshold holds it back
    assert np.all((now.label[judged] == FAKE) | (now.threshold[judged] > decision.threshold))


def test_a_heads_bar_lets_through_at_most_its_share_of_the_reals_it_did_not_learn_from():
    from realfake.training.heads import fit_head

    g = np.random.default_rng(0)
    reals, fakes, bar_reals = g.normal(0, 1, (200, 6)), g.normal(3, 1, (200, 6)), g.normal(0, 1, (100, 6))
    for share, fired in ((0.0, 0), (0.05, 5)):
        head, facts = fit_head(fakes, reals, bar_reals, 8, 0.1, 0, "toy", share)
        with torch.no_grad():
            logits = head.logit(torch.from_numpy(bar_reals))
        assert int((logits >= head.bar).sum()) == fired and facts["fires_on_bar_reals"] == pytest.approx(fired / 100)
        assert facts["bar"] == float(head.bar) and facts["fires_on_learned"] > 0.5
    # the reals the network does not read cannot be fired on (the gate gives the network no say there): they do not
    # set the bar, which sits above the highest of those it reads
    with torch.no_grad():
        logits = head.logit(torch.from_numpy(bar_reals))
    read = np.ones(100, bool)
    read[np.argsort(-logits.numpy())[:3]] = False  # the three highest, unread
    head, facts = fit_head(fakes, reals, bar_reals, 8, 0.1, 0, "toy", 0.0, read)
    with torch.no_grad():
        logits = head.logit(torch.from_numpy(bar_reals))
    assert float(head.bar) == float(torch.nextafter(logits[read].max(), torch.tensor(np.inf)))
    assert int((logits >= head.bar).sum()) == 3 and facts["fires_on_bar_reals"] == 0 and facts["n_bar_reals_read"] == 97
    unread, _ = fit_head(fakes, reals, bar_reals, 8, 0.1, 0, "toy", 0.05, np.zeros(100, bool))  # none read: all rank
    assert float(unread.bar) == float(torch.nextafter(torch.sort(logits, descending=True).values[5],
                                                      torch.tensor(np.inf)))
    with pytest.raises(ConfigError, match=r"update.head.max_false_alarm must be a share in \[0, 1\), got 1"):
        HeadUpdate(max_false_alarm=1)


def test_new_reals_join_the_reals_a_head_learns_from(parent_model, tiny_data, tmp_path):
    from realfake.data.newimages import NewImages

    parent, folder = parent_model
    rows = tiny_data.rows("train")
    some_reals = [Path(p) for p in tiny_data.files(rows[targets(tiny_data, "train") == 0])][:10]
    new = [check_new_images(folder, "fakes", ValidateConfig(), tiny_data, count=20),
           NewImages("reals", some_reals[0].parent, some_reals, [], [])]
    no_enlarged = replace(TINY_HEAD, enlarged_reals=False)
    update_model(parent, tmp_path / "headed.pt", new, tiny_data, UpdateConfig(fakes=str(folder), count=20,
                                                                            head=no_enlarged),
                 TrainConfig(**TINY_FUSED), lineage={}, log=lambda s: None)
    *_, head = load_state_dict(tmp_path / "headed.pt")["heads"]
    n_reals = int((targets(tiny_data, "train") == 0).sum())
    assert (head["n_reals"], head["n_fakes"]) == (n_reals * 2 + 10 * 3, 20 * 3)


def test_an_update_from_a_model_without_a_probe_says_how_to_get_one(tiny_data, tmp_path, parent_model):
    parent, folder = parent_model
    blob = load_state_dict(parent)
    save_torch({k: v for k, v in blob.items() if k != "spectral"}, tmp_path / "net.pt")
    new = [check_new_images(folder, "fakes", ValidateConfig(), tiny_data, count=20)]
    with pytest.raises(RealfakeError, match="no spectral probe.*train.spectral.enabled"):
        update_model(tmp_path / "net.pt", tmp_path / "out.pt", new, tiny_data, UpdateConfig(count=20),
                     TrainConfig(**TINY_FUSED), lineage={})
    assert not (tmp_path / "out.pt").exists()


@pytest.mark.parametrize(("params", "message"), [
    ({"count": 0}, "update.count must be an integer >= 1"),
    ({"fakes": ""}, "update.fakes must name a folder"),
    ({"probe": {"new_share": 1.0}}, "update.probe.new_share must be a share in"),
    ({"probe": {"distill": -1}}, "update.probe.distill must be a number >= 0"),
    ({"distill": 1.0}, "'update.distill' is now 'update.probe.distill'"),
    ({"head": {"new_passes": -1}}, "update.head.new_passes must be an integer >= 0"),
    ({"head": {"alpha": 0}}, "update.head.alpha must be a number > 0"),
    ({"head": {"enlarged_reals": "yes"}}, "update.head.enlarged_reals must be true or false"),
    ({"start": True}, "update.start must be a registry alias"),
    ({"method": "lora"}, "update.method must be one of head, probe"),
    ({"head": {"hidden": 0}}, "update.head.hidden must be an integer >= 1"),
    ({"epochs": 3}, "epochs"),
])
def test_update_settings_errors_are_clear(params, message):
    with pytest.raises(ConfigError, match=message):
        UpdateConfig.from_params({**params})


def test_too_few_images_to_learn_from_is_refused(parent_model, tiny_data):
    _, folder = parent_model
    with pytest.raises(RealfakeError, match="learns from at least 20"):
        check_new_images(Path(folder), "fakes", ValidateConfig(), tiny_data, count=10)


# --------------------------------------------------------------------------- the stage, with a real MLflow registry


@pytest.fixture
def champion(tmp_path, monkeypatch, parent_model, tiny_manifest, tiny_sample):
    """A store whose champion, version 1, is the tiny fused model; the paths of a project on the tiny sample."""
    from dataclasses import replace

    from realfake.mlops import registry, tracking
    from realfake.paths import PATHS

    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'mlflow.db'}")
    mlflow = tracking.setup(tmp_path)
    parent, folder = parent_model
    register_cfg = registry.RegisterConfig()
    with mlflow.start_run():
        info = registry.log_pyfunc(parent, None)
    v1 = mlflow.register_model(info.model_uri, register_cfg.model_name)
    mlflow.MlflowClient().set_registered_model_alias(register_cfg.model_name, "champion", v1.version)
    paths = replace(PATHS.under(tmp_path), manifest=tiny_manifest, raw_dir=tiny_sample, heldout_dir=folder.parent)
    return mlflow, register_cfg, paths, folder


def test_two_updates_in_a_row_are_registered_with_their_lineage_and_measured(champion):
    from realfake.evaluation.robustness import RobustnessConfig
    from realfake.stages import update

    mlflow, register_cfg, paths, folder = champion
    robust = RobustnessConfig.from_params({"perturbations": [{"kind": "blur", "strength": 1.0}], "device": "cpu",
                                           "batch_size": 16})
    common = dict(count=20, head=TINY_HEAD, tolerance=1.0)
    args = (TrainConfig(**TINY_FUSED), ValidateConfig(), robust, register_cfg, paths)
    first = update.run(UpdateConfig(fakes=str(folder), **common), *args, log=lambda s: None)
    second = update.run(UpdateConfig(fakes=str(folder.parent / "nearest"), start=str(first["version"]), **common),
                        *args, log=lambda s: None)

    client = mlflow.MlflowClient()
    assert (first["version"], first["parent_version"]) == (2, 1)
    assert (second["version"], second["parent_version"]) == (3, 2)
    v3 = client.get_model_version(register_cfg.model_name, "3")
    assert v3.tags["parent_version"] == "2" and v3.tags["update_for"] == "nearest"
    assert "updated from version 2 for a new generator, 'nearest' (20 of its fakes" in v3.description
    assert "by a head for it added beside the parent" in v3.description
    champion = str(client.get_model_version_by_alias(register_cfg.model_name, "champion").version)
    assert champion == ("3" if second["alias_moved"] else "2" if first["alias_moved"] else "1")
    run = mlflow.get_run(second["run_id"])
    inputs = [(d.dataset.name, [t.value for t in d.tags]) for d in run.inputs.dataset_inputs]
    assert inputs == [("update-fakes-nearest", ["update"])]
    assert run.data.params["update.fakes"] == str(folder.parent / "nearest")

    # the second report's matrix: the model before any update, after the first, after the second
    matrix = (paths.update_report / "matrix.md").read_text()
    assert "| v1 | v2 +bicubic | v3 +nearest |" in matrix
    for row in ("| clean |", "| blur_s1 |", "| family bicubic |", "| family nearest |", "Average forgetting"):
        assert row in matrix
    records = pd.read_csv(paths.update_report / "matrix.csv")
    assert sorted(records["model"].unique()) == ["v1", "v2 +bicubic", "v3 +nearest"]
    metrics = json.loads((paths.update_report / "metrics.json").read_text())
    assert metrics["family"] == "nearest" and metrics["average_forgetting"] is not None
    assert len(records[records["column"] == "family bicubic"]) == 3, "every model is measured on every column"


def test_an_update_that_regresses_names_the_rows_and_keeps_the_champion(champion, monkeypatch):
    from realfake.evaluation import continual
    from realfake.evaluation.robustness import RobustnessConfig
    from realfake.stages import update

    mlflow, register_cfg, paths, folder = champion
    robust = RobustnessConfig.from_params({"perturbations": [], "device": "cpu", "batch_size": 16})
    real_gate = continual.gate

    def strict(before, after, new, tolerance):  # as if the clean row had lost 5 points of fakes caught
        worse = {**after, "clean": {**after["clean"], "fakes_caught": before["clean"]["fakes_caught"] - 0.05}}
        return real_gate(before, worse, new, tolerance)

    monkeypatch.setattr(continual, "gate", strict)
    lines = []
    record = update.run(UpdateConfig(fakes=str(folder), count=20, head=TINY_HEAD),
                        TrainConfig(**TINY_FUSED), ValidateConfig(), robust, register_cfg, paths, log=lines.append)
    assert not record["alias_moved"] and record["champion"] == 1
    assert any(r.startswith("clean: fakes caught") and "(-5.0 points)" in r for r in record["regressions"])
    assert any("gate not promoted: clean: fakes caught" in line for line in lines)
    client = mlflow.MlflowClient()
    assert str(client.get_model_version_by_alias(register_cfg.model_name, "champion").version) == "1"
    assert "Did not take the 'champion' alias" in client.get_model_version(register_cfg.model_name, "2").description


def test_the_lineage_scores_the_shared_network_once_with_the_same_verdicts(parent_model, tiny_data, tmp_path,
                                                                           monkeypatch):
    from realfake.detector.scoring import load_network_logits, save_network_logits
    from realfake.evaluation import robustness
    from realfake.evaluation.robustness import RobustnessConfig, run_robustness, run_robustness_many

    parent, folder = parent_model
    new = [check_new_images(folder, "fakes", ValidateConfig(), tiny_data, count=20)]
    updated = tmp_path / "updated.pt"
    update_model(parent, updated, new, tiny_data,
                 UpdateConfig(fakes=str(folder), count=20, method="probe", probe=TINY_PROBE), TrainConfig(**TINY_FUSED),
                 lineage={}, log=lambda s: None)
    cfg = RobustnessConfig.from_params({"perturbations": [{"kind": "blur", "strength": 1.0},
                                                          {"kind": "noise", "strength": 2}], "device": "cpu"})

    def table(path, shared=None):
        return run_robustness(path, tiny_data, folder.parent, cfg, log=lambda s: None, network_logits=shared).metrics

    shared = {}
    first = table(parent, shared)
    (store,) = shared.values()  # one network, one store
    batches = len(store)
    second = table(updated, shared)
    assert len(shared) == 1 and len(store) == batches > 0, "the updated model read every network logit it needed"
    assert first == table(parent) and second == table(updated), "remembered logits give the verdicts of a fresh run"
    assert second != first, "the two models are scored each with its own probe"

    # kept on disk by the robustness stage, read by an update's process: the same verdicts, the network not run
    saved = tmp_path / "network_logits.pt"
    save_network_logits(shared, saved, torch.device("cpu"), cfg.amp)
    known = load_network_logits(saved, torch.device("cpu"), cfg.amp)
    assert table(updated, known) == second
    assert [len(store) for store in known.values()] == [batches], "every network logit was read, none computed"

    # a model with a head reads the network's face embeddings too: remembered with the logits, none computed again
    headed = tmp_path / "headed.pt"
    update_model(parent, headed, new, tiny_data, UpdateConfig(fakes=str(folder), count=20, head=TINY_HEAD),
                 TrainConfig(**TINY_FUSED), lineage={}, log=lambda s: None)
    assert table(headed, known) == table(headed)
    assert [len(store) for store in known.values()] == [batches], "the embeddings were remembered with the logits"

    # the lineage in one pass: each image perturbed once for both models, the same tables as one run each
    perturbed = []
    apply = robustness._Perturb.__call__
    monkeypatch.setattr(robustness._Perturb, "__call__",
                        lambda self, img, i: perturbed.append(i) or apply(self, img, i))
    both = run_robustness_many([parent, updated], tiny_data, folder.parent, cfg, log=lambda s: None)
    assert [t.metrics for t in both] == [first, second]
    assert len(perturbed) == len(cfg.perturbations) * len(tiny_data.rows("test")), "one pass, not one per model"
