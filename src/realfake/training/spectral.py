"""Fitting the spectral probe beside the trained network (``train.spectral``), and the weights that fuse them.

After the network has trained, :func:`fit_spectral`:

1. passes over the train split ``passes`` times, each image (with the run's synthetic fakes,
   :mod:`realfake.training.synthetic`) perturbed by the ``augment`` mix (blur, JPEG, down-then-up
   scaling, noise) and fitted as scoring fits it (the centred ``window``: the probe reads the spectrum of
   more pixels than the network's ``score_size`` window, whose centre the network reads), and fits the
   :class:`~realfake.detector.spectrum.SpectralProbe` on the windows' spectra;
2. with ``gate``, measures how sharp the training images are as they are
   (:func:`~realfake.detector.spectrum.sharpness`, in a high and a middle frequency band): in each
   band, the network gets its full say on images at least as sharp as their 5th percentile and none
   on images a standard deviation below it, where it was never trained and its logit is noise; an
   image's share is the smaller of the two;
3. scores the valid split, perturbed the same way, with the network and the probe, divides each
   logit by its spread there and sums them (each detector gets the same say, whatever the scale of
   its logits; the network's times its share), and fits a scale and offset of that sum (Platt
   scaling), so p_fake stays a probability;
4. writes the probe, the gate and the fusion weights into the model file.

It reads images and scores them; it does not touch the network's weights. Nothing here knows the
sample's generators: it works unchanged on the real dataset.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Callable

import numpy as np
import torch
from PIL import Image
from torch.utils.data import Dataset

from realfake.data.manifest import Manifest
from realfake.detector.modelfile import add_spectral, load_model_file
from realfake.detector.preprocess import Augment, Preprocessor
from realfake.detector.scoring import autocast, batches, binary_metrics, resolve_device, to_model_input
from realfake.detector.spectrum import (
    Fused,
    fit_logistic,
    fit_probe,
    probe_spec,
    sharpness,
    spectral_entry,
    spectrum_features,
)
from realfake.training.config import TrainConfig
from realfake.training.data import TrainImages, split_pixels, targets
from realfake.training.synthetic import Synthetic

#: The random-number stream of the probe's passes (training epochs use 0, 1, ...): its own draws.
PROBE_STREAM = 1_000


class PerturbedWindows(Dataset):
    """Item ``k``: in pass ``k // n``, image ``k % n`` of a split of ``n`` (or the synthetic fake that replaces
    it, as in training), perturbed by ``augment`` and fitted by the scoring fit; with its target. Pass ``j``
    draws from random-number stream ``first + j`` (the train stage's: :data:`PROBE_STREAM` on)."""

    def __init__(self, images: TrainImages, augment: Augment, passes: int, first: int = PROBE_STREAM):
        self.images, self.augment, self.passes, self.first = images, augment, passes, first

    def __len__(self) -> int:
        return len(self.images) * self.passes

    def __getitem__(self, k: int) -> tuple[torch.Tensor, float]:
        epoch, i = self.first + k // len(self.images), k % len(self.images)
        img = self.images.image(epoch, i)
        img = self.augment.apply(Image.fromarray(img) if isinstance(img, np.ndarray) else img,
                                 np.random.default_rng([self.images.seed, epoch, i, 2]))
        return torch.from_numpy(self.images.preprocessor.pixels(img)), float(self.images.targets[i])


@torch.no_grad()
def score_windows(windows: PerturbedWindows, fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                  batch_size: int, workers: int) -> tuple[np.ndarray, np.ndarray]:
    """(fn of every window's standardised RGB batch, stacked; the targets)."""
    outs, ys = [], []
    for x, y in batches(windows, batch_size, workers, device):
        outs.append(fn(to_model_input(x, device)).float().cpu())
        ys.append(y)
    return torch.cat(outs).numpy(), torch.cat(ys).numpy()


def fit_spectral(model_file: Path, train_cfg: TrainConfig, data: Manifest, *, packed_dir: Path | None = None,
                 log: Callable[[str], None] = print) -> dict[str, float]:
    """Fit the probe and the fusion (``train_cfg.spectral``) for the network in ``model_file`` and write them
    into it, with the run's synthetic fakes, seed, device, precision and loader processes; the fit's figures
    on the perturbed valid split (network, probe and fused ROC-AUC, the fusion weights)."""
    cfg, seed, amp, workers = train_cfg.spectral, train_cfg.seed, train_cfg.amp, train_cfg.workers
    batch_size = 2 * train_cfg.batch_size  # as validation scores
    network, spec, _ = load_model_file(model_file)
    representation, network_window = spec.representation, spec.window
    if isinstance(network, Fused):  # fitted before: fit again on the network alone, in its own window
        network_window = network.network_window or spec.window
        network, representation = network.network, network.representation
    dev = resolve_device(train_cfg.device)
    window = train_cfg.probe_window  # what the probe reads; the network reads its network_window centre
    pre = Preprocessor(probe_spec(replace(spec, score_size=network_window), window))
    train_pixels, train_targets = split_pixels(data, "train", packed_dir), targets(data, "train")

    def windows(pixels, y, augment: Augment, passes: int, synth: Synthetic | None = None) -> PerturbedWindows:
        return PerturbedWindows(TrainImages(pixels, y, pre, seed, synth), augment, passes)

    train_windows = windows(train_pixels, train_targets, cfg.augment, cfg.passes, train_cfg.synthetic)
    feats, y = score_windows(train_windows, spectrum_features, dev, batch_size, workers)
    probe = fit_probe(torch.from_numpy(feats), torch.from_numpy(y), cfg.l2, cfg.hidden, seed).to(dev)
    gate = None
    if cfg.gate:  # the sharpness of the training images as they are: the network's full say from its 5th percentile
        sharp, _ = score_windows(windows(train_pixels, train_targets, Augment(hflip=False, jpeg_prob=0.0), 1),
                                 lambda x: sharpness(spectrum_features(x)), dev, batch_size, workers)
        full = np.quantile(sharp, 0.05, axis=0)
        gate = torch.from_numpy(np.stack([full - sharp.std(0), full], 1)).float()  # a row (none, full) per measure
    network = network.to(dev)
    fused = Fused(network, representation, probe, torch.ones(2), torch.zeros(1), gate, network_window).to(dev).eval()

    def parts(x: torch.Tensor) -> torch.Tensor:
        with autocast(dev, amp):
            return torch.cat(fused.parts(x), 1).float()

    valid = windows(split_pixels(data, "valid", packed_dir), targets(data, "valid"), cfg.augment, 1)
    scored, yv = score_windows(valid, parts, dev, batch_size, workers)
    logits, share = scored[:, :2], scored[:, 2]
    spread = logits.std(0).clip(min=1e-6)
    z = torch.from_numpy(logits[:, 0] * share / spread[0] + logits[:, 1] / spread[1]).unsqueeze(1)
    a, b = fit_logistic(z, torch.from_numpy(yv), l2=1e-6)
    weights = torch.from_numpy(float(a[0]) / spread)
    out = logits[:, 0] * share * float(weights[0]) + logits[:, 1] * float(weights[1]) + float(b)
    aucs = {name: binary_metrics(v, yv)["auc"] for name, v in
            (("network_auc", logits[:, 0]), ("probe_auc", logits[:, 1]), ("fused_auc", out))}
    facts = {**aucs, "n_train": len(train_windows), "n_valid": len(valid), "network_share": float(share.mean())}
    add_spectral(model_file, spectral_entry(probe, weights, b, gate, window, **facts))
    log(f"train: spectral probe on {len(train_windows)} perturbed windows; perturbed valid ROC-AUC network "
        f"{facts['network_auc']:.4f}, probe {facts['probe_auc']:.4f}, fused {facts['fused_auc']:.4f} (weights "
        f"{weights[0]:.4f}, {weights[1]:.4f}; the network's mean share {facts['network_share']:.2f})")
    return {f"spectral/{k}": float(v) for k, v in {**facts, "weight_network": weights[0],
                                                   "weight_probe": weights[1]}.items()}
