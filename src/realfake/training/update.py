"""Teaching a trained detector a new generator from a few of its fakes (``update`` in params.yaml), without
forgetting what it knew: :func:`update_model`. The update starts from a model file (the champion's), not from
scratch, in one of two ways (``update.method``):

- **head** (the default, ``update.head``, :func:`add_head`): the parent stays as it was, bit for bit, and gains a
  head for the new family (:mod:`realfake.detector.heads`, fitted by :mod:`realfake.training.heads`): a small
  classifier of the probe's spectrum features and the network's face embedding that turns to FAKE the verdicts of
  the images it recognises, and leaves every other image's logit as the parent gave it. Nothing the parent catches
  can be lost, and the reals it adds as false alarms are bounded by its bar, read on reals it did not learn from.
  A second update adds a second head beside the first.
- **probe** (``update.probe``): the spectral probe (:mod:`realfake.detector.spectrum`) is tuned from the parent's
  weights (:func:`~realfake.detector.spectrum.tune_probe`) on windows made as the train stage makes them (the same
  perturbations, ``train.spectral.augment``): ``passes`` perturbed passes over the original train split (the
  replay) and ``new_passes`` over the new images (:class:`~realfake.data.newimages.NewImages`: what it learns
  from; the rest test it); each batch draws ``new_share`` of its windows from the new images, and the loss adds
  ``distill`` times the squared difference of the replayed windows' logits from the parent probe's (replay plus
  distillation: the simple, strong baseline of continual deepfake detection, CDDB and DFIL). The probe is shared
  by every verdict, so what it learns moves the verdicts on resized and re-compressed reals too (docs/method.md).
  The fusion and the decision stay the parent's; with ``refit`` they are fitted again on the validation mix
  (:func:`realfake.training.decide.fit_model_decision`).

Either way the network keeps the parent's weights: on the sample, tuning the network with replay and distillation
did not raise the share of a new family it catches (docs/method.md).

Nothing here knows MLflow or DVC: the update stage (:mod:`realfake.stages.update`) fetches the parent, evaluates
before and after, and registers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar

import numpy as np
import torch

from realfake.config import build_config, is_int, require
from realfake.data.manifest import Manifest
from realfake.data.newimages import NewImages
from realfake.detector.decision import Decision
from realfake.detector.heads import head_entry
from realfake.detector.modelfile import model_from_blob, save_torch
from realfake.detector.network import load_state_dict
from realfake.detector.preprocess import Augment, InputSpec, Preprocessor
from realfake.detector.scoring import resolve_device
from realfake.detector.spectrum import Fused, pixel_features, tune_probe
from realfake.errors import RealfakeError
from realfake.images import ImageFiles
from realfake.training.config import HeadFit, TrainConfig
from realfake.training.data import TrainImages, split_pixels, targets
from realfake.training.decide import fit_model_decision
from realfake.training.heads import (
    HEAD_BAR_STREAM,
    HEAD_REALS_STREAM,
    enlarged_evidence,
    fit_head,
    network_reads,
    reals_evidence,
    windows_evidence,
)
from realfake.training.phases import Phases
from realfake.training.spectral import PerturbedWindows, score_windows

#: The random-number streams of an update's windows: the replay's, and the new images' (the train stage's probe
#: starts at 1,000, its mix at 2,000; a head's reals at 4,000, :mod:`realfake.training.heads`).
REPLAY_STREAM, NEW_STREAM = 3_000, 3_500
#: What an update changes: ``head`` adds a new-family head and leaves the parent as it was; ``probe`` tunes the
#: spectral probe with replay and distillation.
METHODS = ("head", "probe")


def _count(value: Any, key: str, least: int = 1) -> None:
    require(is_int(value) and value >= least, f"{key} must be an integer >= {least}, got {value!r}.")


def _number(value: Any, key: str) -> None:
    require(isinstance(value, (int, float)) and not isinstance(value, bool) and value >= 0,
            f"{key} must be a number >= 0, got {value!r}.")


@dataclass(frozen=True)
class HeadUpdate(HeadFit):
    """``update.head``: how a new family's head is fitted (:mod:`realfake.training.heads`)."""

    SECTION: ClassVar[str] = "update.head"
    new_passes: int = 0
    enlarged_reals: bool = True  # also learn each train real enlarged 2x (a resize, nothing after it) as a real

    def __post_init__(self) -> None:
        super().__post_init__()
        _count(self.new_passes, "update.head.new_passes", least=0)
        require(isinstance(self.enlarged_reals, bool),
                f"update.head.enlarged_reals must be true or false, got {self.enlarged_reals!r}.")


