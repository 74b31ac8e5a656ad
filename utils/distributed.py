"""Multi-process training under torchrun: process group, samplers and cross-rank reductions.

The single-process path is the same code with world size 1: every helper here is a no-op then.
torchrun sets RANK, LOCAL_RANK and WORLD_SIZE; the backend is nccl on GPUs and gloo on CPUs.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch.utils.data import DistributedSampler


@dataclass
class DistInfo:
    """This process's place in the job."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def setup() -> DistInfo:
    """Join the process group when started by torchrun (WORLD_SIZE > 1); else world size 1."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    info = DistInfo(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        if backend == "nccl":
            torch.cuda.set_device(info.local_rank)
        dist.init_process_group(backend=backend)
    return info


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()


def active() -> bool:
    return dist.is_available() and dist.is_initialized() and dist.get_world_size() > 1


def barrier() -> None:
    if active():
        dist.barrier()


def sum_across(t: torch.Tensor) -> torch.Tensor:
    """Sum a tensor over all ranks (in place; returned for chaining)."""
    if active():
        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def gather_lists(items: list[Any]) -> list[Any]:
    """Concatenate each rank's list in rank order (the order torchmetrics gathers states in)."""
    if not active():
        return items
    parts: list[list[Any]] = [[] for _ in range(dist.get_world_size())]
    dist.all_gather_object(parts, items)
    return [x for part in parts for x in part]


class UnpaddedDistributedSampler(DistributedSampler):
    """A DistributedSampler for evaluation that never repeats a sample.

    The stock sampler pads the last shard with repeated samples so every rank gets as many; in
    validation that would count some images twice. Here rank r gets indices r, r + W, r + 2W, ...
    (uneven shards are fine: metric states are summed or gathered, not averaged per rank).
    """

    def __init__(self, dataset: Any, num_replicas: int | None = None,
                 rank: int | None = None) -> None:
        super().__init__(dataset, num_replicas=num_replicas, rank=rank, shuffle=False)

    def __iter__(self) -> Iterator[int]:
        return iter(range(self.rank, len(self.dataset), self.num_replicas))

    def __len__(self) -> int:
        return len(range(self.rank, len(self.dataset), self.num_replicas))


def broadcast(obj: Any) -> Any:
    """Rank 0's value of `obj` on every rank (e.g. a run name made from the clock)."""
    if not active():
        return obj
    box = [obj]
    dist.broadcast_object_list(box, src=0)
    return box[0]
