"""Running under ``torchrun``: the process group, this process's device, and the few collective steps training
needs. A plain ``python``/``edgetrack`` run is a world of one and touches no process group."""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist


@dataclass(frozen=True)
class World:
    rank: int
    size: int
    device: torch.device

    @property
    def main(self) -> bool:
        """Rank 0 alone writes checkpoints, logs and progress."""
        return self.rank == 0


def join(device: str = "auto") -> World:
    """Join the process group torchrun describes (NCCL on GPU, gloo on CPU), or make a world of one."""
    size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available() if device == "auto" else device.startswith("cuda")
    if cuda:
        torch.cuda.set_device(local_rank)
        chosen = torch.device("cuda", local_rank)
    else:
        chosen = torch.device("cpu")
    if size > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return World(rank, size, chosen)


def barrier(world: World) -> None:
    if world.size > 1:
        dist.barrier()


def leave(world: World) -> None:
    if world.size > 1 and dist.is_initialized():
        dist.destroy_process_group()


def any_rank(world: World, flag: bool) -> bool:
    """True on every rank when it is True on any: a signal received by one rank stops them all at the same step."""
    if world.size == 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=world.device)
    dist.all_reduce(value, op=dist.ReduceOp.MAX)
    return bool(value.item())


def replicas_agree(world: World, parameters) -> bool:
    """Whether every rank holds the same weights, by comparing a fingerprint (sum and sum of squares) of them."""
    if world.size == 1:
        return True
    flat = torch.cat([p.detach().float().flatten() for p in parameters])
    fingerprint = torch.stack([flat.sum(), flat.pow(2).sum()]).to(world.device)
    low, high = fingerprint.clone(), fingerprint.clone()
    dist.all_reduce(low, op=dist.ReduceOp.MIN)
    dist.all_reduce(high, op=dist.ReduceOp.MAX)
    return bool(torch.allclose(low, high, rtol=1e-6, atol=1e-6))
