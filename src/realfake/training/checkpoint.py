"""Checkpoints: what one holds, when it may be resumed, and the best epoch so far.

A checkpoint is written atomically after every epoch (``models/checkpoints/last.pt``).
A killed run resumes after its last completed epoch when the configuration
(:meth:`TrainConfig.digest`) and the data (the manifest's fingerprint) are
unchanged; a finished run's checkpoint is never resumed. It is a plain dict of
tensors and numbers, read with ``torch.load(..., weights_only=True)``.

An ensemble's members train one after the other, each with its own folder of
checkpoints (named by :func:`member_name`); a killed ensemble resumes in the member it was
training, and keeps the members that run had already finished (:func:`finished`).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from realfake.detector.modelfile import save_torch
from realfake.detector.network import load_state_dict
from realfake.errors import RealfakeError
from realfake.training.config import TrainConfig

CHECKPOINT_FORMAT = "realfake-checkpoint/1"
LAST = "last.pt"
#: The network a run ended with (or its ensemble), until the model file is written with the probe and the decision.
NETWORK = "network.pt"


@dataclass
class Best:
    """The best epoch so far by validation AUC, with its weights (on the CPU)."""

    auc: float = -1.0
    epoch: int = 0
    state: dict[str, torch.Tensor] | None = None

    @classmethod
    def snapshot(cls, auc: float, epoch: int, model: torch.nn.Module) -> "Best":
        """``model``'s weights now, copied to the CPU, as the epoch ``epoch`` of valid AUC ``auc``."""
        return cls(auc, epoch, _cpu_copy(model))

    def offer(self, auc: float, epoch: int, model: torch.nn.Module) -> bool:
        """Keep ``model``'s weights if ``auc`` beats the best (or there is none yet); whether it did."""
        if auc > self.auc or self.state is None:
            self.auc, self.epoch, self.state = auc, epoch, _cpu_copy(model)
            return True
        return False


def _cpu_copy(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    """A copy of ``model``'s weights on the CPU (it outlives later training steps)."""
    return {k: v.detach().cpu().clone() for k, v in model.state_dict().items()}


@dataclass
class Checkpoint:
    """Everything needed to resume after ``epoch``, and to finish the run from its best epoch."""

    epoch: int
    complete: bool
    config_digest: str
    data_fingerprint: str
    run_id: str | None
    model: dict[str, Any]
    optimizer: dict[str, Any]
    scheduler: dict[str, Any]
    scaler: dict[str, Any] | None
    history: list[dict[str, float]] = field(default_factory=list)
    best_auc: float = -1.0
    best_epoch: int = 0
    best_state: dict[str, torch.Tensor] | None = None

    @property
    def best(self) -> Best:
        """The best epoch this checkpoint records."""
        return Best(float(self.best_auc), int(self.best_epoch), self.best_state)

    def save(self, path: Path) -> None:
        """Write atomically: a killed write leaves the previous checkpoint."""
        save_torch({"format": CHECKPOINT_FORMAT, **{f.name: getattr(self, f.name) for f in fields(self)}}, path)

    @classmethod
    def load(cls, path: Path) -> "Checkpoint":
        """Read a checkpoint written by :meth:`save` (weights only, never code)."""
        blob = load_state_dict(path, what="a training checkpoint", mmap=True)
        if blob.get("format") != CHECKPOINT_FORMAT:
            raise RealfakeError(
                f"{path} is not a realfake training checkpoint (format {blob.get('format')!r}). "
                "Delete it to start afresh."
            )
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in blob.items() if k in names})

    def of(self, cfg: TrainConfig, data_fingerprint: str) -> bool:
        """Whether a run of ``cfg`` on data ``data_fingerprint`` wrote this checkpoint (finished or not)."""
        return self.config_digest == cfg.digest() and self.data_fingerprint == data_fingerprint

    def resumes(self, cfg: TrainConfig, data_fingerprint: str) -> bool:
        """Whether a run of ``cfg`` on data ``data_fingerprint`` continues from here."""
        return not self.complete and self.of(cfg, data_fingerprint)


def resumable(checkpoint_dir: Path, cfg: TrainConfig, data_fingerprint: str) -> Checkpoint | None:
    """The checkpoint a run of ``cfg`` on this data resumes from, or None (none, finished, or other settings)."""
    last = Path(checkpoint_dir) / LAST
    if not last.exists():
        return None
    ckpt = Checkpoint.load(last)
    return ckpt if ckpt.resumes(cfg, data_fingerprint) else None


def member_name(index: int, representation: str) -> str:
    """``1-npr``, ``2-rgb-npr``, ``2-npr-white-0.125``: an ensemble member's (``index`` from 0) checkpoint
    folder, history rows and metric names (MLflow's take letters, digits, ``_ - . /`` and spaces, no ``+``
    or ``@``)."""
    return f"{index + 1}-{representation.replace('+', '-').replace('@', '-')}"


def prune(checkpoint_dir: Path, cfg: TrainConfig) -> list[str]:
    """Remove the checkpoints in ``checkpoint_dir`` that no run of ``cfg`` resumes from: a single model's
    ``last.pt`` after an ensemble, other ensembles' member folders (hundreds of MB each) after anything
    else. Only those two kinds of entry are touched; return the names removed."""
    import re
    import shutil

    keep = {member_name(i, r) for i, r in enumerate(cfg.representations)} if cfg.is_ensemble else {LAST}
    removed = []
    for entry in sorted(Path(checkpoint_dir).iterdir()) if Path(checkpoint_dir).is_dir() else []:
        member = entry.is_dir() and re.fullmatch(r"\d+-[\w.-]+", entry.name) and (entry / LAST).exists()
        if entry.name not in keep and (member or (entry.name == LAST and entry.is_file())):
            shutil.rmtree(entry) if entry.is_dir() else entry.unlink()
            removed.append(entry.name)
    return removed


def resumable_run(checkpoint_dir: Path, cfg: TrainConfig, data_fingerprint: str) -> Checkpoint | None:
    """The checkpoint a run of ``cfg`` resumes from: its own, or for an ensemble the first member's that
    resumes (its ``run_id`` is the run to continue)."""
    if not cfg.is_ensemble:
        return resumable(checkpoint_dir, cfg, data_fingerprint)
    for i, member in enumerate(cfg.members()):
        ckpt = resumable(Path(checkpoint_dir) / member_name(i, member.representation), member, data_fingerprint)
        if ckpt is not None:
            return ckpt
    return None


def finished(checkpoint_dir: Path, cfg: TrainConfig, data_fingerprint: str, run_id: str | None) -> Checkpoint | None:
    """The complete checkpoint of ``cfg`` on this data that run ``run_id`` wrote, or None: an ensemble
    member the resumed run had already finished. Another run's finished member is trained again."""
    last = Path(checkpoint_dir) / LAST
    if run_id is None or not last.exists():
        return None
    ckpt = Checkpoint.load(last)
    return ckpt if ckpt.complete and ckpt.of(cfg, data_fingerprint) and ckpt.run_id == run_id else None