@dataclass(frozen=True)
class ProbeUpdate:
    """``update.probe``: how the spectral probe is tuned (:func:`~realfake.detector.spectrum.tune_probe`)."""

    passes: int = 4
    new_passes: int = 8
    new_share: float = 0.25
    steps: int = 1000
    distill: float = 1.0
    refit: bool = False

    def __post_init__(self) -> None:
        for name in ("passes", "new_passes", "steps"):
            _count(getattr(self, name), f"update.probe.{name}")
        _number(self.distill, "update.probe.distill")
        require(isinstance(self.new_share, (int, float)) and 0 < self.new_share < 1,
                f"update.probe.new_share must be a share in (0, 1), got {self.new_share!r}.")
        require(isinstance(self.refit, bool), f"update.probe.refit must be true or false, got {self.refit!r}.")


@dataclass(frozen=True)
class UpdateConfig:
    """The ``update`` section of params.yaml."""

    #: The probe's settings, which sat at the top of the section before there was a head.
    RENAMED: ClassVar[dict[str, str]] = {k: f"probe.{k}" for k in ("passes", "new_passes", "new_share", "steps",
                                                                    "distill", "refit")}

    fakes: str = "data/heldout/bilinear"
    reals: str | None = None
    count: int = 100
    start: str = "champion"
    method: str = "head"
    head: HeadUpdate = field(default_factory=HeadUpdate)
    probe: ProbeUpdate = field(default_factory=ProbeUpdate)
    tolerance: float = 0.01
    seed: int = 0

    def __post_init__(self) -> None:
        require(isinstance(self.fakes, str) and self.fakes, "update.fakes must name a folder of the new fakes.")
        require(self.reals is None or (isinstance(self.reals, str) and self.reals),
                f"update.reals must be a folder or null, got {self.reals!r}.")
        require(self.method in METHODS, f"update.method must be one of {', '.join(METHODS)}, got {self.method!r}.")
        _count(self.count, "update.count")
        require(isinstance(self.start, (str, int)) and not isinstance(self.start, bool) and str(self.start) != "",
                f"update.start must be a registry alias (champion) or a version number, got {self.start!r}.")
        _number(self.tolerance, "update.tolerance")
        require(is_int(self.seed), f"update.seed must be an integer, got {self.seed!r}.")

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "UpdateConfig":
        """The config from the ``update`` section of params.yaml."""
        return build_config(cls, params, "update")


def read_parent(model_file: Path) -> dict[str, Any]:
    """The parent's model file as a dict; a clear error for a file an update cannot start from."""
    blob = load_state_dict(Path(model_file), what="the model file to update")
    if "spectral" not in blob:
        raise RealfakeError(f"{model_file} has no spectral probe, the part of the detector an update tunes: train "
                            "the model with train.spectral.enabled: true (the default), then update it.")
    return blob


@torch.no_grad()
def features(pixels, y: np.ndarray, spec: InputSpec, augment: Augment, passes: int, first: int,
             train_cfg: TrainConfig, phases: Phases, synthetic=None) -> tuple[torch.Tensor, torch.Tensor]:
    """The probe's features of ``passes`` perturbed passes over ``pixels`` (targets ``y``), made as the train
    stage makes the probe's windows, on its device; and their targets."""
    device = resolve_device(train_cfg.device)
    images = TrainImages(pixels, y.astype(np.float32), Preprocessor(spec), train_cfg.seed, synthetic)
    windows = PerturbedWindows(images, augment, passes, first=first, on_device=train_cfg.perturbs_on_device(device))
    workers = train_cfg.loader_workers(device, windows=True)
    x, t = score_windows(windows, pixel_features, device, 2 * train_cfg.batch_size, workers, phases,
                         ("update_windows", "update_features"))
    return torch.from_numpy(x), torch.from_numpy(t)


