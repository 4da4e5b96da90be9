"""Fitting a family head (:class:`~realfake.detector.heads.FamilyHead`): what ``update.method: head`` adds for a new
generator, and what the train stage adds for up-sampling in general (``train.synthetic_head``, below).

The head reads each image's evidence, the probe's spectrum features and the network's face embedding, and the
window's cyclic coherence where the model measures it (:func:`evidence`), and learns the new family's fakes against
reals the parent model passes:

- its **fakes** are the new images as they are, and in ``update.head.new_passes`` passes of the probe's
  perturbations (``train.spectral.augment``; none by default: on the sample, the perturbed copies of a new family's
  fakes look like perturbed reals, and learning them cost the clean family more than it added);
- its **reals** are the train split's, clean and in ``update.head.real_passes`` passes of the validation mix's
  perturbations (``train.decision.augment``), so it learns what a resized, blurred or re-compressed real looks like
  rather than calling them fake;
- its **bar** is read from reals it did not learn from: the valid split's, clean and in ``train.decision.passes``
  passes of the same perturbations (the validation mix's reals); the head fires just above the highest logit among
  those it could fire on (the ones the network reads: a head never speaks where the gate gives the network no say),
  so on the mix it adds no false alarm (``max_false_alarm``: above all but that share of them).

Fitted by scikit-learn's ``MLPClassifier`` (one ReLU layer, Adam, L2 ``update.head.alpha``) on standardised
evidence; the weights are copied into the head, whose logit is the classifier's log-odds.

The train stage's heads (:func:`fit_synthetic_head`, one for each entry of ``train.synthetic_head.reads``: one of
the spectrum features and the embedding, one of the cyclic coherence) are the same fit with other fakes: one
synthesised fake of each real of the train split (a random up-sampler's, :mod:`realfake.training.synthetic`), each
bar read from the validation mix's reals the decision was fitted on, above all but its share
(``train.synthetic_head.max_false_alarm``: 0.1 % for the first, none for the coherence's) of them (among those it
could fire on): the few reals that carry an enlargement's trace as strongly as a generator's would otherwise set it.
The heads named in ``enlarged_reals`` (the coherence's) also learn each train real enlarged 2x by a resize and
nothing after it as a real: an enlarged photo is not a generator's, and its coherence is only in phase. Those named in
``jpeg_reals`` (both) also learn each train real re-compressed once over the validation mix's JPEG qualities, and
nothing else done to it, as a real (:func:`only_jpeg`): a photo saved again at a lower quality loses fine detail as an
up-sampled image does, and among the mix's perturbed reals few are re-compressed alone. The network and
the probe learn the sample's generator first; these heads learn what up-sampling leaves in the face embedding, the
spectrum and the phase of the spectrum whatever the generator, so that a family the model
never saw is called fake where the decision's one threshold, held down by perturbed reals, does not reach it.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch.utils.data import Subset

from realfake.data.manifest import Manifest
from realfake.detector.decision import Decision
from realfake.detector.heads import FamilyHead
from realfake.detector.preprocess import AS_THEY_ARE, Augment, Preprocessor, to_model_input
from realfake.detector.scoring import autocast, memory_format, resolve_device
from realfake.detector.spectrum import N_FEATURES, Fused
from realfake.training.config import TrainConfig
from realfake.training.data import TrainImages, split_pixels, targets
from realfake.training.phases import Phases
from realfake.training.spectral import PerturbedWindows, perturbed_batches
from realfake.training.synthetic import Synthesised

#: The family name of the train stage's heads (``train.synthetic_head``); a head of other columns than the spectrum
#: and the embedding adds, in brackets, what it reads.
SYNTHETIC_FAMILY = "synthetic up-samplers"
SYNTHETIC_READS_NAMES = {"cyclic": "cyclic coherence"}
#: The random-number streams of a head's reals (those it learns from, and those that set an update's bar), of the
#: synthesised fakes the train stage's heads learn, and of the enlarged reals (the probe's windows start at 1,000, the
#: mix's at 2,000), and of the re-compressed reals.
HEAD_REALS_STREAM, HEAD_BAR_STREAM, SYNTHETIC_STREAM, ENLARGED_STREAM, JPEG_STREAM = 4_000, 4_500, 5_000, 5_500, 6_000


@torch.no_grad()
def evidence(model: Fused, x: torch.Tensor, network: bool = True) -> torch.Tensor:
    """(B, spectrum features + face embedding (+ cyclic coherence)) of a standardised RGB batch: what a head reads;
    without ``network``, the embedding's columns NaN and the network not run (:meth:`Fused.spectrum_evidence`)."""
    return model.evidence_parts(x)[0] if network else model.spectrum_evidence(x)


