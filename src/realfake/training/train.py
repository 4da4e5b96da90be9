"""Training: ``train(cfg, data, out) -> TrainResult``, a plain function the stage, the benchmarks and the tests call.

The run is a short list of steps: set up (:func:`set_up`), resume (:func:`resume`),
then per epoch :func:`train_one_epoch`, :func:`validate` and a checkpoint, and
finally the model file of the best epoch (:func:`finish`), with ``train.spectral`` the spectral
probe fused with it, and the decision that turns its score into a verdict
(:func:`realfake.training.decide.fit_model_decision`). Determinism: the
shuffle order, each image's augmentation and dropout are seeded from ``(seed,
epoch)``, so an epoch gives the same result whether the run went straight
through or resumed from the checkpoint of the epoch before. The hot loop never
waits for the device: metrics stay there until the epoch ends.

Nothing here knows MLflow: the train stage opens the run and passes an
``epoch_logger`` (anything with ``log_epoch(row)``) that receives each epoch's row.

An ensemble (``train.representation`` a list) trains its members one after the other,
each exactly as a single run of its representation would (:func:`train_ensemble`), then
writes one model file of them all.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Protocol

import numpy as np
import pandas as pd
import torch
from torch import nn

from realfake.data.manifest import Manifest
from realfake.detector.modelfile import save_ensemble_file, save_model_file
from realfake.detector.network import Network, build_model
from realfake.detector.preprocess import Preprocessor, to_model_input
from realfake.detector.scoring import (
    ScoringImages,
    amp_dtype,
    autocast,
    batches,
    binary_metrics,
    memory_format,
    predict_logits,
    resolve_device,
)
from realfake.training import distributed
from realfake.training.checkpoint import LAST, NETWORK, Best, Checkpoint, finished, member_name, prune, resumable
from realfake.training.config import TrainConfig
from realfake.training.data import EpochBatches, TrainImages, split_pixels, targets, train_loader
from realfake.training.decide import fit_model_decision
from realfake.training.phases import Phases

HISTORY_COLUMNS = (
    "epoch", "train_loss", "train_acc", "train_auc", "val_loss", "val_acc", "val_auc", "lr", "images_per_s", "seconds",
)


class EpochLogger(Protocol):
    """Where each epoch's history row goes besides the history file (the stage's MLflow run)."""

    def log_epoch(self, row: dict[str, float]) -> None:
        """Record one epoch's row."""


@dataclass(frozen=True)
class TrainOutputs:
    """Where training writes: the model file, the checkpoint folder, and the history CSV (optional)."""

    model: Path
    checkpoints: Path
    history: Path | None = None


@dataclass
class TrainResult:
    """The run's summary metrics, its per-epoch history, and the epoch it resumed after (0: a fresh run;
    for an ensemble, the epochs of all its members that were not trained again)."""

    metrics: dict[str, float]
    history: pd.DataFrame
    resumed_from_epoch: int


@dataclass
class Session:
    """What :func:`set_up` builds for one run: device, processes, data, model and optimiser."""

    cfg: TrainConfig
    device: torch.device
    dist: distributed.Dist
    sampler: EpochBatches
    train_dl: Any
    val_dl: Any
    val_targets: np.ndarray
    n_train: int
    model: nn.Module  # the plain Inception-ResNet: what is saved
    network: nn.Module  # the model fed its representation (a Network): what validates
    net: nn.Module  # what trains: the network, wrapped in DDP and/or compiled
    opt: torch.optim.Optimizer
    sched: Any
    scaler: torch.amp.GradScaler
    loss_fn: nn.Module = field(default_factory=nn.BCEWithLogitsLoss)

    @property
    def memory_format(self) -> torch.memory_format:
        """The layout the training batches and the model's weights take (channels_last in bf16/fp16 and on CUDA)."""
        return memory_format(self.device, self.cfg.amp)


@dataclass
class Progress:
    """Where the run stands: its first epoch, history rows, best epoch and early-stopping patience."""

    start_epoch: int = 0
    history: list[dict[str, float]] = field(default_factory=list)
    best: Best = field(default_factory=Best)
    patience_left: int = 0


