"""Consistency pairs: each training crop also goes through the network perturbed, held to the clean logit."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from helpers.training import TINY_TRAIN, run_train
from realfake.detector.preprocess import Augment, InputSpec, Preprocessor
from realfake.errors import ConfigError
from realfake.training.config import Consistency, TrainConfig
from realfake.training.data import TrainImages, split_pixels, targets
from realfake.training.train import training_loss

NOISE = Augment(hflip=False, jpeg_prob=0.0, noise_prob=1.0, noise_sigma=(4.0, 4.0))


def test_a_pair_is_the_same_crop_clean_and_perturbed_seeded_by_its_key(tiny_data):
    pixels, t = split_pixels(tiny_data, "train", None), targets(tiny_data, "train")
    pre = Preprocessor(InputSpec(80, "crop"), Augment())
    plain = TrainImages(pixels, t, pre, seed=3)
    paired = TrainImages(pixels, t, pre, seed=3, pair=NOISE)
    clean, perturbed, y = paired[(1, 0)]
    assert y == t[0] and np.array_equal(clean.numpy(), plain[(1, 0)][0].numpy()), "the first view is the usual item"
    diff = perturbed.numpy().astype(float) - clean.numpy()
    assert perturbed.shape == clean.shape and 3 < diff.std() < 5, "the second: the same crop with sigma-4 noise"
    assert np.array_equal(paired[(1, 0)][1].numpy(), perturbed.numpy()), "seeded by (seed, epoch, index)"
    assert not np.array_equal(paired[(2, 0)][1].numpy() - paired[(2, 0)][0].numpy(), diff), "a new draw each epoch"


def test_the_consistency_term_is_added_to_the_loss_and_trains(tiny_manifest, tiny_sample, tmp_path, monkeypatch):
    import realfake.training.train as training

    sizes = []
    real_input = training.to_model_input

    def to_model_input(x, *args, **kwargs):
        sizes.append(len(x))
        return real_input(x, *args, **kwargs)

    monkeypatch.setattr(training, "to_model_input", to_model_input)
    one_epoch = {**TINY_TRAIN, "epochs": 1}
    run_train(TrainConfig(**one_epoch), tiny_manifest, tiny_sample, tmp_path / "off")
    off_sizes, sizes[:] = list(sizes), []
    cfg = TrainConfig(**one_epoch, consistency={"weight": 1.0, "augment": {"noise_prob": 1.0}})
    run_train(cfg, tiny_manifest, tiny_sample, tmp_path / "on")
    assert max(off_sizes) == 8 and max(sizes) == 16, "each step ran the clean and the perturbed batch together"
    assert np.isfinite(pd.read_csv(tmp_path / "on" / "history.csv")["train_loss"]).all()


def test_the_loss_adds_the_squared_gap_and_pulls_only_the_perturbed_copy():
    out = torch.tensor([2.0, -1.0], requires_grad=True)
    perturbed = torch.tensor([0.0, -1.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0])
    bce = torch.nn.BCEWithLogitsLoss()
    loss = training_loss(bce, out, y, perturbed, 0.5)
    assert loss.item() == pytest.approx(bce(out, y).item() + 0.5 * (4 + 0) / 2)
    loss.backward()
    assert perturbed.grad.tolist() == pytest.approx([0.5 * 2 * (0 - 2) / 2, 0.0])
    clean_only = torch.autograd.grad(bce(out, y), out)[0]
    assert out.grad.tolist() == pytest.approx(clean_only.tolist()), "the clean logits get the cross-entropy alone"
    assert training_loss(bce, out, y, perturbed[:0], 0.5).item() == pytest.approx(bce(out, y).item()), "no pairs"


def test_real_pairs_hold_only_the_reals_to_their_clean_logit():
    out = torch.tensor([2.0, -1.0, -3.0], requires_grad=True)
    perturbed = torch.tensor([0.0, 1.0, -3.0], requires_grad=True)
    y = torch.tensor([1.0, 0.0, 0.0])
    bce = torch.nn.BCEWithLogitsLoss()
    loss = training_loss(bce, out, y, perturbed, 0.5, pairs="real")
    assert loss.item() == pytest.approx(bce(out, y).item() + 0.5 * (0 + 4 + 0) / 3), "the fake's gap of 4 left out"
    loss.backward()
    assert perturbed.grad.tolist() == pytest.approx([0.0, 0.5 * 2 * (1 - -1) / 3, 0.0])
    everything = training_loss(bce, out, y, perturbed, 0.5, pairs="all").item()
    assert everything == pytest.approx(loss.item() + 0.5 * 4 / 3)


def test_consistency_settings_are_checked():
    with pytest.raises(ConfigError, match=r"train.consistency.weight must be a number of at least 0 \(0 = off\)"):
        TrainConfig.from_params({"consistency": {"weight": -1}})
    with pytest.raises(ConfigError, match="Unknown keys"):
        TrainConfig.from_params({"consistency": {"lambda": 1}})
    with pytest.raises(ConfigError, match="train.consistency.pairs must be one of all, real"):
        TrainConfig.from_params({"consistency": {"weight": 0.1, "pairs": "fake"}})
    assert not Consistency().enabled and Consistency(weight=0.5).enabled
    assert TrainConfig().digest() != TrainConfig(consistency={"weight": 0.5}).digest(), "checkpoints resume their own"
