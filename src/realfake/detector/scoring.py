"""Scoring: images in, logits or p_fake out, in batches, on the chosen device.

The one batched scoring loop (:func:`score_batches`: logits, and each image's detail) serves
validation during training, evaluation, robustness, predict and the served model; every caller
hands it uint8 pixel batches made by the shared :class:`Preprocessor`. :class:`Detector` bundles
a trained model with its preprocessing and its decision (calibrated p_fake, threshold,
"uncertain"), for predict, the page and serving.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Sequence
from functools import cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from realfake.detector.decision import Decision, Verdicts
from realfake.detector.preprocess import Preprocessor, to_model_input
from realfake.detector.spectrum import pixel_features, sharpness
from realfake.errors import RealfakeError

#: Score (and train) in bf16 where the device computes it natively (CUDA; AMX or AVX-512 BF16 CPUs), float32
#: elsewhere: the one default of train.amp, evaluate.amp, robustness.amp, predict and the served model, so a
#: served verdict is the one the reported figures describe.
AMP = True


def resolve_device(name: str) -> torch.device:
    """``auto`` (CUDA when present, else CPU), ``cpu``, ``cuda`` or ``cuda:N``; CUDA must exist if named."""
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RealfakeError(f"device is {name!r} but no CUDA device is available; use device=auto or cpu.")
    return torch.device(name)


@cache
def cpu_has_bf16() -> bool:
    """Whether this CPU does bf16 arithmetic natively (AMX tiles or AVX-512 BF16), asked once per
    process (every training step's autocast consults it). Elsewhere bf16 autocast is emulated,
    slower than float32, and is not used."""
    cpu = torch.cpu
    return any(getattr(cpu, name, lambda: False)() for name in ("_is_amx_tile_supported", "_is_avx512_bf16_supported"))


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype when ``amp``: bf16 on CUDA (fp16 where the GPU has no bf16) and on CPUs with
    native bf16 (:func:`cpu_has_bf16`); None (float32) otherwise."""
    if not amp:
        return None
    if device.type == "cuda":
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return torch.bfloat16 if device.type == "cpu" and cpu_has_bf16() else None


def autocast(device: torch.device, amp: bool):
    """Mixed precision when ``amp`` (see :func:`amp_dtype`); full precision otherwise."""
    dtype = amp_dtype(device, amp)
    return torch.autocast(device.type, dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)


def memory_format(device: torch.device, amp: bool) -> torch.memory_format:
    """channels_last where the convolutions are fastest in it: on CUDA, and on a CPU in bf16 (oneDNN's
    bf16 kernels are NHWC; measured 1.25x over NCHW bf16 per training step on this 2-core AMX CPU)."""
    return torch.channels_last if device.type == "cuda" or amp_dtype(device, amp) else torch.contiguous_format


class ScoringImages(Dataset):
    """uint8 model pixels of ``images[i]`` (PIL images or decoded arrays), after an optional
    ``transform(image, i)`` (a robustness perturbation), by the evaluation fit."""

    def __init__(self, images: Sequence, preprocessor: Preprocessor,
                 transform: Callable[[Any, int], Any] | None = None):
        self.images, self.preprocessor, self.transform = images, preprocessor, transform

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, i: int) -> torch.Tensor:
        img = self.images[i]
        if self.transform is not None:
            img = self.transform(img, i)
        return torch.from_numpy(self.preprocessor.pixels(img))


def batches(ds: Dataset, batch_size: int, workers: int, device: torch.device, persistent: bool = False,
            collate: Callable[[list], Any] | None = None) -> DataLoader:
    """In-order batches of ``ds`` for scoring, pinned for CUDA; ``persistent`` keeps the loader
    processes for the next pass (validation every epoch); ``collate`` makes a batch of the items (in the loader
    processes where there are some; default: stacked)."""
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=persistent and workers > 0, generator=own_generator(), collate_fn=collate)


def own_generator() -> torch.Generator:
    """A loader's own random-number generator. Each iteration of a loader draws a seed for its processes, from
    torch's global generator unless it has its own; a persistent loader draws once, an in-process one every
    pass, so with the global one the loader processes' count would shift the dropout masks that follow (and
    the model). The items draw from their own seeds, not from this one."""
    return torch.Generator()


class RememberedLogits(nn.Module):
    """``network`` (a :class:`~realfake.detector.network.Network`), its face embeddings and logits
    (:meth:`~realfake.detector.network.Network.embed`, one pass) remembered by the bytes of its input batch in
    ``store`` (a dict the caller keeps): models that hold the same network weights (the versions of an update's
    lineage, which leave the network as it was) share one store, and the second one scoring the same images reads
    the network's outputs instead of running it, whether it reads the logit alone or the embedding too (a head).
    Keyed by content, so a different image, perturbation or batch never reads another's."""

    def __init__(self, network: nn.Module, store: dict[bytes, torch.Tensor]):
        super().__init__()
        self.network, self.store = network, store

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """The network's logits (B, 1) of ``x``: remembered, or computed and remembered."""
        return self.embed(x)[:, -1:]

    def embed(self, x: torch.Tensor) -> torch.Tensor:
        """The network's face embeddings and logits (B, E + 1) of ``x``: remembered, or computed and remembered."""
        key = input_key(x)
        if key not in self.store:
            self.store[key] = self.network.embed(x)
        return self.store[key].to(x.device)


