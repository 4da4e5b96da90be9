"""Training batches: augmented uint8 pixels of the train split, in seeded epochs.

Every source of randomness is derived from ``(seed, epoch)`` or ``(seed, epoch,
index)``: the shuffle order of an epoch (:class:`EpochBatches`) and each image's
augmentation (:class:`TrainImages`). So an epoch gives the same batches whether
the run went straight through or resumed, and whatever the number of loader
processes. Loader processes crop and flip uint8 pixels; standardising happens
on the device (:func:`realfake.detector.preprocess.to_model_input`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader, Dataset, Sampler

from realfake.data.layout import is_fake
from realfake.data.manifest import Manifest
from realfake.detector.preprocess import Augment, Preprocessor
from realfake.detector.scoring import own_generator
from realfake.images import ImageFiles
from realfake.training import distributed
from realfake.training.synthetic import Synthetic, synthesise


def split_pixels(data: Manifest, split: str, packed_dir: Path | None) -> Sequence:
    """The decoded pixels of a split's images: from the packed store, or decoded from the files."""
    rows = data.rows(split)
    if packed_dir is None:
        return ImageFiles(data.files(rows))
    from realfake.data.packed import PackedSplit

    return PackedSplit(packed_dir, split, rows, data.fingerprint)


def targets(data: Manifest, split: str) -> np.ndarray:
    """The model's targets for a split's rows: 1.0 for fake, 0.0 for real (the model predicts p_fake)."""
    return is_fake(data.rows(split)["label"].to_numpy()).astype(np.float32)


class TrainImages(Dataset):
    """Training items by ``(epoch, index)``: the image's augmented uint8 pixels and its target.

    ``(seed, epoch, index)`` seeds the augmentation, so persistent loader workers
    augment each epoch with the right random numbers. With ``synthetic``, a share of
    the fake items is replaced by a real image of the split passed through a random
    up-sampler (:mod:`realfake.training.synthetic`), drawn from its own stream
    ``(seed, epoch, index, 1)``: the classes stay balanced. With ``pair``, an item is
    ``(pixels, perturbed pixels, target)``: the same crop, then ``pair``'s perturbations,
    drawn from ``(seed, epoch, index, 2)`` (a consistency pair, ``train.consistency``).
    """

    def __init__(self, pixels: Sequence, targets: np.ndarray, preprocessor: Preprocessor, seed: int,
                 synthetic: Synthetic | None = None, pair: Augment | None = None):
        self.pixels, self.targets, self.preprocessor, self.seed = pixels, targets, preprocessor, seed
        self.synthetic = synthetic or Synthetic(prob=0.0)
        self.pair = pair
        self.reals = np.flatnonzero(np.asarray(targets) == 0)

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitem__(self, key: tuple[int, int]) -> tuple:
        epoch, i = key
        x = self.preprocessor.train_pixels(self.image(epoch, i), np.random.default_rng([self.seed, epoch, i]))
        if self.pair is None:
            return torch.from_numpy(x), self.targets[i]
        perturbed = self.pair.apply(Image.fromarray(x), np.random.default_rng([self.seed, epoch, i, 2]))
        return torch.from_numpy(x), torch.from_numpy(np.array(perturbed)), self.targets[i]

    def image(self, epoch: int, i: int):
        """Image ``i`` as epoch ``epoch`` sees it before augmentation: its pixels, or the synthetic fake that
        replaces it."""
        img = self.pixels[i]
        if self.synthetic.prob and self.targets[i] == 1 and len(self.reals):
            rng = np.random.default_rng([self.seed, epoch, i, 1])
            if rng.random() < self.synthetic.prob:
                img = synthesise(self.pixels[int(self.reals[rng.integers(len(self.reals))])], rng,
                                 self.synthetic.jpeg_quality)
        return img


class EpochBatches(Sampler):
    """This process's training batches of one epoch, as ``(epoch, index)`` keys.

    The batches are :func:`realfake.training.distributed.shard_batches` of the epoch's
    seeded permutation (the role of DistributedSampler + set_epoch). Keys carry
    the epoch, so persistent loader workers augment with the right seed.
    """

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.global_batch, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        """Draw the next iteration's batches from ``epoch``'s permutation."""
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        """This rank's image indices of every batch of the current epoch."""
        seed = self.seed * 1_000_003 + self.epoch
        return distributed.shard_batches(self.n, self.global_batch, seed, self.rank, self.world)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.batches():
            yield [(self.epoch, i) for i in batch]

    def __len__(self) -> int:
        return math.ceil(self.n / self.global_batch)


def train_loader(ds: TrainImages, sampler: EpochBatches, workers: int, device: torch.device) -> DataLoader:
    """The training loader, built once: with workers, the processes persist across epochs."""
    return DataLoader(
        ds, batch_sampler=sampler, num_workers=workers, pin_memory=device.type == "cuda",
        persistent_workers=workers > 0, prefetch_factor=4 if workers > 0 else None, generator=own_generator(),
    )
