"""Fitting a new generator's head (:class:`~realfake.detector.heads.FamilyHead`): what ``update.method: head`` adds.

The head reads each image's evidence, the probe's spectrum features and the network's face embedding
(:func:`evidence`), and learns the new family's fakes against reals the parent model passes:

- its **fakes** are the new images as they are, and in ``update.head.new_passes`` passes of the probe's
  perturbations (``train.spectral.augment``; none by default: on the sample, the perturbed copies of a new family's
  fakes look like perturbed reals, and learning them cost the clean family more than it added);
- its **reals** are the train split's, clean and in ``update.head.real_passes`` passes of the validation mix's
  perturbations (``train.decision.augment``), so it learns what a resized, blurred or re-compressed real looks like
  rather than calling them fake;
- its **bar** is read from reals it did not learn from: the valid split's, clean and in ``train.decision.passes``
  passes of the same perturbations (the validation mix's reals); the head fires from the highest logit among them,
  so on the mix it adds no false alarm.

Fitted by scikit-learn's ``MLPClassifier`` (one ReLU layer, Adam, L2 ``update.head.alpha``) on standardised
evidence; the weights are copied into the head, whose logit is the classifier's log-odds.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from realfake.detector.heads import FamilyHead
from realfake.detector.preprocess import Augment, Preprocessor, to_model_input
from realfake.detector.scoring import autocast, memory_format, resolve_device
from realfake.detector.spectrum import Fused, spectrum_features
from realfake.training.config import TrainConfig
from realfake.training.data import TrainImages
from realfake.training.phases import Phases
from realfake.training.spectral import PerturbedWindows, perturbed_batches


@torch.no_grad()
def evidence(model: Fused, x: torch.Tensor) -> torch.Tensor:
    """(B, spectrum features + face embedding) of a standardised RGB batch: what a head reads."""
    return torch.cat([spectrum_features(x), model.network_evidence(x)[:, :-1]], 1)


@torch.no_grad()
def windows_evidence(model: Fused, pixels: Sequence, target: float, augment: Augment, passes: int, first: int,
                     clean: bool, spec: Any, train_cfg: TrainConfig, phases: Phases, name: str) -> np.ndarray:
    """The :func:`evidence` (N, D) of ``pixels`` (all of target ``target``) in ``passes`` passes of ``augment``
    drawn from streams ``first`` on, and first as they are where ``clean``; made and scored as the train stage
    scores its validation mix (its device, precision and loader processes)."""
    device = resolve_device(train_cfg.device)
    images = TrainImages(pixels, np.full(len(pixels), target, dtype=np.float32), Preprocessor(spec), train_cfg.seed)
    on_device = train_cfg.perturbs_on_device(device)
    sets = [PerturbedWindows(images, augment, passes, first=first + 1, on_device=on_device)] if passes else []
    if clean:
        sets.insert(0, PerturbedWindows(images, Augment(hflip=False, jpeg_prob=0.0), 1, first=first,
                                        on_device=on_device))
    layout, out = memory_format(device, train_cfg.amp), []
    model = model.to(device, memory_format=layout).eval()
    workers = train_cfg.loader_workers(device, windows=True)
    for windows in sets:
        for x, _ in perturbed_batches(windows, 2 * train_cfg.batch_size, workers, device, phases, f"{name}_windows"):
            with phases(f"{name}_evidence"), autocast(device, train_cfg.amp):
                out.append(evidence(model, to_model_input(x, device, layout)).float().cpu())
    return torch.cat(out).numpy()


def fit_head(fakes: np.ndarray, reals: np.ndarray, bar_reals: np.ndarray, hidden: int, alpha: float, seed: int,
             family: str = "") -> tuple[FamilyHead, dict[str, float]]:
    """A :class:`FamilyHead` (``hidden`` units, L2 penalty ``alpha``) fitted on evidence of ``fakes`` against ``reals``,
    firing from the highest logit of
    ``bar_reals`` (reals it did not learn from); and its figures (the share of its own fakes it fires on, the
    bar). Not yet mapped into a decision (:meth:`FamilyHead.set_decision`)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([reals, fakes])
    y = np.r_[np.zeros(len(reals)), np.ones(len(fakes))]
    scaler = StandardScaler().fit(x)
    mlp = MLPClassifier((hidden,), alpha=alpha, max_iter=500, random_state=seed).fit(scaler.transform(x), y)
    head = FamilyHead(x.shape[1], hidden, family)
    with torch.no_grad():
        head.mean.copy_(torch.from_numpy(scaler.mean_))
        head.scale.copy_(torch.from_numpy(np.where(scaler.scale_ > 0, scaler.scale_, 1.0)))
        head.layer.weight.copy_(torch.from_numpy(mlp.coefs_[0].T))
        head.layer.bias.copy_(torch.from_numpy(mlp.intercepts_[0]))
        head.out.weight.copy_(torch.from_numpy(mlp.coefs_[1].T))
        head.out.bias.copy_(torch.from_numpy(mlp.intercepts_[1]))
        bar = float(head.logit(torch.from_numpy(bar_reals)).max())
        head.bar.fill_(bar)
        fired = float((head.logit(torch.from_numpy(fakes)) >= bar).float().mean())
    return head.eval(), {"bar": bar, "fires_on_learned": fired, "n_reals": len(reals), "n_bar_reals": len(bar_reals),
                         "n_fakes": len(fakes)}