def input_key(x: torch.Tensor) -> bytes:
    """A digest of ``x``'s shape, dtype and every byte of its values: the key of a remembered logit. SHA-256 (which
    CPUs compute in hardware) of the tensor's own memory, without copying it to a bytes object: about half the time of
    BLAKE2b over a float32 copy, which took a quarter of an update's scoring."""
    h = hashlib.sha256(f"{tuple(x.shape)} {x.dtype}".encode())
    h.update(x.detach().contiguous().cpu().view(-1).view(torch.uint8).numpy())
    return h.digest()[:16]


#: The format of a file of remembered network logits (:func:`save_network_logits`): its name, then its version.
LOGITS_NAME = "realfake-network-logits"
LOGITS_FORMAT = f"{LOGITS_NAME}/3"  # /1 keyed the inputs by BLAKE2b of their float32 copy; /2 kept the logit alone


def scoring_context(device: torch.device, amp: bool) -> str:
    """What besides the weights and the input decides a network's logits: the device's kind and the precision.
    Logits remembered in one context are not read in another (bf16 on a CPU and on CUDA round differently)."""
    return f"{device.type}/{amp_dtype(device, amp) or 'float32'}"


def save_network_logits(stores: dict[str, dict[bytes, torch.Tensor]], path: Path, device: torch.device,
                        amp: bool) -> int:
    """Write the network logits remembered while scoring (``stores``: :class:`RememberedLogits`' stores by
    :func:`weights_digest`) to ``path``, for a later process that scores the same images with the same network (an
    update's lineage, after the robustness stage); the number of batches written."""
    from realfake.detector.modelfile import save_torch

    tensors = {digest: {key.hex(): t.detach().cpu() for key, t in store.items()}
               for digest, store in stores.items()}
    save_torch({"format": LOGITS_FORMAT, "context": scoring_context(device, amp), "stores": tensors}, path)
    return sum(len(store) for store in stores.values())


def load_network_logits(path: Path, device: torch.device, amp: bool) -> dict[str, dict[bytes, torch.Tensor]]:
    """The stores :func:`save_network_logits` wrote to ``path``, ready for :class:`RememberedLogits`; empty where
    there is no such file, or it was written by another version of this format or in another
    :func:`scoring_context` (the logits are then computed). A
    remembered logit is only read for the same weights and the same input bytes, so a file from another model or
    data is harmless."""
    from realfake.detector.network import load_state_dict

    if not Path(path).is_file():
        return {}
    unreadable = RealfakeError(f"{path} is not a file of remembered network logits ({LOGITS_FORMAT}); delete it, "
                               "and the robustness stage (dvc repro) writes it again")
    try:  # on the CPU: RememberedLogits moves a logit to the device that reads it
        saved = load_state_dict(path, what="remembered network logits")
    except RealfakeError as e:
        raise unreadable from e
    if not str(saved.get("format", "")).startswith(f"{LOGITS_NAME}/"):
        raise unreadable
    if saved["format"] != LOGITS_FORMAT or saved.get("context") != scoring_context(device, amp):
        return {}  # keyed another way (an older version), or computed on another device or precision
    return {digest: {bytes.fromhex(key): t for key, t in store.items()} for digest, store in saved["stores"].items()}


def weights_digest(module: nn.Module) -> str:
    """A digest of ``module``'s weights and buffers (names, shapes, values): equal for two copies of one network."""
    h = hashlib.blake2b(digest_size=16)
    for name, t in module.state_dict().items():
        h.update(name.encode())
        h.update(str(tuple(t.shape)).encode())
        h.update(t.detach().float().contiguous().cpu().numpy().tobytes())
    return h.hexdigest()


@torch.no_grad()
def predict_logits(model: nn.Module, pixel_batches, device: torch.device, amp: bool) -> np.ndarray:
    """Logits for every uint8 pixel batch, gathered on the device and copied to the host once; in bf16
    where ``amp`` (:func:`autocast`), the inputs laid out as :func:`memory_format` says."""
    return score_batches(model, pixel_batches, device, amp, detail=False)[0]


def image_detail(x: torch.Tensor) -> torch.Tensor:
    """(B, 2) how much fine detail each uint8 pixel batch image (B, H, W, 3) kept: the
    :func:`~realfake.detector.spectrum.sharpness` of its spectrum (high band, middle band), in float32."""
    return sharpness(pixel_features(x))


