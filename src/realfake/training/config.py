"""The ``train`` section of params.yaml: :class:`TrainConfig`."""

from __future__ import annotations

import hashlib
import json
import math
import os
import typing
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field, fields, is_dataclass, replace
from typing import TYPE_CHECKING, Any, ClassVar

from realfake.config import build_config, is_int, is_number, require
from realfake.detector.preprocess import Augment, InputSpec
from realfake.detector.scoring import AMP
from realfake.detector.spectrum import PROBE_STEPS, RULES
from realfake.training.synthetic import Synthetic

if TYPE_CHECKING:
    import torch

LR_SCALING = ("sqrt", "linear", "none")
SCHEDULES = ("onecycle", "cosine", "constant")
KEEP = ("best", "last")
#: Where the probe's and the mix's perturbed windows are made (``train.perturb_on``).
PERTURB_ON = ("auto", "device", "loader")
#: Whose consistency pairs are held to one logit (``train.consistency.pairs``).
PAIRS = ("all", "real")


def wild() -> Augment:
    """The default perturbation mix of the validation mix (and, with more resizes, :func:`probe_mix`): blur with
    probability 0.5, JPEG, down-then-up scaling and noise with 0.3 each, over wider ranges than the robustness
    table's."""
    return Augment(hflip=False, blur_prob=0.5, blur_sigma=(0.3, 2.5), jpeg_prob=0.3, jpeg_quality=(40, 95),
                   resize_prob=0.3, resize_scale=(0.4, 0.9), noise_prob=0.3, noise_sigma=(1.0, 6.0))


def probe_mix() -> Augment:
    """The default mix the probe learns under: :func:`wild` with half of its windows down-scaled and back up
    instead of 0.3 (soft images are the probe's alone, and half-size photos were the ones it read worst)."""
    return replace(wild(), resize_prob=0.5)


@dataclass(frozen=True)
class Spectral:
    """``train.spectral``: the spectral probe fused with the network (:mod:`realfake.detector.spectrum`)."""

    RENAMED: ClassVar[dict[str, str]] = {"window": "probe_window"}  # keys of earlier params.yaml files
    enabled: bool = True
    hidden: int = 128  # ReLU units of the probe's hidden layer; 0 = a logistic regression
    passes: int = 8  # perturbed passes over the train split the probe is fitted on
    max_windows: int = 100_000  # at most this many of those windows, spread evenly over the passes (bounded memory)
    l2: float = 0.003  # the ridge penalty on the probe's weights (per mean loss, standardised features; 0.01 -> 0.003)
    steps: int = PROBE_STEPS  # Adam steps of the probe's fit, each on PROBE_BATCH windows drawn from them
    gate: bool = True  # the network's say falls to 0 on images much blurrier than its training images
    probe_window: int | None = 256  # the centred window the probe reads (crop), the network its network_window centre;
    # None: network_window
    augment: Augment = field(default_factory=probe_mix)  # what the probe learns under (the fusion: the mix)
    synthetic_prob: float | None = None  # share of the probe's fake windows that are synthesised fakes; None: the
    # network's (train.synthetic.prob)

    def __post_init__(self) -> None:
        require(self.synthetic_prob is None or (is_number(self.synthetic_prob) and 0 <= self.synthetic_prob <= 1),
                "train.spectral.synthetic_prob must be a share in [0, 1] (of the probe's fake windows made from "
                f"real ones by a random up-sampler) or null (train.synthetic.prob), got {self.synthetic_prob!r}.")
        for name in ("enabled", "gate"):
            require(isinstance(getattr(self, name), bool),
                    f"train.spectral.{name} must be true or false, got {getattr(self, name)!r}.")
        require(is_int(self.passes) and self.passes >= 1,
                f"train.spectral.passes must be an integer of at least 1, got {self.passes!r}.")
        require(is_int(self.max_windows) and self.max_windows >= 2, "train.spectral.max_windows must be an integer "
                f"of at least 2 (the windows the probe is fitted on, at most), got {self.max_windows!r}.")
        require(is_int(self.hidden) and self.hidden >= 0, "train.spectral.hidden must be a non-negative integer "
                f"(0 = a logistic regression), got {self.hidden!r}.")
        require(is_number(self.l2) and self.l2 > 0, f"train.spectral.l2 must be a number above 0, got {self.l2!r}.")
        require(is_int(self.steps) and self.steps >= 1, "train.spectral.steps must be an integer of at least 1 (the "
                f"probe's Adam steps), got {self.steps!r}.")
        require(self.probe_window is None or is_int(self.probe_window), "train.spectral.probe_window must be an "
                f"integer (the side of the window the probe reads) or null (the network's window), got "
                f"{self.probe_window!r}.")

    def synthetic(self, network: Synthetic) -> Synthetic:
        """The synthetic fakes of the probe's windows: the network's (``train.synthetic``), at ``synthetic_prob``."""
        return network if self.synthetic_prob is None else replace(network, prob=float(self.synthetic_prob))