def train(
    cfg: TrainConfig,
    data: Manifest,
    out: TrainOutputs,
    *,
    packed_dir: Path | None = None,
    run_id: str | None = None,
    epoch_logger: EpochLogger | None = None,
    dist: distributed.Dist | None = None,
    progress: bool = True,
    log: Callable[[str], None] = print,
    facts: dict[str, Any] | None = None,
) -> TrainResult:
    """Train the detector on ``data``'s train split; keep the epoch ``cfg.keep`` names (best valid AUC, or last).

    The network is written to :data:`NETWORK` in the checkpoint folder; the model file ``out.model`` is written
    once, after the probe and the decision are fitted, with ``facts`` (entries such as ``trained_on``).

    ``packed_dir``: read the train and valid pixels from the packed store made by
    :func:`realfake.data.packed.prepare` instead of decoding the image files.
    ``run_id`` is recorded in checkpoints and the model file; ``dist`` is the
    torchrun process group (joined from the environment when None), left when training ends.
    """
    dist = dist if dist is not None else distributed.from_env(resolve_device(cfg.device))
    fit = train_ensemble if cfg.is_ensemble else train_model
    phases = Phases(resolve_device(cfg.device))
    network = replace(out, model=out.checkpoints / NETWORK)
    with phases("epochs"):
        result = fit(cfg, data, network, packed_dir=packed_dir, run_id=run_id, epoch_logger=epoch_logger, dist=dist,
                     progress=progress, log=log)
    if dist.is_main:
        for name in prune(out.checkpoints, cfg):
            log(f"train: removed {out.checkpoints / name}: only a run of other settings could resume from it")
    distributed.shutdown(dist)
    if dist.is_main:  # the probe (train.spectral), the fusion and the decision (train.decision), in the model file
        result.metrics.update(fit_model_decision(network.model, cfg, data, out=out.model, facts=facts,
                                                 packed_dir=packed_dir, log=log, phases=phases))
        network.model.unlink()
        phases.report(log)
        result.metrics.update(phases.metrics())
    return result


def train_ensemble(cfg: TrainConfig, data: Manifest, out: TrainOutputs, *, run_id: str | None,
                   epoch_logger: EpochLogger | None, dist: distributed.Dist, log: Callable[[str], None],
                   **kw: Any) -> TrainResult:
    """Train each member (:meth:`TrainConfig.members`) into its own checkpoint folder, then write
    ``out.model`` holding them all, and a history with a ``member`` column.

    A member that the resumed run ``run_id`` already finished is kept, not trained again.
    """
    results: list[tuple[str, TrainResult]] = []
    models: list[Path] = []
    for i, member in enumerate(cfg.members()):
        name = member_name(i, member.representation)
        folder = out.checkpoints / name
        mout = TrainOutputs(folder / "model.pt", folder)  # its history is in its checkpoint, and in ours
        done = finished(folder, member, data.fingerprint, run_id) if mout.model.exists() else None
        if distributed.broadcast_flag(done is not None, dist):  # rank 0's verdict holds for every rank
            log(f"train: member {name} was finished earlier in this run; keeping it")
            result = finished_result(done, mout.model) if done is not None else empty_result(0)
        else:
            log(f"train: member {name} ({i + 1} of {len(cfg.representations)})")
            result = train_model(member, data, mout, run_id=run_id, dist=dist, log=log,
                                 epoch_logger=MemberEpochs(epoch_logger, name) if epoch_logger else None, **kw)
        results.append((name, result))
        models.append(mout.model)
    resumed = sum(r.resumed_from_epoch for _, r in results)
    if not dist.is_main:
        return empty_result(resumed, ["member", *HISTORY_COLUMNS])
    save_ensemble_file(out.model, models, {"data_fingerprint": data.fingerprint, "keep": cfg.keep,
                                           "run_id": run_id or ""})
    hist = pd.concat([r.history.assign(member=name) for name, r in results], ignore_index=True)
    hist = hist[["member", *HISTORY_COLUMNS]]
    write_history(hist, out.history)
    metrics = {f"{name}/{k}": v for name, r in results for k, v in r.metrics.items()}
    return TrainResult(metrics=metrics, history=hist, resumed_from_epoch=resumed)


def empty_result(resumed_from_epoch: int, columns=HISTORY_COLUMNS) -> TrainResult:
    """What a rank other than 0 returns: no metrics, no history (rank 0 writes them)."""
    return TrainResult(metrics={}, history=pd.DataFrame(columns=list(columns)), resumed_from_epoch=resumed_from_epoch)


