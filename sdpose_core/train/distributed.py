"""torchrun / DistributedDataParallel plumbing: process-group setup, sampling, gathering (the device rule is
`sdpose_core.precision.resolve_device`).

torchrun exports RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR and MASTER_PORT; we initialise with
`init_method="env://"` from those (multi-node works the same way: torchrun --nnodes N ...). Backend: nccl
for CUDA, gloo for CPU. Without those variables everything runs as a single process.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import Dataset, DistributedSampler

from sdpose_core.precision import resolve_device


@dataclass
class DistContext:
    """Who this process is in the job."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")
    initialised_here: bool = False  # we created the process group, so we destroy it

    @property
    def is_distributed(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.is_distributed:
            dist.barrier()


def setup_distributed(device: str = "auto") -> DistContext:
    """Join the torchrun job if the environment says there is one; otherwise a single process."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    resolved = resolve_device(device, local_rank)
    if world_size <= 1:
        return DistContext(device=resolved)
    if resolved.type == "cuda":
        torch.cuda.set_device(resolved)
    initialised_here = False
    if not dist.is_initialized():
        backend = "nccl" if resolved.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend, init_method="env://", rank=rank, world_size=world_size)
        initialised_here = True
    return DistContext(rank, world_size, local_rank, resolved, initialised_here)


def teardown_distributed(ctx: DistContext) -> None:
    if ctx.initialised_here and dist.is_initialized():
        dist.destroy_process_group()


def all_gather_objects(ctx: DistContext, obj: Any) -> list[Any]:
    """Every rank's `obj`, in rank order (a one-element list when not distributed)."""
    if not ctx.is_distributed:
        return [obj]
    gathered: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(gathered, obj)
    return gathered


def broadcast_object(ctx: DistContext, obj: Any) -> Any:
    """Rank 0's `obj` on every rank."""
    if not ctx.is_distributed:
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]


class ResumableSampler(DistributedSampler):
    """DistributedSampler (seeded shuffle per epoch, rank-strided shards) that can start mid-epoch.

    Used for single-process runs too (num_replicas=1): the permutation then depends only on
    (seed, epoch), which is what makes `--resume` bit-for-bit and lets one process with global batch
    2B see exactly the samples two ranks with batch B see together.
    """

    def __init__(self, dataset: Dataset, ctx: DistContext, shuffle: bool, seed: int, drop_last: bool):
        super().__init__(
            dataset, num_replicas=ctx.world_size, rank=ctx.rank, shuffle=shuffle, seed=seed, drop_last=drop_last
        )
        self.start_index = 0

    def set_start(self, samples_already_seen: int) -> None:
        """Skip this many of this rank's samples in the current epoch (mid-epoch resume)."""
        self.start_index = int(samples_already_seen)

    def __iter__(self) -> Iterator[int]:
        indices = list(super().__iter__())
        return iter(indices[self.start_index:])

    def __len__(self) -> int:
        return max(0, self.num_samples - self.start_index)