@torch.no_grad()
def network_reads(model: Fused, found: np.ndarray) -> np.ndarray:
    """Which rows of ``found`` (N, D), :func:`evidence`, are of images the network reads (the gate gives it a share):
    the only ones a head can fire on (:meth:`FamilyHead.lift`'s ``live``), as a boolean (N,)."""
    features = torch.from_numpy(np.ascontiguousarray(found[:, :N_FEATURES])).float().to(model.weights.device)
    return (model.share(features) > 0).cpu().numpy()


@torch.no_grad()
def windows_evidence(model: Fused, pixels: Sequence, target: float, augment: Augment, passes: int, first: int,
                     clean: bool, spec: Any, train_cfg: TrainConfig, phases: Phases, name: str,
                     network: bool = True) -> np.ndarray:
    """The :func:`evidence` (N, D) of ``pixels`` (all of target ``target``) in ``passes`` passes of ``augment``
    drawn from streams ``first`` on, and first as they are where ``clean``; made and scored as the train stage
    scores its validation mix (its device, precision and loader processes). Without ``network``, the face
    embedding's columns are NaN: for heads that do not read them."""
    device = resolve_device(train_cfg.device)
    images = TrainImages(pixels, np.full(len(pixels), target, dtype=np.float32), Preprocessor(spec), train_cfg.seed)
    on_device = train_cfg.perturbs_on_device(device)
    sets = [PerturbedWindows(images, augment, passes, first=first + 1, on_device=on_device)] if passes else []
    if clean:
        sets.insert(0, PerturbedWindows(images, AS_THEY_ARE, 1, first=first,
                                        on_device=on_device))
    layout, out = memory_format(device, train_cfg.amp), []
    model = model.to(device, memory_format=layout).eval()
    workers = train_cfg.loader_workers(device, windows=True)
    for windows in sets:
        for x, _ in perturbed_batches(windows, 2 * train_cfg.batch_size, workers, device, phases, f"{name}_windows"):
            with phases(f"{name}_evidence"), autocast(device, train_cfg.amp):
                out.append(evidence(model, to_model_input(x, device, layout), network).float().cpu())
    return torch.cat(out).numpy()


def split_reals(data: Manifest, split: str, packed_dir: Path | None) -> Subset:
    """The decoded pixels of ``split``'s reals."""
    return Subset(split_pixels(data, split, packed_dir), np.flatnonzero(targets(data, split) == 0).tolist())


def reals_evidence(model: Fused, data: Manifest, split: str, passes: int, stream: int, spec: Any,
                   train_cfg: TrainConfig, packed_dir: Path | None, phases: Phases, name: str) -> np.ndarray:
    """The :func:`evidence` of ``split``'s reals as they are and in ``passes`` passes of the validation mix's
    perturbations (``train.decision.augment``), drawn from streams ``stream`` on."""
    return windows_evidence(model, split_reals(data, split, packed_dir), 0.0, train_cfg.decision.augment, passes,
                            stream, True, spec, train_cfg, phases, name)


