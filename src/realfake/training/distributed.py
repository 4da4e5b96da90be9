"""Data-parallel training with PyTorch's own engine (torch.distributed, DDP), launched by torchrun.

``torchrun --nproc_per_node=N pipeline/train.py`` (or ``--nnodes``/``--rdzv-endpoint``
for several nodes) sets WORLD_SIZE, RANK and LOCAL_RANK; :func:`from_env` joins
the process group (NCCL on GPUs, gloo on CPUs). Each global batch of
``train.batch_size`` images is drawn from one permutation shared by all ranks
(seeded by seed and epoch) and split between them, so the ranks see disjoint
images and the averaged gradient is that of the global batch. Rank 0 alone
validates, writes checkpoints and outputs, and logs to MLflow.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch

from realfake.errors import RealfakeError


@dataclass(frozen=True)
class Dist:
    """This process's place among the torchrun processes (one process: rank 0 of 1)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        """Rank 0: the process that validates, writes and logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        """Several processes train together."""
        return self.world > 1


def from_env(device: torch.device) -> Dist:
    """Join the process group that torchrun describes in the environment (a no-op for one process)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Dist(rank=dist.get_rank(), world=dist.get_world_size(), local_rank=int(os.environ.get("LOCAL_RANK", "0")))


def shard_batches(n: int, global_batch: int, seed: int, rank: int = 0, world: int = 1) -> list[list[int]]:
    """This rank's share of every global batch of one epoch's permutation of ``range(n)``.

    The permutation is the same on every rank (seeded), so the shares are
    disjoint and together cover each global batch exactly once.
    """
    if global_batch % world:
        raise RealfakeError(f"train.batch_size {global_batch} must be a multiple of the {world} processes.")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed)).tolist()
    batches = []
    for start in range(0, n, global_batch):
        share = perm[start : start + global_batch][rank::world]
        if share:
            batches.append(share)
    return batches


def all_gather_array(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Concatenate a 1-D tensor from every rank (sizes may differ), in rank order."""
    if not d.enabled:
        return x
    import torch.distributed as dist

    parts: list = [None] * d.world
    dist.all_gather_object(parts, x.cpu())
    return torch.cat(parts)


def broadcast_flag(flag: bool, d: Dist) -> bool:
    """Rank 0's ``flag`` on every rank (stop early, or not)."""
    if not d.enabled:
        return flag
    import torch.distributed as dist

    box = [flag]
    dist.broadcast_object_list(box, src=0)
    return bool(box[0])


def barrier(d: Dist) -> None:
    """Wait for every rank."""
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def shutdown(d: Dist) -> None:
    """Leave the process group."""
    if d.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