def finished_result(ckpt: Checkpoint, model_file: Path) -> TrainResult:
    """The result of a member trained earlier in the run, from its final checkpoint and model file."""
    from realfake.detector.network import load_state_dict

    kept = load_state_dict(model_file, what="a member's model file", mmap=True)
    hist = pd.DataFrame(ckpt.history, columns=list(HISTORY_COLUMNS))
    return TrainResult(metrics=summary(ckpt.best, int(kept["epoch"]), float(kept["val_auc"]), len(hist)),
                       history=hist, resumed_from_epoch=len(hist))


class MemberEpochs:
    """An ensemble member's epoch rows, to ``logger`` under the member's name (``1-npr/val_auc``)."""

    def __init__(self, logger: EpochLogger, name: str):
        self.logger, self.name = logger, name

    def log_epoch(self, row: dict[str, float]) -> None:
        """Pass the row on with every value but the epoch named after the member."""
        self.logger.log_epoch({"epoch": row["epoch"], **{f"{self.name}/{k}": v for k, v in row.items()
                                                         if k != "epoch"}})


def train_model(cfg: TrainConfig, data: Manifest, out: TrainOutputs, *, packed_dir: Path | None,
                run_id: str | None, epoch_logger: EpochLogger | None, dist: distributed.Dist, progress: bool,
                log: Callable[[str], None]) -> TrainResult:
    """Train one model (see :func:`train`); the process group stays joined."""
    s = set_up(cfg, data, packed_dir, dist)
    state = resume(s, out.checkpoints, data.fingerprint, log)
    for epoch in range(state.start_epoch, cfg.epochs):
        started = time.perf_counter()
        tr = train_one_epoch(s, epoch, progress)
        if not s.dist.is_main:  # rank 0 validates, checkpoints and logs; the others wait for its verdict
            if distributed.broadcast_flag(False, s.dist):
                break
            continue
        va = validate(s)
        row = {"epoch": epoch + 1, "train_loss": tr["loss"], "train_acc": tr["acc"], "train_auc": tr["auc"],
               "val_loss": va["loss"], "val_acc": va["acc"], "val_auc": va["auc"], "lr": s.opt.param_groups[0]["lr"],
               "images_per_s": s.n_train / tr["seconds"], "seconds": time.perf_counter() - started}
        log(f"epoch {epoch + 1}/{cfg.epochs}: train loss {row['train_loss']:.4f} auc {row['train_auc']:.4f} | "
            f"valid loss {row['val_loss']:.4f} acc {row['val_acc']:.4f} auc {row['val_auc']:.4f} | "
            f"{row['images_per_s']:.1f} img/s")
        if epoch_logger:
            epoch_logger.log_epoch(row)
        stop = record_epoch(s, state, row)
        checkpoint(s, state, epoch + 1, stop or epoch + 1 == cfg.epochs, data.fingerprint, run_id).save(
            out.checkpoints / LAST)
        distributed.broadcast_flag(stop, s.dist)
        if stop:
            log(f"train: no validation AUC gain for {cfg.early_stopping_patience} epochs; stopping early")
            break
    return finish(s, state, out, data.fingerprint, run_id)


def set_up(cfg: TrainConfig, data: Manifest, packed_dir: Path | None, dist: distributed.Dist | None) -> Session:
    """Seed, join the process group, build the loaders, the model, the optimiser and the schedule."""
    torch.manual_seed(cfg.seed)
    device = resolve_device(cfg.device)
    dist = dist if dist is not None else distributed.from_env(device)
    if dist.enabled and device.type == "cuda":
        device = torch.device("cuda", dist.local_rank)
        torch.cuda.set_device(device)
    pre = Preprocessor(cfg.input_spec, cfg.augment)
    train_ds = TrainImages(split_pixels(data, "train", packed_dir), targets(data, "train"), pre, cfg.seed,
                           cfg.synthetic, cfg.consistency.augment if cfg.consistency.enabled else None)
    # Validation scores the training crop, not the model file's network_window: the per-epoch figure
    # (and keep: best) stays as cheap as the crop, and the evaluate stage scores the window.
    val_pre = Preprocessor(replace(cfg.input_spec, network_window=None))
    val_ds = ScoringImages(split_pixels(data, "valid", packed_dir), val_pre)
    sampler = EpochBatches(len(train_ds), cfg.batch_size, cfg.seed, dist.rank, dist.world)

    model = build_model(cfg.pretrained, dropout=cfg.dropout, in_channels=cfg.input_spec.channels)
    model = model.to(device, memory_format=memory_format(device, cfg.amp))
    network = net = Network([model], [cfg.representation])
    if dist.enabled:
        net = nn.parallel.DistributedDataParallel(net, device_ids=[device.index] if device.type == "cuda" else None)
    if cfg.compile:
        # Static shapes: the epoch's short last batch gets a second graph of its own instead of
        # turning the batch dimension symbolic, which would recompile and slow every step after it.
        net = torch.compile(net, dynamic=False)
    opt = make_optimizer(model, cfg.effective_lr, cfg.weight_decay, device)
    return Session(
        cfg=cfg, device=device, dist=dist, sampler=sampler,
        train_dl=train_loader(train_ds, sampler, cfg.loader_workers(device), device),
        val_dl=batches(val_ds, cfg.batch_size * 2, cfg.loader_workers(device), device, persistent=True),
        val_targets=targets(data, "valid"),
        n_train=len(train_ds), model=model, network=network, net=net, opt=opt,
        sched=make_scheduler(opt, cfg, len(sampler)),
        scaler=torch.amp.GradScaler("cuda", enabled=amp_dtype(device, cfg.amp) == torch.float16),
    )