def enlarged_evidence(model: Fused, data: Manifest, spec: Any, train_cfg: TrainConfig, packed_dir: Path | None,
                      phases: Phases, name: str, network: bool = True) -> np.ndarray:
    """The :func:`evidence` of each real of the train split enlarged 2x by a resize and nothing after it
    (:func:`~realfake.training.synthetic.upsampled` without a generator), as a head learns them: as reals (without
    ``network``, no face embedding: for heads that read only the coherence)."""
    made = Synthesised(split_reals(data, "train", packed_dir), train_cfg.seed, ENLARGED_STREAM,
                       train_cfg.synthetic.jpeg_quality, generator=False)
    return windows_evidence(model, made, 0.0, AS_THEY_ARE, 0, ENLARGED_STREAM, True, spec,
                            train_cfg, phases, name, network)


def only_jpeg(augment: Augment) -> Augment:
    """The perturbations of a pass that re-compresses every image over ``augment``'s JPEG quality range, and does
    nothing else to it."""
    return replace(AS_THEY_ARE, jpeg_prob=1.0, jpeg_quality=augment.jpeg_quality)


def recompressed_evidence(model: Fused, data: Manifest, spec: Any, train_cfg: TrainConfig, packed_dir: Path | None,
                          phases: Phases, name: str) -> np.ndarray:
    """The :func:`evidence` of each real of the train split re-compressed once over the validation mix's JPEG
    qualities (:func:`only_jpeg` of ``train.decision.augment``), as a head learns them: as reals."""
    return windows_evidence(model, split_reals(data, "train", packed_dir), 0.0, only_jpeg(train_cfg.decision.augment),
                            1, JPEG_STREAM, False, spec, train_cfg, phases, name)


def fit_synthetic_head(model: Fused, decision: Decision, bar_reals: np.ndarray, data: Manifest, spec: Any,
                       train_cfg: TrainConfig, packed_dir: Path | None,
                       phases: Phases) -> list[tuple[FamilyHead, dict]]:
    """``train.synthetic_head``: a head for each entry of its ``reads``, fitted on one synthesised fake of each real of
    the train split (a random up-sampler's, :class:`~realfake.training.synthetic.Synthesised`) against those reals as
    they are and perturbed (and, for those in its ``enlarged_reals``, enlarged; in its ``jpeg_reals``, re-compressed),
    reading its columns of the evidence (:meth:`Fused.evidence_columns`), firing above all but its share of
    ``bar_reals`` (the evidence of the validation mix's reals; :meth:`~realfake.training.config.SyntheticHead.budget`),
    mapped into ``decision``; and their figures (:func:`fit_head`'s)."""
    cfg = train_cfg.synthetic_head
    reals = reals_evidence(model, data, "train", cfg.real_passes, HEAD_REALS_STREAM, spec, train_cfg, packed_dir,
                           phases, "synthetic_head_reals")
    made = Synthesised(split_reals(data, "train", packed_dir), train_cfg.seed, SYNTHETIC_STREAM,
                       train_cfg.synthetic.jpeg_quality)
    fakes = windows_evidence(model, made, 1.0, AS_THEY_ARE, 0, SYNTHETIC_STREAM, True, spec, train_cfg, phases,
                             "synthetic_head_fakes")
    enlarged = recompressed = None
    if learn_enlarged := set(cfg.enlarged_reals) & set(cfg.reads):  # an enlarged photo is a photo: they learn
        # generators, not resizes; the network runs only if a head that learns them reads its embedding
        enlarged = enlarged_evidence(model, data, spec, train_cfg, packed_dir, phases, "synthetic_head_enlarged",
                                     network="evidence" in learn_enlarged)
    if set(cfg.jpeg_reals) & set(cfg.reads):  # and a re-compressed photo is a photo
        recompressed = recompressed_evidence(model, data, spec, train_cfg, packed_dir, phases, "synthetic_head_jpeg")
    read, out = network_reads(model, bar_reals), []
    for reads in cfg.reads:
        with phases("synthetic_head_fit"):
            family = SYNTHETIC_FAMILY if reads == "evidence" else f"{SYNTHETIC_FAMILY} ({SYNTHETIC_READS_NAMES[reads]})"
            learned = [reals]
            if reads in cfg.jpeg_reals:
                learned.append(recompressed)
            if reads in cfg.enlarged_reals:
                learned.append(enlarged)
            head, facts = fit_head(fakes, np.concatenate(learned), bar_reals, cfg.hidden, cfg.alpha, train_cfg.seed,
                                   family, cfg.budget(reads), read, model.evidence_columns(reads))
            head.set_decision(decision.threshold, decision.coef, decision.intercept)
        out.append((head, facts))
    return out