@torch.no_grad()
def score_batches(model: nn.Module, pixel_batches, device: torch.device, amp: bool,
                  detail: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(logits (N,), detail (N, 2)) of every uint8 pixel batch: the model's logit (see :func:`predict_logits`)
    and the :func:`image_detail` of the pixels it read (empty (N, 0) where ``detail`` is false)."""
    return score_batches_many([model], pixel_batches, device, amp, detail)[0]


@torch.no_grad()
def score_batches_many(models: Sequence[nn.Module], pixel_batches, device: torch.device, amp: bool,
                       detail: bool = True) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`score_batches` of each of ``models`` on the same pixel batches, made, moved, standardised and measured
    once (the models take the same input): one (logits, detail) per model, the detail shared."""
    for model in models:
        model.eval()
    logits: list[list[torch.Tensor]] = [[] for _ in models]
    details = []
    layout = memory_format(device, amp)
    for x in pixel_batches:
        x = x.to(device, non_blocking=True)
        if detail:
            details.append(image_detail(x))
        with autocast(device, amp):
            inputs = to_model_input(x, device, layout)
            for out, model in zip(logits, models):  # each reads the input, none writes it
                out.append(model(inputs).float().squeeze(1))
    if not logits[0]:  # no batches
        return [(np.zeros(0), np.zeros((0, 2 if detail else 0))) for _ in models]
    found = torch.cat(details).cpu().numpy() if detail else np.zeros((sum(len(t) for t in logits[0]), 0))
    return [(torch.cat(out).cpu().numpy(), found) for out in logits]


def score(model: nn.Module, images: Sequence, preprocessor: Preprocessor, device: torch.device, batch_size: int,
          workers: int = 0, transform: Callable[[Any, int], Any] | None = None,
          amp: bool = AMP) -> tuple[np.ndarray, np.ndarray]:
    """(logits, detail) of every image (PIL images or decoded arrays, optionally transformed), in order, for a
    :class:`~realfake.detector.decision.Decision`; ``amp``: in mixed precision where the device has it."""
    return score_many([model], images, preprocessor, device, batch_size, workers, transform, amp)[0]


def score_many(models: Sequence[nn.Module], images: Sequence, preprocessor: Preprocessor, device: torch.device,
               batch_size: int, workers: int = 0, transform: Callable[[Any, int], Any] | None = None,
               amp: bool = AMP) -> list[tuple[np.ndarray, np.ndarray]]:
    """:func:`score` of each of ``models``, which take ``preprocessor``'s input, with every image read, transformed
    and measured once."""
    ds = ScoringImages(images, preprocessor, transform)
    models = [model.to(device, memory_format=memory_format(device, amp)) for model in models]
    return score_batches_many(models, batches(ds, batch_size, workers, device), device, amp)


def binary_metrics(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    """Loss (BCE with logits), accuracy at logit 0, and ROC-AUC (NaN with one class) of logits against 0/1 targets."""
    from sklearn.metrics import roc_auc_score

    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    loss = float(np.mean(np.logaddexp(0, logits) - targets * logits))  # BCE with logits, stable
    acc = float(np.mean((logits > 0) == (targets > 0.5)))
    auc = float(roc_auc_score(targets, logits)) if len(np.unique(targets)) == 2 else float("nan")
    return {"loss": loss, "acc": acc, "auc": min(auc, 1.0)}  # its trapezoids can sum to 1.0000000000000002


class Detector:
    """A trained model with its preprocessing and its decision (:class:`~realfake.detector.decision.Decision`:
    calibration, threshold, "uncertain"): p_fake and a verdict per image.

    ``threshold`` replaces the model's own where given. ``amp``: score in bf16 where the device does it
    natively, as the evaluate and robustness stages do by default, so a served verdict is the one the
    reported figures describe.
    """

    def __init__(self, model_path: Path, threshold: float | None = None, device: str = "cpu", batch_size: int = 32,
                 amp: bool = AMP):
        from realfake.detector.modelfile import load_model_file

        model, spec, self.info = load_model_file(Path(model_path))
        self.decision = Decision.from_entry(self.info.get("decision"), str(model_path)).with_threshold(threshold)
        self.preprocessor = Preprocessor(spec)
        self.device = torch.device(device)
        self.model = model.to(self.device)
        self.batch_size = batch_size
        self.amp = amp

    @property
    def spec(self):
        """The :class:`InputSpec` the model was trained with."""
        return self.preprocessor.spec

    @property
    def trained_on(self) -> str:
        """The short name of the data the model learned from (:func:`~realfake.detector.modelfile.trained_on_label`)."""
        from realfake.detector.modelfile import trained_on_label

        return trained_on_label(self.info.get("trained_on"))

    @property
    def trained_on_note(self) -> str:
        """A sentence on the data the model was trained on (:func:`~realfake.detector.modelfile.trained_on_note`)."""
        from realfake.detector.modelfile import trained_on_note

        return trained_on_note(self.info.get("trained_on"))

    @property
    def threshold(self) -> float:
        """The decision threshold on calibrated p_fake."""
        return self.decision.threshold

    def verdicts(self, images: Sequence) -> Verdicts:
        """The :class:`~realfake.detector.decision.Verdicts` of each image (a PIL image, or decoded HxWx3
        uint8 pixels), fitted to the model's input."""
        return self.decision.verdicts(*score(self.model, images, self.preprocessor, self.device, self.batch_size,
                                             amp=self.amp))

    def p_fake(self, images: Sequence) -> np.ndarray:
        """Calibrated p_fake of each image."""
        return self.verdicts(images).p_fake