def degrade() -> Augment:
    """The default perturbations of a consistency pair's second view: the mix's kinds, with blur only up to
    σ 1.5 (past it the gate takes the network's say away)."""
    return Augment(hflip=False, blur_prob=0.3, blur_sigma=(0.3, 1.5), jpeg_prob=0.3, jpeg_quality=(40, 95),
                   resize_prob=0.3, resize_scale=(0.5, 0.9), noise_prob=0.3, noise_sigma=(1.0, 6.0))


@dataclass(frozen=True)
class Consistency:
    """``train.consistency``: each training crop also goes through the network perturbed, and the network is
    pulled to give the perturbed copy the clean copy's logit (a squared difference, the clean side held fixed)."""

    weight: float = 0.0  # the consistency term's weight beside the cross-entropy; 0 = off (one view per image)
    augment: Augment = field(default_factory=degrade)  # the perturbations of the second view
    pairs: str = "all"  # whose pairs the term holds: all | real (a perturbed real kept real; fakes' pairs not held)

    def __post_init__(self) -> None:
        require(is_number(self.weight) and self.weight >= 0, "train.consistency.weight must be a number of at least "
                f"0 (0 = off), got {self.weight!r}.")
        require(self.pairs in PAIRS, f"train.consistency.pairs must be one of {', '.join(PAIRS)} (whose clean and "
                f"perturbed copies are held to one logit), got {self.pairs!r}.")

    @property
    def enabled(self) -> bool:
        """Whether each training image goes through the network twice, clean and perturbed."""
        return self.weight > 0


@dataclass(frozen=True)
class HeadFit:
    """How a family head (:mod:`realfake.detector.heads`) is fitted: its hidden layer, its L2 penalty, and the
    perturbed passes over the train split's reals it learns from (the validation mix's perturbations), besides
    the clean one. ``SECTION`` names the params.yaml section in errors."""

    SECTION: ClassVar[str] = "head"
    hidden: int = 128
    alpha: float = 0.1
    real_passes: int = 2
    max_false_alarm: float = 0.0  # share of the validation mix's reals it may fire on; 0: it fires above every one

    def __post_init__(self) -> None:
        for name in ("hidden", "real_passes"):
            value = getattr(self, name)
            require(is_int(value) and value >= 1, f"{self.SECTION}.{name} must be an integer >= 1, got {value!r}.")
        require(is_number(self.alpha) and self.alpha > 0,
                f"{self.SECTION}.alpha must be a number > 0, got {self.alpha!r}.")
        self._check_budget()

    def _check_budget(self) -> None:
        require(is_number(self.max_false_alarm) and 0 <= self.max_false_alarm < 1,
                f"{self.SECTION}.max_false_alarm must be a share in [0, 1), got {self.max_false_alarm!r}.")


#: What a head of ``train.synthetic_head`` may read: ``evidence``, the probe's spectrum features and the network's
#: face embedding; ``cyclic``, the window's cyclic coherence (:func:`realfake.detector.spectrum.cyclic_features`).
SYNTHETIC_READS = ("evidence", "cyclic")


