"""Fitting the spectral probe beside the trained network (``train.spectral``), and the weights that fuse them.

After the network has trained, :func:`fit_spectral`:

1. passes over the train split ``passes`` times, each image (with the run's synthetic fakes,
   :mod:`realfake.training.synthetic`) perturbed by the ``augment`` mix (blur, JPEG, down-then-up
   scaling, noise) and fitted as scoring fits it (the centred ``probe_window``: the probe reads the spectrum
   of more pixels than the network's ``network_window``, whose centre the network reads), and fits the
   :class:`~realfake.detector.spectrum.SpectralProbe` on the windows' spectra;
2. with ``gate``, measures how sharp the training images are as they are
   (:func:`~realfake.detector.spectrum.sharpness`, in a high and a middle frequency band): in each
   band, the network gets its full say on images at least as sharp as their 5th percentile and none
   on images a standard deviation below it, where it was never trained and its logit is noise; an
   image's share is the smaller of the two;
3. gives back the :class:`~realfake.detector.spectrum.Fused` model: the weights that fuse the two
   logits are fitted after, on the validation mix, with the decision
   (:func:`realfake.training.decide.fit_model_decision`), which writes them into the model file.

It reads images and scores them; it does not touch the network's weights. Nothing here knows the
sample's generators: it works unchanged on the real dataset.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterator

import numpy as np
import torch
from PIL import Image
from torch import nn
from torch.utils.data import Dataset, Subset, default_collate

from realfake.data.manifest import Manifest
from realfake.detector.perturb import apply_draw, perturb_batch
from realfake.detector.preprocess import AS_THEY_ARE, Augment, InputSpec, Preprocessor
from realfake.detector.scoring import batches, image_detail, resolve_device
from realfake.detector.spectrum import CYCLIC, Fused, fit_probe, pixel_features
from realfake.errors import RealfakeError
from realfake.heap import trimmed
from realfake.training.config import TrainConfig
from realfake.training.data import TrainImages, split_pixels, targets
from realfake.training.phases import Phases
from realfake.training.synthetic import Synthetic

#: The random-number stream of the probe's passes (training epochs use 0, 1, ...): its own draws.
PROBE_STREAM = 1_000


class PerturbedWindows(Dataset):
    """Item ``k``: in pass ``k // n``, image ``k % n`` of a split of ``n`` (or the synthetic fake that replaces
    it, as in training), perturbed by a draw of ``augment`` and fitted by the scoring fit; with its target. Pass
    ``j`` draws from random-number stream ``first + j`` (the train stage's: :data:`PROBE_STREAM` on).

    ``on_device``: the item is the window as it is, its draw and its target, and :func:`windows_on` perturbs
    the batch where the model runs (:func:`~realfake.detector.perturb.perturb_batch`); otherwise the loader
    perturbs the image with PIL before the fit. On the sample and the Kaggle data the window is the whole
    image, so the two perturb the same pixels with the same draw."""

    def __init__(self, images: TrainImages, augment: Augment, passes: int, first: int = PROBE_STREAM,
                 on_device: bool = False):
        self.images, self.augment, self.passes, self.first = images, augment, passes, first
        self.on_device = on_device

    def __len__(self) -> int:
        return len(self.images) * self.passes

    def __getitem__(self, k: int) -> tuple:
        epoch, i = self.first + k // len(self.images), k % len(self.images)
        img, y = self.images.image(epoch, i), float(self.images.targets[i])
        draw = self.augment.draw(np.random.default_rng([self.images.seed, epoch, i, 2]))
        if self.on_device:
            return torch.from_numpy(self.images.preprocessor.pixels(img)), torch.from_numpy(draw), y
        img = apply_draw(Image.fromarray(img) if isinstance(img, np.ndarray) else img, draw)
        return torch.from_numpy(self.images.preprocessor.pixels(img)), y


def windows_on(device: torch.device, x: torch.Tensor, draws: list[torch.Tensor]) -> torch.Tensor:
    """A loader's batch of windows on ``device``: moved there, and perturbed there when the loader gave their draws
    (:class:`PerturbedWindows` ``on_device``)."""
    x = x.to(device, non_blocking=True)
    return perturb_batch(x, draws[0]) if draws else x


def perturbed_batches(windows, batch_size: int, workers: int, device: torch.device, phases: Phases,
                      name: str) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 window batch on ``device``, targets) of ``windows``: made by the loader and, with draws, perturbed on
    the device, both timed as phase ``name``; the heap trimmed every few batches (:func:`realfake.heap.trimmed`)."""
    for x, *draws, y in phases.timed(trimmed(batches(windows, batch_size, workers, device)), name):
        with phases(name):
            x = windows_on(device, x, draws)
        yield x, y


class InLoader:
    """A loader's collate that also applies ``fn``: the batch's windows stacked and their ``fn`` computed in the
    loader process, which then hands over ``fn``'s numbers instead of the windows."""

    def __init__(self, fn: Callable[[torch.Tensor], torch.Tensor]):
        self.fn = fn

    @torch.no_grad()
    def __call__(self, items: list) -> tuple[torch.Tensor, torch.Tensor]:
        """(``fn`` of the stacked windows, in float32; their targets)."""
        x, y = default_collate(items)
        return self.fn(x).float(), y


def made_in_loader(windows: Dataset) -> bool:
    """Whether the loader makes ``windows`` (a :class:`PerturbedWindows` or a subset of one) whole, perturbation
    included, rather than leaving their perturbation to the device."""
    return not getattr(windows.dataset if isinstance(windows, Subset) else windows, "on_device", False)


@torch.no_grad()
def score_windows(windows: PerturbedWindows, fn: Callable[[torch.Tensor], torch.Tensor], device: torch.device,
                  batch_size: int, workers: int, phases: Phases | None = None,
                  names: tuple[str, str] = ("probe_windows", "probe_features")) -> tuple[np.ndarray, np.ndarray]:
    """(fn of every window's uint8 pixel batch (B, H, W, 3) on ``device``, stacked; the targets); ``phases`` times
    making the windows (in the loader and on the device) and ``fn`` under ``names``.

    On a CPU with loader processes that make the windows whole, each process computes ``fn`` of its own batches
    too (:class:`InLoader`: the same numbers), so the windows never cross between processes and the stage's process
    only collects; the time then shows under ``names[0]`` alone."""
    phases = phases if phases is not None else Phases(device)

    def computed_here() -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        for x, y in perturbed_batches(windows, batch_size, workers, device, phases, names[0]):
            with phases(names[1]):
                out = fn(x).float().cpu()
            yield out, y

    in_loader = device.type == "cpu" and workers > 0 and made_in_loader(windows)
    pairs = (phases.timed(trimmed(batches(windows, batch_size, workers, device, collate=InLoader(fn))), names[0])
             if in_loader else computed_here())
    outs, ys = map(list, zip(*pairs))
    return torch.cat(outs).numpy(), torch.cat(ys).numpy()


def fit_spectral(network: nn.Module, train_cfg: TrainConfig, data: Manifest, *, packed_dir: Path | None = None,
                 log: Callable[[str], None] = print, phases: Phases | None = None,
                 source: str = "the model") -> tuple[Fused, InputSpec, dict[str, float]]:
    """The probe and the gate (``train_cfg.spectral``) for ``network`` (the train stage's, as a model file loads
    it; ``source`` names that file in errors), fitted with the run's synthetic fakes, seed, device and loader
    processes: the :class:`Fused` model (its fusion weights still 1, 1 and bias 0:
    :func:`realfake.training.decide.fit_model_decision` fits them on the validation mix, with the decision), the
    input spec it takes, and the fit's facts. Nothing is read or written."""
    cfg, seed = train_cfg.spectral, train_cfg.seed
    batch_size = 2 * train_cfg.batch_size  # as validation scores
    if isinstance(network, Fused):
        raise RealfakeError(f"{source} already has a spectral probe; the probe is fitted once, on the network "
                            "the train stage wrote (to tune a fitted one, run realfake update).")
    dev = resolve_device(train_cfg.device)
    fused_spec = train_cfg.model_spec  # the probe reads its probe_window, the network its network_window centre
    pre = Preprocessor(fused_spec)
    train_pixels, train_targets = split_pixels(data, "train", packed_dir), targets(data, "train")

    on_device, workers = train_cfg.perturbs_on_device(dev), train_cfg.loader_workers(dev, windows=True)

    def windows(augment: Augment, passes: int, synth: Synthetic | None = None) -> PerturbedWindows:
        return PerturbedWindows(TrainImages(train_pixels, train_targets, pre, seed, synth), augment, passes,
                                on_device=on_device)

    phases = phases if phases is not None else Phases(dev)
    train_windows = windows(cfg.augment, cfg.passes, cfg.synthetic(train_cfg.synthetic))
    if len(train_windows) > cfg.max_windows:  # evenly spread over the passes and the images
        train_windows = Subset(train_windows, np.linspace(0, len(train_windows) - 1, cfg.max_windows).astype(int))
    feats, y = score_windows(train_windows, pixel_features, dev, batch_size, workers, phases)
    with phases("probe_fit"):
        probe = fit_probe(torch.from_numpy(feats), torch.from_numpy(y), cfg.l2, cfg.hidden, seed,
                          steps=cfg.steps).to(dev)
    gate = None
    if cfg.gate:  # the sharpness of the training images as they are: the network's full say from its 5th percentile
        sharp, _ = score_windows(windows(AS_THEY_ARE, 1),
                                 image_detail, dev, batch_size, workers, phases,
                                 ("gate", "gate"))
        full = np.quantile(sharp, 0.05, axis=0)
        gate = torch.from_numpy(np.stack([full - sharp.std(0), full], 1)).float()  # a row (none, full) per measure
    fused = Fused(network.to(dev), probe, torch.ones(2), torch.zeros(1), gate, fused_spec.network_window,
                  cyclic=CYCLIC if train_cfg.synthetic_head.enabled and "cyclic" in train_cfg.synthetic_head.reads
                  else None)
    where = "on the device" if on_device else "in the loader"
    log(f"train: spectral probe on {len(train_windows)} perturbed windows (made {where}), {cfg.steps} steps")
    return fused.to(dev).eval(), fused_spec, {"n_train": len(train_windows), "steps": cfg.steps}