def make_optimizer(model: nn.Module, lr: float, weight_decay: float, device: torch.device) -> torch.optim.Optimizer:
    """AdamW; on CUDA its fused kernel (one launch for all parameters instead of a loop of
    elementwise kernels: the unfused step was 12 % of an H100 training step's device time)."""
    return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay, fused=device.type == "cuda")


def make_scheduler(opt: torch.optim.Optimizer, cfg: TrainConfig, steps_per_epoch: int):
    """The learning-rate schedule over the whole run, stepped once per batch."""
    total = cfg.epochs * steps_per_epoch
    if cfg.schedule == "onecycle":
        return torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=cfg.effective_lr, total_steps=total, pct_start=0.2)
    if cfg.schedule == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=total)
    return torch.optim.lr_scheduler.LambdaLR(opt, lambda step: 1.0)


def resume(s: Session, checkpoint_dir: Path, data_fingerprint: str, log: Callable[[str], None]) -> Progress:
    """Load the state of a killed run of the same settings on the same data; a fresh start otherwise."""
    state = Progress(patience_left=s.cfg.early_stopping_patience)
    ckpt = resumable(checkpoint_dir, s.cfg, data_fingerprint)
    if ckpt is None:
        if (checkpoint_dir / LAST).exists():
            log(f"train: {checkpoint_dir / LAST} is from a finished run or other settings/data; starting afresh")
        return state
    s.model.load_state_dict(ckpt.model)
    s.opt.load_state_dict(ckpt.optimizer)
    s.sched.load_state_dict(ckpt.scheduler)
    if ckpt.scaler:
        s.scaler.load_state_dict(ckpt.scaler)
    state.start_epoch, state.history, state.best = int(ckpt.epoch), list(ckpt.history), ckpt.best
    log(f"train: resuming after epoch {state.start_epoch}/{s.cfg.epochs} from {checkpoint_dir / LAST}")
    return state


def train_one_epoch(s: Session, epoch: int, progress: bool) -> dict[str, float]:
    """One pass over this process's batches: loss, accuracy and AUC over all processes, and its seconds."""
    torch.manual_seed(s.cfg.seed * 1_000_003 + epoch)  # dropout of this epoch
    s.sampler.set_epoch(epoch)
    s.model.train()
    t0 = time.perf_counter()
    logits_all, targets_all = [], []
    bar = _progress(s.train_dl, f"epoch {epoch + 1}/{s.cfg.epochs}", progress)
    readout = LossReadout(s.device)
    for step, (*views, y) in enumerate(bar):
        # forward: the batch, and with consistency pairs their perturbed copies in the same pass
        y = y.to(s.device, non_blocking=True).float()
        with autocast(s.device, s.cfg.amp):
            x = torch.cat(views) if len(views) > 1 else views[0]
            out = s.net(to_model_input(x, s.device, s.memory_format)).squeeze(1).float()
            out, perturbed = out[: len(y)], out[len(y):]
            loss = training_loss(s.loss_fn, out, y, perturbed, s.cfg.consistency.weight, s.cfg.consistency.pairs)
        # backward and step
        s.opt.zero_grad(set_to_none=True)
        s.scaler.scale(loss).backward()
        s.scaler.step(s.opt)
        s.scaler.update()
        s.sched.step()
        # keep the metrics on the device; show a finished loss now and then
        logits_all.append(out.detach().float())
        targets_all.append(y)
        if hasattr(bar, "set_postfix") and step % 10 == 0:
            readout.offer(loss)
            bar.set_postfix(loss=f"{readout.value:.3f}", refresh=False)
    if s.device.type == "cuda":
        torch.cuda.synchronize(s.device)  # the epoch's time includes its last queued steps
    seconds = time.perf_counter() - t0
    logits = distributed.all_gather_array(torch.cat(logits_all), s.dist)
    tgts = distributed.all_gather_array(torch.cat(targets_all), s.dist)
    return {**binary_metrics(logits.cpu().numpy(), tgts.cpu().numpy()), "seconds": seconds}