@dataclass(frozen=True)
class SyntheticHead(HeadFit):
    """``train.synthetic_head``: a family head fitted after the decision on synthesised fakes (one per real of the
    train split, :class:`~realfake.training.synthetic.Synthesised`): up-sampling traces in general, so that
    generators the network never saw are caught where they leave one."""

    SECTION: ClassVar[str] = "train.synthetic_head"
    # the share of the validation mix's reals each head may fire on, by what it reads; one number: the heads' together,
    # an equal part each
    max_false_alarm: Any = field(default_factory=lambda: {"evidence": 0.001, "cyclic": 0.0})
    enabled: bool = True
    reads: tuple[str, ...] = ("evidence", "cyclic")  # a head per entry, by what it reads (SYNTHETIC_READS)
    enlarged_reals: tuple[str, ...] = ("cyclic",)  # the heads (by reads) that also learn each train real enlarged 2x
    jpeg_reals: tuple[str, ...] = ("evidence", "cyclic")  # the heads (by reads) that also learn each train real
    # re-compressed (and nothing else done to it) as a real

    def __post_init__(self) -> None:
        require(isinstance(self.enabled, bool),
                f"train.synthetic_head.enabled must be true or false, got {self.enabled!r}.")
        reads = self.reads
        require(isinstance(reads, (list, tuple)) and len(reads) >= 1 and len(set(reads)) == len(reads)
                and all(r in SYNTHETIC_READS for r in reads),
                f"train.synthetic_head.reads must be a list of different heads' inputs, each one of "
                f"{', '.join(SYNTHETIC_READS)} (evidence: the probe's spectrum features and the face embedding; "
                f"cyclic: the cyclic coherence), got {reads!r}.")
        object.__setattr__(self, "reads", tuple(reads))
        super().__post_init__()  # after reads: the budget may name them
        for key in ("enlarged_reals", "jpeg_reals"):  # the heads that also learn such photos as reals
            heads = getattr(self, key)
            require(isinstance(heads, (list, tuple)) and all(r in SYNTHETIC_READS for r in heads),
                    f"train.synthetic_head.{key} must be a list of heads by what they read (of "
                    f"{', '.join(SYNTHETIC_READS)}), got {heads!r}.")
            object.__setattr__(self, key, tuple(heads))

    def _check_budget(self) -> None:  # a number (the heads' together), or a share per head by what it reads
        budget = self.max_false_alarm
        if not isinstance(budget, dict):
            return super()._check_budget()
        require(set(self.reads) <= set(budget) <= set(SYNTHETIC_READS)
                and all(is_number(v) and 0 <= v < 1 for v in budget.values()),
                f"train.synthetic_head.max_false_alarm must be a share in [0, 1) (the heads' together), or one for "
                f"each head of train.synthetic_head.reads ({', '.join(self.reads)}) by what it reads, got {budget!r}.")
        object.__setattr__(self, "max_false_alarm", dict(budget))

    def budget(self, reads: str) -> float:
        """The share of the validation mix's reals the head of ``reads`` may fire on."""
        if isinstance(self.max_false_alarm, dict):
            return float(self.max_false_alarm[reads])
        return self.max_false_alarm / len(self.reads)


@dataclass(frozen=True)
class DecisionConfig:
    """How the decision is fitted (``train.decision`` in params.yaml)."""

    REPLACED: ClassVar[dict[str, tuple[str, str]]] = {  # keys of earlier params.yaml files whose meaning changed
        "min_auc": ("min_caught", "a level of detail is answered uncertain where the threshold catches fewer than "
                                  "this share of its fakes, instead of where their ROC-AUC is under min_auc")}
    max_false_alarm: float = 0.02  # share of the mix's reals the threshold may call fake
    min_caught: float = 0.3  # share of a level of detail's fakes caught at the threshold below which it is "uncertain"
    bins: int = 10  # detail bins of the mix the "uncertain" level is read from
    strata: int = 5  # detail bins of the mix each held to max_false_alarm (1: one threshold for every image)
    fusion: str = "either"  # how the network and the probe are joined (realfake.detector.spectrum.RULES)
    detail: bool = False  # calibrate on the image's detail as well as the logit (false: the logit alone)
    uncertain: bool = True  # answer "uncertain" below the fitted level of detail (false: always a verdict)
    passes: int = 3  # perturbed passes over the valid split, besides the clean one
    augment: Augment = field(default_factory=wild)  # the perturbations of the mix

    def __post_init__(self) -> None:
        require(is_number(self.max_false_alarm) and 0 < self.max_false_alarm < 1,
                f"train.decision.max_false_alarm must be a share in (0, 1), got {self.max_false_alarm!r}.")
        require(is_number(self.min_caught) and 0 <= self.min_caught <= 1,
                f"train.decision.min_caught must be a share in [0, 1], got {self.min_caught!r}.")
        require(self.fusion in RULES, f"train.decision.fusion is {self.fusion!r}; use either (fake when the more "
                "confident of the network and the probe says so) or sum (their logits added, weighed on the mix).")
        for name in ("bins", "strata", "passes"):
            value = getattr(self, name)
            require(isinstance(value, int) and not isinstance(value, bool) and value >= 1,
                    f"train.decision.{name} must be a positive integer, got {value!r}.")
        for name in ("detail", "uncertain"):
            require(isinstance(getattr(self, name), bool),
                    f"train.decision.{name} must be true or false, got {getattr(self, name)!r}.")