def fit_head(fakes: np.ndarray, reals: np.ndarray, bar_reals: np.ndarray, hidden: int, alpha: float, seed: int,
             family: str = "", max_false_alarm: float = 0.0, bar_read: np.ndarray | None = None,
             columns: tuple[int, int] | None = None) -> tuple[FamilyHead, dict[str, float]]:
    """A :class:`FamilyHead` (``hidden`` units, L2 penalty ``alpha``) fitted on evidence of ``fakes`` against ``reals``,
    firing just above the logit of all but ``max_false_alarm`` of ``bar_reals`` (reals it did not learn from; 0: above
    every one); and its figures (the bar, the share of ``bar_reals`` and of its own fakes it fires on). ``bar_read``
    (boolean, one per bar real; :func:`network_reads`): only these can be fired on, so only these set the bar (the
    budget still a share of every bar real; where the budget covers every one of them, all rank); None: all.
    ``columns`` (start, stop): the head reads only those columns of the evidence; None: all. Not yet mapped into a
    decision (:meth:`FamilyHead.set_decision`)."""
    from sklearn.neural_network import MLPClassifier
    from sklearn.preprocessing import StandardScaler

    x = np.concatenate([reals, fakes])
    if columns is not None:
        x = x[:, columns[0]:columns[1]]
    y = np.r_[np.zeros(len(reals)), np.ones(len(fakes))]
    scaler = StandardScaler().fit(x)
    mlp = MLPClassifier((hidden,), alpha=alpha, max_iter=500, random_state=seed).fit(scaler.transform(x), y)
    head = FamilyHead(x.shape[1], hidden, family, columns)
    with torch.no_grad():
        head.mean.copy_(torch.from_numpy(scaler.mean_))
        head.scale.copy_(torch.from_numpy(np.where(scaler.scale_ > 0, scaler.scale_, 1.0)))
        head.layer.weight.copy_(torch.from_numpy(mlp.coefs_[0].T))
        head.layer.bias.copy_(torch.from_numpy(mlp.intercepts_[0]))
        head.out.weight.copy_(torch.from_numpy(mlp.coefs_[1].T))
        head.out.bias.copy_(torch.from_numpy(mlp.intercepts_[1]))
        logits = head.logit(torch.from_numpy(bar_reals))
        read = torch.ones(len(logits), dtype=torch.bool) if bar_read is None else torch.from_numpy(bar_read)
        allowed = int(max_false_alarm * len(logits))
        ranked = torch.sort(logits[read] if int(read.sum()) > allowed else logits, descending=True).values
        head.bar.copy_(torch.nextafter(ranked[allowed], torch.tensor(math.inf)))  # the first logit above: fires there
        fired = float((head.logit(torch.from_numpy(fakes)) >= head.bar).float().mean())
        bar_fired = float(((logits >= head.bar) & read).float().mean())
    return head.eval(), {"bar": float(head.bar), "fires_on_learned": fired, "fires_on_bar_reals": bar_fired,
                         "n_reals": len(reals), "n_bar_reals": len(bar_reals), "n_bar_reals_read": int(read.sum()),
                         "n_fakes": len(fakes)}