def training_loss(loss_fn: nn.Module, out: torch.Tensor, y: torch.Tensor, perturbed: torch.Tensor,
                  weight: float, pairs: str = "all") -> torch.Tensor:
    """The cross-entropy of the clean logits ``out``, plus, for consistency pairs, ``weight`` times the mean squared
    difference of the perturbed copies' logits from them (``pairs="real"``: the reals' pairs only, averaged over
    the batch). The clean side is held fixed in that term: the perturbed copy is pulled to the clean verdict, not
    the clean one to the perturbed."""
    loss = loss_fn(out, y)
    if len(perturbed):
        gap = (perturbed - out.detach()).square()
        if pairs == "real":
            gap = gap * (y == 0)
        loss = loss + weight * gap.mean()
    return loss


def validate(s: Session) -> dict[str, float]:
    """Loss, accuracy and ROC-AUC on the valid split."""
    logits = predict_logits(s.network, s.val_dl, s.device, s.cfg.amp)
    return binary_metrics(logits, s.val_targets)


def record_epoch(s: Session, state: Progress, row: dict[str, float]) -> bool:
    """Add the epoch's row, keep its weights if it is the best so far; whether to stop early."""
    state.history.append(row)
    if state.best.offer(row["val_auc"], int(row["epoch"]), s.model):
        state.patience_left = s.cfg.early_stopping_patience
    else:
        state.patience_left -= 1
    return s.cfg.early_stopping_patience > 0 and state.patience_left <= 0


def checkpoint(s: Session, state: Progress, epoch: int, complete: bool, data_fingerprint: str,
               run_id: str | None) -> Checkpoint:
    """The checkpoint after ``epoch``."""
    return Checkpoint(
        epoch=epoch, complete=complete, config_digest=s.cfg.digest(), data_fingerprint=data_fingerprint,
        run_id=run_id, model=s.model.state_dict(), optimizer=s.opt.state_dict(), scheduler=s.sched.state_dict(),
        scaler=s.scaler.state_dict() if s.scaler.is_enabled() else None, history=state.history,
        best_auc=state.best.auc, best_epoch=state.best.epoch, best_state=state.best.state,
    )


def finish(s: Session, state: Progress, out: TrainOutputs, data_fingerprint: str, run_id: str | None) -> TrainResult:
    """Rank 0 writes the history and the model file of the epoch ``keep`` names (the other ranks: nothing)."""
    distributed.barrier(s.dist)
    if not s.dist.is_main:
        return empty_result(state.start_epoch)
    hist = pd.DataFrame(state.history, columns=list(HISTORY_COLUMNS))
    write_history(hist, out.history)
    best = state.best
    last = state.history[-1]
    kept = best if s.cfg.keep == "best" else Best.snapshot(float(last["val_auc"]), int(last["epoch"]), s.model)
    save_model_file(out.model, kept.state, s.cfg.input_spec,
                    {"data_fingerprint": data_fingerprint, "epoch": kept.epoch, "keep": s.cfg.keep,
                     "val_auc": kept.auc, "run_id": run_id or ""})
    return TrainResult(metrics=summary(best, kept.epoch, kept.auc, len(state.history)), history=hist,
                       resumed_from_epoch=state.start_epoch)


def write_history(hist: pd.DataFrame, path: Path | None) -> None:
    """The per-epoch history as CSV at ``path`` (nowhere when None)."""
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
        hist.to_csv(path, index=False)


def summary(best: Best, model_epoch: int, model_val_auc: float, epochs_run: int) -> dict[str, float]:
    """A run's summary metrics: its best epoch by valid AUC, and the epoch its model file keeps."""
    return {"best_val_auc": best.auc, "best_epoch": best.epoch, "model_epoch": model_epoch,
            "model_val_auc": model_val_auc, "epochs_run": epochs_run}


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
        """Start copying ``loss`` to the host unless a copy is in flight; take up the last one that landed."""
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