@dataclass(frozen=True)
class TrainConfig:
    """How to train: input, augmentation, optimisation, device and launch (params.yaml ``train``)."""

    RENAMED: ClassVar[dict[str, str]] = {"score_size": "network_window"}  # keys of earlier params.yaml files
    pretrained: str = "none"  # none | vggface2 | casia-webface
    image_size: int = 96
    input_policy: str = "crop"
    network_window: int | None = 160  # the centred window the network reads in scoring (crop policy); None: image_size
    # one of preprocess.REPRESENTATIONS (described there); a list: an ensemble, one model each
    representation: str | tuple[str, ...] = "npr-white"
    augment: Augment = field(default_factory=Augment)
    synthetic: Synthetic = field(default_factory=Synthetic)
    consistency: Consistency = field(default_factory=Consistency)  # clean/perturbed pairs held to one logit
    spectral: Spectral = field(default_factory=Spectral)  # the spectral probe fused with the network
    decision: DecisionConfig = field(default_factory=DecisionConfig)  # calibration, threshold, "uncertain"
    synthetic_head: SyntheticHead = field(default_factory=SyntheticHead)  # a head for up-samplers in general
    epochs: int = 4
    batch_size: int = 32  # the global batch (summed over torchrun processes)
    lr: float = 2e-3  # at lr_reference_batch; see effective_lr
    lr_scaling: str = "sqrt"  # sqrt | linear | none: how lr follows batch_size
    lr_reference_batch: int = 32
    weight_decay: float = 1e-4
    schedule: str = "onecycle"  # onecycle | cosine | constant
    dropout: float = 0.2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = AMP  # bf16 autocast on CUDA (fp16 without bf16) and on CPUs with native bf16; else float32
    workers: int | str = "auto"  # DataLoader worker processes; auto: see loader_workers
    perturb_on: str = "auto"  # where the probe's and the mix's windows are perturbed: auto | device | loader
    compile: bool = False  # torch.compile the model (pays a compile time once per run)
    early_stopping_patience: int = 0  # epochs without val AUC gain before stopping; 0 = off
    keep: str = "last"  # the epoch models/model.pt keeps: last | best (by valid ROC-AUC)
    launcher: str = "python"  # how dvc.yaml starts the stage: python, or torchrun --nproc_per_node=N ...

    def __post_init__(self) -> None:
        hints = typing.get_type_hints(type(self))
        for f in fields(self):  # a nested section given as a mapping, as in params.yaml: TrainConfig(spectral={...})
            value, kind = getattr(self, f.name), hints[f.name]
            if is_dataclass(kind) and isinstance(value, Mapping):
                object.__setattr__(self, f.name, build_config(kind, value, f"train.{f.name}"))
        reps = self.representation
        if isinstance(reps, (list, tuple)):
            require(len(reps) >= 1 and len(set(reps)) == len(reps) and all(isinstance(r, str) for r in reps),
                    f"train.representation is {list(reps)!r}; an ensemble lists distinct representations "
                    "(e.g. [npr, rgb+npr]), one model each.")
            object.__setattr__(self, "representation", reps[0] if len(reps) == 1 else tuple(reps))
        for r in self.representations:
            _ = InputSpec(image_size=self.image_size, policy=self.input_policy, representation=r,
                          network_window=self.network_window)  # validates
        window, network = self.spectral.probe_window, self.input_spec.network_window
        require(window is None or self.input_policy != "crop" or window >= network,
                f"train.spectral.probe_window is {window}; the probe reads at least the network's window "
                f"(train.network_window, {network} px), whose centre the network reads: raise it, or set it to null "
                "for that window.")
        require(self.keep in KEEP, f"train.keep is {self.keep!r}; use best (the epoch of the best valid ROC-AUC) "
                "or last (the final epoch).")
        require(self.schedule in SCHEDULES, f"train.schedule is {self.schedule!r}; use onecycle, cosine or constant.")
        require(is_int(self.epochs) and is_int(self.batch_size) and self.epochs >= 1 and self.batch_size >= 1,
                "train.epochs and train.batch_size must be at least 1.")
        require(
            self.lr_scaling in LR_SCALING and is_int(self.lr_reference_batch) and self.lr_reference_batch >= 1,
            f"train.lr_scaling is {self.lr_scaling!r} (reference batch {self.lr_reference_batch}); use "
            f"{', '.join(LR_SCALING)} and a reference batch of at least 1.",
        )
        require(self.perturb_on in PERTURB_ON, f"train.perturb_on is {self.perturb_on!r}; use auto (on the device "
                "on CUDA, in the loader on a CPU), device (batched tensor operations where the model runs) or loader "
                "(PIL, one image at a time in the loader).")
        require(self.workers == "auto" or (is_int(self.workers) and self.workers >= 0),
                f"train.workers must be auto or a non-negative integer (0 = in the stage's process), got "
                f"{self.workers!r}.")

    @classmethod
    def from_params(cls, params: dict[str, Any] | None) -> "TrainConfig":
        """The config from the ``train`` section of params.yaml."""
        return build_config(cls, params, "train")

    @property
    def effective_lr(self) -> float:
        """``lr`` scaled from ``lr_reference_batch`` to ``batch_size``.

        sqrt (the default) is the rule for Adam-type optimisers (Malladi et al.,
        NeurIPS 2022: the square-root scaling keeps the SDE of adaptive methods);
        linear is Goyal et al.'s rule for SGD. OneCycle's warm-up covers the
        first 20 % of steps either way.
        """
        ratio = self.batch_size / self.lr_reference_batch
        return self.lr * {"sqrt": math.sqrt(ratio), "linear": ratio, "none": 1.0}[self.lr_scaling]

    @property
    def representations(self) -> tuple[str, ...]:
        """One representation per model: one, or an ensemble's members'."""
        r = self.representation
        return (r,) if isinstance(r, str) else r

    @property
    def is_ensemble(self) -> bool:
        """Whether ``representation`` lists several models, trained one after the other and averaged."""
        return len(self.representations) > 1

    def members(self) -> list["TrainConfig"]:
        """One config per model of the ensemble (just this one for a single model): the same settings
        with one representation each, so a member is exactly the model a single run of it trains."""
        return [replace(self, representation=r) for r in self.representations]

    @property
    def input_spec(self) -> InputSpec:
        """How images become the network's inputs (saved with it; an ensemble's names ``rgb``, and each member
        its own representation); :attr:`model_spec` adds the probe's window."""
        rep = "rgb" if self.is_ensemble else self.representation
        return InputSpec(image_size=self.image_size, policy=self.input_policy, representation=rep,
                         network_window=self.network_window)

    @property
    def model_spec(self) -> InputSpec:
        """What the model file of this run scores with: :attr:`input_spec` and, with ``spectral``, the window the
        probe reads (``spectral.probe_window``, the network's where null; with ``resize`` the resized image)."""
        spec = self.input_spec
        if not self.spectral.enabled:
            return spec
        window = self.spectral.probe_window if self.input_policy == "crop" else None
        return replace(spec, probe_window=window or spec.network_window)

    def loader_workers(self, device: torch.device, windows: bool = False) -> int:
        """The loader processes (``workers``) of the training crops and validation, or with ``windows`` of the
        probe's and the mix's perturbed windows. ``auto``: on CUDA, every core but the one that feeds the GPU; on a
        CPU, the crops in the stage's process (loader processes would take cores from the training step) and the
        windows, each one a PIL perturbation, in one process per core torch computes on (none on one core)."""
        if self.workers != "auto":
            return int(self.workers)
        if device.type == "cuda":
            return max(1, len(os.sched_getaffinity(0)) - 1)
        import torch

        threads = torch.get_num_threads()
        return threads if windows and threads > 1 else 0

    def perturbs_on_device(self, device: torch.device) -> bool:
        """Whether the probe's and the mix's windows are perturbed on ``device`` (``perturb_on``; auto: on CUDA,
        where the tensor steps run on the GPU; on a CPU they take about PIL's time, with more memory)."""
        return self.perturb_on == "device" or (self.perturb_on == "auto" and device.type == "cuda")

    def digest(self) -> str:
        """What a checkpoint must match to be resumed: the settings that change the arithmetic.

        How the stage is launched, how many loader processes it uses, whether the step
        is compiled, the window the model file scores (validation takes the training crop) and where
        the probe's windows are perturbed (after the network has trained)
        do not, so a killed run may resume under another number of torchrun processes, or
        compiled where it was not.
        """
        settings = {k: v for k, v in asdict(self).items()
                    if k not in ("launcher", "workers", "compile", "network_window", "perturb_on")}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]
