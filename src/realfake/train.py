"""Training: ``train(cfg, ...) -> metrics``, a plain function the stage, the CLI and the tests call.

Determinism and resume: every source of randomness is derived from
``(seed, epoch)`` or ``(seed, epoch, index)`` -- the shuffle order, each
image's augmentation, dropout -- so an epoch gives the same result whether the
run went straight through or resumed from the checkpoint of the epoch before.
A checkpoint is written atomically after every epoch; a killed run resumes
from the last completed epoch when the configuration and data are unchanged.

The input pipeline: loader processes read decoded pixels (from the packed
store, :mod:`realfake.packed`, or by decoding the JPEG files), crop and flip
them as uint8, and the training process sends uint8 batches to the device,
where :func:`realfake.preprocess.standardise` makes the model input. The hot
loop never waits for the device: metrics stay there until the epoch ends.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator

import numpy as np
import pandas as pd
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset, Sampler

from realfake.errors import RealfakeError
from realfake.layout import image_root
from realfake.manifest import split_rows  # noqa: F401 - part of this module's API
from realfake.model import build_model, load_state_dict
from realfake.params import build_config
from realfake.preprocess import Augment, InputSpec, TrainTransform, fit_array, load_rgb, standardise

MODEL_FORMAT = "realfake-detector/1"
CHECKPOINT_FORMAT = "realfake-checkpoint/1"
LR_SCALING = ("sqrt", "linear", "none")
HISTORY_COLUMNS = (
    "epoch", "train_loss", "train_acc", "train_auc", "val_loss", "val_acc", "val_auc", "lr", "images_per_s", "seconds",
)


@dataclass(frozen=True)
class TrainConfig:
    """The ``train`` section of params.yaml."""

    pretrained: str = "none"
    image_size: int = 128
    input_policy: str = "crop"
    augment: dict[str, Any] = field(default_factory=dict)
    epochs: int = 3
    batch_size: int = 32
    lr: float = 1e-3  # at lr_reference_batch; see effective_lr
    lr_scaling: str = "sqrt"  # sqrt | linear | none: how lr follows batch_size
    lr_reference_batch: int = 32
    weight_decay: float = 1e-4
    schedule: str = "onecycle"  # onecycle | cosine | constant
    dropout: float = 0.2
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision (bf16/fp16) on CUDA; ignored on CPU
    workers: int = 0  # DataLoader worker processes
    compile: bool = False  # torch.compile the training step (pays a compile time once per run)
    early_stopping_patience: int = 0  # epochs without val AUC gain before stopping; 0 = off
    launcher: str = "python"  # how dvc.yaml starts the stage: python, or torchrun --nproc_per_node=N ...

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "TrainConfig":
        cfg = build_config(cls, params, "train")
        cfg.input_spec  # validates size and policy
        Augment.from_params(cfg.augment)
        if cfg.schedule not in ("onecycle", "cosine", "constant"):
            raise RealfakeError(f"train.schedule is {cfg.schedule!r}; use onecycle, cosine or constant.")
        if cfg.epochs < 1 or cfg.batch_size < 1:
            raise RealfakeError("train.epochs and train.batch_size must be at least 1.")
        if cfg.lr_scaling not in LR_SCALING or cfg.lr_reference_batch < 1:
            raise RealfakeError(
                f"train.lr_scaling is {cfg.lr_scaling!r} (reference batch {cfg.lr_reference_batch}); use "
                f"{', '.join(LR_SCALING)} and a reference batch of at least 1."
            )
        return cfg

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
    def input_spec(self) -> InputSpec:
        return InputSpec(image_size=self.image_size, policy=self.input_policy)

    def digest(self) -> str:
        """What a checkpoint must match to be resumed: the settings that change the arithmetic.

        How the stage is launched, how many loader processes it uses and whether the step
        is compiled do not, so a killed run may resume under another number of torchrun
        processes, or compiled where it was not.
        """
        settings = {k: v for k, v in asdict(self).items() if k not in ("launcher", "workers", "compile")}
        return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise RealfakeError(f"train.device is {name!r} but no CUDA device is available; use device=auto or cpu.")
    return torch.device(name)


# --------------------------------------------------------------------------- data


def target_of(label: np.ndarray) -> np.ndarray:
    """The model predicts p_fake: target 1 for fake (Kaggle label 0), 0 for real (label 1)."""
    return (1 - np.asarray(label)).astype(np.float32)


class ImageFiles:
    """Decoded pixels of image files, by row: what the packed store holds, decoded on every access."""

    def __init__(self, paths: list[str]):
        self.paths = paths

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int) -> np.ndarray:
        return np.asarray(load_rgb(self.paths[i]))


class FaceDataset(Dataset):
    """Rows of the validated manifest as (HxWx3 uint8 input, target).

    The pixels come from the image files, or from ``packed`` (a
    :class:`realfake.packed.PackedSplit` of the same rows). With ``augment`` an
    item is keyed by ``(epoch, i)`` and ``(seed, epoch, i)`` seeds its
    augmentation; without, it is the evaluation crop. :func:`to_model_input`
    standardises a batch on the device.
    """

    def __init__(self, rows: pd.DataFrame, raw_dir: Path, spec: InputSpec, augment: Augment | None = None,
                 seed: int = 0, packed=None):
        self.paths = [str(image_root(raw_dir) / p) for p in rows["path"]]
        self.pixels = packed if packed is not None else ImageFiles(self.paths)
        self.targets = target_of(rows["label"].to_numpy())
        self.spec = spec
        self.train_tf = TrainTransform(spec, augment) if augment is not None else None
        self.seed = seed

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, key: int | tuple[int, int]) -> tuple[torch.Tensor, float]:
        epoch, i = key if isinstance(key, tuple) else (0, key)
        arr = self.pixels[i]
        if self.train_tf is None:
            x = fit_array(arr, self.spec)
        else:
            x = self.train_tf.pixels(arr, np.random.default_rng([self.seed, epoch, i]))
        return torch.from_numpy(x), self.targets[i]


class EpochBatches(Sampler):
    """This process's training batches of one epoch, as ``(epoch, index)`` keys.

    The batches are :func:`realfake.distributed.shard_batches` of the epoch's
    seeded permutation (the role of DistributedSampler + set_epoch). Keys carry
    the epoch, so persistent loader workers augment with the right seed.
    """

    def __init__(self, n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1):
        self.n, self.global_batch, self.seed, self.rank, self.world = n, global_batch, seed, rank, world
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def batches(self) -> list[list[int]]:
        from realfake import distributed

        return distributed.shard_batches(self.n, self.global_batch, self.seed * 1_000_003 + self.epoch, self.rank, self.world)

    def __iter__(self) -> Iterator[list[tuple[int, int]]]:
        for batch in self.batches():
            yield [(self.epoch, i) for i in batch]

    def __len__(self) -> int:
        return math.ceil(self.n / self.global_batch)


def to_model_input(x: torch.Tensor, device: torch.device) -> torch.Tensor:
    """A loader batch on ``device`` as the model takes it: uint8 pixels are copied
    (asynchronously from pinned memory) and standardised there; channels_last on CUDA."""
    x = x.to(device, non_blocking=True)
    if x.dtype == torch.uint8:
        x = standardise(x)
    fmt = torch.channels_last if device.type == "cuda" else torch.contiguous_format
    return x.contiguous(memory_format=fmt)


def loader(ds: FaceDataset, batch_size: int, workers: int, device: torch.device) -> DataLoader:
    """In-order batches for scoring (validation, evaluation); training batches come from
    :class:`EpochBatches`."""
    return DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=workers, pin_memory=device.type == "cuda",
                      persistent_workers=workers > 0)


# --------------------------------------------------------------------------- metrics


def binary_metrics(logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
    from sklearn.metrics import roc_auc_score

    logits = np.asarray(logits, dtype=np.float64)
    targets = np.asarray(targets)
    loss = float(np.mean(np.logaddexp(0, logits) - targets * logits))  # BCE with logits, stable
    acc = float(np.mean((logits > 0) == (targets > 0.5)))
    auc = float(roc_auc_score(targets, logits)) if len(np.unique(targets)) == 2 else float("nan")
    return {"loss": loss, "acc": acc, "auc": auc}


@torch.no_grad()
def predict_logits(model: nn.Module, dl: DataLoader, device: torch.device, amp: bool = False) -> np.ndarray:
    """Logits for every batch of ``dl``, gathered on the device and copied to the host once."""
    model.eval()
    outs = []
    for x, _ in dl:
        x = to_model_input(x, device)
        with autocast(device, amp):
            outs.append(model(x).float().squeeze(1))
    return torch.cat(outs).cpu().numpy() if outs else np.zeros(0)


def amp_dtype(device: torch.device, amp: bool) -> torch.dtype | None:
    """The autocast dtype: bf16 on CUDA, fp16 where the GPU has no bf16; None (fp32) on the CPU."""
    if device.type == "cuda" and amp:
        return torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    return None


def autocast(device: torch.device, amp: bool):
    dtype = amp_dtype(device, amp)
    return torch.autocast("cuda", dtype=dtype) if dtype else torch.autocast("cpu", enabled=False)


def grad_scaler(device: torch.device, amp: bool) -> torch.amp.GradScaler:
    """Loss scaling where autocast runs in fp16 (its small gradients underflow); a no-op otherwise."""
    return torch.amp.GradScaler("cuda", enabled=amp_dtype(device, amp) == torch.float16)


# --------------------------------------------------------------------------- checkpoints


def save_atomic(obj: Any, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        torch.save(obj, tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def load_checkpoint(path: Path) -> dict[str, Any]:
    ckpt = load_state_dict(path, what="a training checkpoint")
    if ckpt.get("format") != CHECKPOINT_FORMAT:
        raise RealfakeError(
            f"{path} is not a realfake training checkpoint (format {ckpt.get('format')!r}). Delete it to start afresh."
        )
    return ckpt


def save_model_file(path: Path, state_dict: dict[str, torch.Tensor], spec: InputSpec, extra: dict[str, Any]) -> None:
    save_atomic({"format": MODEL_FORMAT, "input": spec.to_dict(), "state_dict": state_dict, **extra}, path)


def load_model_file(path: Path) -> tuple[nn.Module, InputSpec, dict[str, Any]]:
    """(model in eval mode, its input spec, the file's other fields) from a model file."""
    from realfake.model import load_model

    blob = load_state_dict(path, what="a realfake model file")
    if blob.get("format") != MODEL_FORMAT or "state_dict" not in blob:
        raise RealfakeError(
            f"{path} is not a realfake model file (format {blob.get('format')!r}); expected one written by "
            "the train stage (models/model.pt) or logged with the registered model."
        )
    model = load_model(blob["state_dict"], source=str(path))
    extra = {k: v for k, v in blob.items() if k not in ("format", "input", "state_dict")}
    return model, InputSpec.from_dict(blob["input"]), extra


# --------------------------------------------------------------------------- the loop


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; on CUDA its fused kernel (one launch for all parameters instead of a loop of
    elementwise kernels: the unfused step was 12 % of an H100 training step's device time)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.effective_lr, total_steps=total, pct_start=0.2)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


@dataclass
class TrainResult:
    metrics: dict[str, float]
    history: pd.DataFrame
    run_id: str | None
    resumed_from_epoch: int


def train(
    cfg: TrainConfig,
    manifest_path: Path,
    raw_dir: Path,
    model_path: Path,
    checkpoint_dir: Path,
    history_path: Path | None = None,
    mlflow_run: Callable[[int | None], Any] | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    packed_dir: Path | None = None,
) -> TrainResult:
    """Train the detector on the manifest's train split, keep the best epoch by validation AUC.

    ``packed_dir``: read the train and valid pixels from the packed store made by
    :func:`realfake.packed.prepare` instead of decoding the image files.

    ``mlflow_run(resume_run_id)`` opens (or reopens) the MLflow run to log to and
    returns an object with ``log_epoch(row)`` and ``run_id``; None trains without
    tracking (tests).
    """
    from realfake.manifest import fingerprint

    from realfake import distributed

    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    d = distributed.from_env(device)
    if d.enabled and device.type == "cuda":
        device = torch.device("cuda", d.local_rank)
        torch.cuda.set_device(device)
    manifest = pd.read_parquet(manifest_path)
    data_fp = fingerprint(manifest)
    spec = cfg.input_spec
    train_rows, val_rows = split_rows(manifest, "train"), split_rows(manifest, "valid")
    train_px = val_px = None
    if packed_dir is not None:
        from realfake.packed import PackedSplit

        train_px = PackedSplit(packed_dir, "train", train_rows, data_fp)
        val_px = PackedSplit(packed_dir, "valid", val_rows, data_fp)
    train_ds = FaceDataset(train_rows, raw_dir, spec, Augment.from_params(cfg.augment), cfg.seed, packed=train_px)
    val_ds = FaceDataset(val_rows, raw_dir, spec, packed=val_px)
    val_dl = loader(val_ds, cfg.batch_size * 2, cfg.workers, device)
    sampler = EpochBatches(len(train_ds), cfg.batch_size, cfg.seed, d.rank, d.world)
    # Built once: with workers, the processes persist across epochs (the keys carry the epoch).
    train_dl = DataLoader(
        train_ds, batch_sampler=sampler, num_workers=cfg.workers, pin_memory=device.type == "cuda",
        persistent_workers=cfg.workers > 0, prefetch_factor=4 if cfg.workers > 0 else None,
    )

    model = build_model(cfg.pretrained, dropout=cfg.dropout).to(device)
    if device.type == "cuda":
        model = model.to(memory_format=torch.channels_last)
    # The DDP wrapper trains; the plain module is what we validate and save.
    net = model
    if d.enabled:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        # Static shapes: the epoch's short last batch gets a second graph of its own instead of
        # turning the batch dimension symbolic, which would recompile and slow every step after it.
        net = torch.compile(net, dynamic=False)
    opt = make_optimizer(model, cfg.effective_lr, cfg.weight_decay, device)
    sched = make_scheduler(opt, cfg, len(sampler))
    scaler = grad_scaler(device, cfg.amp)
    loss_fn = nn.BCEWithLogitsLoss()

    # Resume a killed run of the same configuration on the same data.
    start_epoch, history, best = 0, [], {"auc": -1.0, "epoch": 0, "state": None}
    run_id = None
    last = checkpoint_dir / "last.pt"
    if last.exists():
        ckpt = load_checkpoint(last)
        if ckpt["complete"] or ckpt["config_digest"] != cfg.digest() or ckpt["data_fingerprint"] != data_fp:
            log(f"train: {last} is from a finished run or other settings/data; starting afresh")
        else:
            model.load_state_dict(ckpt["model"])
            opt.load_state_dict(ckpt["optimizer"])
            sched.load_state_dict(ckpt["scheduler"])
            if ckpt.get("scaler"):
                scaler.load_state_dict(ckpt["scaler"])
            start_epoch = int(ckpt["epoch"])
            history = list(ckpt["history"])
            best = {"auc": float(ckpt["best_auc"]), "epoch": int(ckpt["best_epoch"]), "state": ckpt["best_state"]}
            run_id = ckpt.get("run_id")
            log(f"train: resuming after epoch {start_epoch}/{cfg.epochs} from {last}")
    tracker = mlflow_run(run_id) if mlflow_run and d.is_main else None
    run_id = tracker.run_id if tracker else None

    patience_left = cfg.early_stopping_patience
    for epoch in range(start_epoch, cfg.epochs):
        torch.manual_seed(cfg.seed * 1_000_003 + epoch)  # dropout of this epoch
        sampler.set_epoch(epoch)
        model.train()
        t0 = time.perf_counter()
        logits_all, targets_all = [], []
        bar = _progress(train_dl, f"epoch {epoch + 1}/{cfg.epochs}", progress)
        readout = LossReadout(device)
        for step, (x, y) in enumerate(bar):
            x = to_model_input(x, device)
            y = y.to(device, non_blocking=True).float()
            with autocast(device, cfg.amp):
                out = net(x).squeeze(1)
                loss = loss_fn(out.float(), y)
            opt.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(opt)
            scaler.update()
            sched.step()
            logits_all.append(out.detach().float())
            targets_all.append(y)
            if hasattr(bar, "set_postfix") and step % 10 == 0:
                readout.offer(loss)
                bar.set_postfix(loss=f"{readout.value:.3f}", refresh=False)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # the epoch's time includes its last queued steps
        seconds = time.perf_counter() - t0
        logits = distributed.all_gather_array(torch.cat(logits_all), d)
        tr = binary_metrics(logits.cpu().numpy(), distributed.all_gather_array(torch.cat(targets_all), d).cpu().numpy())
        if not d.is_main:  # rank 0 validates, checkpoints and logs; the others wait for its verdict
            if distributed.broadcast_flag(False, d):
                break
            continue
        va = binary_metrics(predict_logits(model, val_dl, device, cfg.amp), val_ds.targets)
        row = {
            "epoch": epoch + 1,
            "train_loss": tr["loss"], "train_acc": tr["acc"], "train_auc": tr["auc"],
            "val_loss": va["loss"], "val_acc": va["acc"], "val_auc": va["auc"],
            "lr": opt.param_groups[0]["lr"],
            "images_per_s": len(train_ds) / seconds,
            "seconds": time.perf_counter() - t0,
        }
        history.append(row)
        log(
            f"epoch {epoch + 1}/{cfg.epochs}: train loss {tr['loss']:.4f} auc {tr['auc']:.4f} | "
            f"valid loss {va['loss']:.4f} acc {va['acc']:.4f} auc {va['auc']:.4f} | {row['images_per_s']:.1f} img/s"
        )
        if tracker:
            tracker.log_epoch(row)
        improved = va["auc"] > best["auc"] or best["state"] is None
        if improved:
            best = {"auc": va["auc"], "epoch": epoch + 1, "state": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}}
            patience_left = cfg.early_stopping_patience
        else:
            patience_left -= 1
        stop = cfg.early_stopping_patience > 0 and patience_left <= 0
        done = stop or epoch + 1 == cfg.epochs
        save_atomic(
            {
                "format": CHECKPOINT_FORMAT,
                "epoch": epoch + 1,
                "complete": done,
                "config_digest": cfg.digest(),
                "data_fingerprint": data_fp,
                "run_id": run_id,
                "model": model.state_dict(),
                "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(),
                "scaler": scaler.state_dict() if scaler.is_enabled() else None,
                "history": history,
                "best_auc": best["auc"],
                "best_epoch": best["epoch"],
                "best_state": best["state"],
            },
            last,
        )
        distributed.broadcast_flag(stop, d)
        if stop:
            log(f"train: no validation AUC gain for {cfg.early_stopping_patience} epochs; stopping early")
            break

    distributed.barrier(d)
    if not d.is_main:
        distributed.shutdown(d)
        return TrainResult(metrics={}, history=pd.DataFrame(columns=list(HISTORY_COLUMNS)), run_id=None, resumed_from_epoch=start_epoch)
    hist = pd.DataFrame(history, columns=list(HISTORY_COLUMNS))
    if history_path is not None:
        history_path.parent.mkdir(parents=True, exist_ok=True)
        hist.to_csv(history_path, index=False)
    save_model_file(
        model_path,
        best["state"],
        spec,
        {"data_fingerprint": data_fp, "best_epoch": best["epoch"], "val_auc": best["auc"], "run_id": run_id or ""},
    )
    metrics = {"best_val_auc": best["auc"], "best_epoch": best["epoch"], "epochs_run": len(history)}
    distributed.shutdown(d)
    return TrainResult(metrics=metrics, history=hist, run_id=run_id, resumed_from_epoch=start_epoch)


class LossReadout:
    """The most recent *finished* loss, for the progress bar, without stalling the device.

    On CUDA, ``loss.item()`` would wait for every queued step. Instead the loss is
    copied into pinned host memory behind an event, and read once the event has
    passed; until then the previous value is shown.
    """

    def __init__(self, device: torch.device):
        self.cuda = device.type == "cuda"
        self.host = torch.zeros((), pin_memory=self.cuda)
        self.event = None
        self.value = float("nan")

    def offer(self, loss: torch.Tensor) -> None:
        if not self.cuda:
            self.value = float(loss.detach())
            return
        if self.event is not None:
            if not self.event.query():
                return  # the last copy is still in flight
            self.value = float(self.host)
        self.host.copy_(loss.detach(), non_blocking=True)
        self.event = torch.cuda.Event()
        self.event.record()


def _progress(it, desc: str, enabled: bool):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, unit="batch", leave=False, dynamic_ncols=True)