def update_model(parent: Path, out: Path, new: list[NewImages], data: Manifest, cfg: UpdateConfig,
                 train_cfg: TrainConfig, *, lineage: dict[str, Any], packed_dir: Path | None = None,
                 log: Callable[[str], None] = print) -> dict[str, float]:
    """Write ``out``: the model file of ``parent`` taught ``new`` by ``cfg.method`` (see the module's docstring:
    a head added, or the probe tuned and, with ``update.probe.refit``, the fusion and decision fitted again on the
    validation mix), with its ``updates`` list (the parent's, plus ``lineage``: what this update was for). The
    figures of the update (``update/...``, ``decision/...``, ``phase/...``)."""
    blob = read_parent(parent)
    model, spec, _ = model_from_blob(blob, parent)  # the file is read once
    assert isinstance(model, Fused)  # read_parent checked the spectral entry
    device = resolve_device(train_cfg.device)
    phases = Phases(device)
    if cfg.method == "head":
        return add_head(blob, model, spec, parent, out, new, data, cfg, train_cfg, lineage=lineage,
                        packed_dir=packed_dir, log=log, phases=phases)
    t0 = time.perf_counter()
    augment = train_cfg.spectral.augment
    tune = cfg.probe
    replay = features(split_pixels(data, "train", packed_dir), targets(data, "train"), spec, augment, tune.passes,
                      REPLAY_STREAM, train_cfg, phases, train_cfg.spectral.synthetic(train_cfg.synthetic))
    paths = [p for n in new for p in n.learn]
    fresh = features(ImageFiles(paths, cache=True), np.concatenate([np.full(len(n.learn), n.target) for n in new]),
                     spec, augment, tune.new_passes, NEW_STREAM, train_cfg, phases)
    with phases("update_probe"):
        probe = tune_probe(model.probe.to(device), *replay, *fresh, distill=tune.distill, new_share=tune.new_share,
                           l2=train_cfg.spectral.l2, steps=tune.steps, seed=cfg.seed)
    entry = {**blob["spectral"], "state_dict": {k: v.detach().cpu() for k, v in probe.state_dict().items()}}
    kept = {k: v for k, v in blob.items() if k not in ("spectral",) + (("decision",) if tune.refit else ())}
    save_torch({**kept, "spectral": entry, "updates": [*blob.get("updates", []), lineage]}, out)
    learned = {"learn_seconds": time.perf_counter() - t0, "n_new": len(paths), "n_new_windows": len(fresh[0]),
               "n_replay_windows": len(replay[0])}
    log(f"update: probe tuned on {len(fresh[0])} windows of {len(paths)} new images and {len(replay[0])} replayed "
        f"({learned['learn_seconds']:.0f} s)")
    figures = {}
    if tune.refit:
        figures = fit_model_decision(out, train_cfg, data, packed_dir=packed_dir, log=log, phases=phases,
                                     keep_probe=True)
    phases.report(log)
    return {**{f"update/{k}": float(v) for k, v in learned.items()}, **figures, **phases.metrics()}


def add_head(blob: dict[str, Any], model: Fused, spec: InputSpec, parent: Path, out: Path, new: list[NewImages],
             data: Manifest, cfg: UpdateConfig, train_cfg: TrainConfig, *, lineage: dict[str, Any],
             packed_dir: Path | None, log: Callable[[str], None], phases: Phases) -> dict[str, float]:
    """``update.method: head``: write ``out``, the parent's model file with one more head (the parent's heads and
    everything else as they were), fitted on ``new`` as :mod:`realfake.training.heads` says; the update's figures."""
    t0 = time.perf_counter()
    decision = Decision.from_entry(blob.get("decision"), str(parent))

    learned = reals_evidence(model, data, "train", cfg.head.real_passes, HEAD_REALS_STREAM, spec, train_cfg,
                             packed_dir, phases, "head_reals")
    if cfg.head.enlarged_reals:  # an enlarged photo is a photo: the head learns the new generator, not resizing
        learned = np.concatenate([learned, enlarged_evidence(model, data, spec, train_cfg, packed_dir, phases,
                                                             "head_enlarged")])
    bar_reals = reals_evidence(model, data, "valid", train_cfg.decision.passes, HEAD_BAR_STREAM, spec, train_cfg,
                               packed_dir, phases, "head_bar_reals")
    fakes = []
    for n in new:  # new reals join the head's reals; new fakes are what it learns to catch
        found = windows_evidence(model, ImageFiles(n.learn, cache=True), n.target, train_cfg.spectral.augment,
                                 cfg.head.new_passes, NEW_STREAM, True, spec, train_cfg, phases, "head_new")
        if n.target:
            fakes.append(found)
        else:
            learned = np.concatenate([learned, found])
    with phases("head_fit"):
        head, facts = fit_head(np.concatenate(fakes), learned, bar_reals, cfg.head.hidden, cfg.head.alpha, cfg.seed,
                               str(lineage.get("family", "")), cfg.head.max_false_alarm,
                               network_reads(model, bar_reals))
        head.set_decision(decision.threshold, decision.coef, decision.intercept)
    heads = [*blob.get("heads", []), head_entry(head, **facts)]
    save_torch({**blob, "heads": heads, "updates": [*blob.get("updates", []), lineage]}, out)
    seconds = time.perf_counter() - t0
    n_new = sum(len(n.learn) for n in new)
    log(f"update: a head for {lineage.get('family', 'the new images')} learned {facts['n_fakes']} windows of "
        f"{n_new} new images against {facts['n_reals']} of reals; it fires on "
        f"{facts['fires_on_learned']:.1%} of its own, from logit {facts['bar']:.3f} (on "
        f"{facts['fires_on_bar_reals']:.1%} of {facts['n_bar_reals']} reals it did not learn from) ({seconds:.0f} s)")
    phases.report(log)
    figures = {"learn_seconds": seconds, "n_new": n_new, "n_new_windows": facts["n_fakes"],
               "n_head_reals": facts["n_reals"], "head_fires_on_learned": facts["fires_on_learned"]}
    return {**{f"update/{k}": float(v) for k, v in figures.items()}, **phases.metrics()}
