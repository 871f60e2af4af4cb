"""torchrun / DDP plumbing. One process: no process group. Several (``torchrun --nproc_per_node N``):
NCCL on GPUs, gloo on CPUs."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import SetrError


@dataclass
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def launch_env() -> tuple[int, int, int]:
    """(rank, world size, local rank) as torchrun set them (0, 1, 0 without torchrun): the one place that reads
    ``RANK`` / ``WORLD_SIZE`` / ``LOCAL_RANK``."""
    return (int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1")),
            int(os.environ.get("LOCAL_RANK", "0")))


def is_main_process() -> bool:
    """Rank 0 (or no torchrun): the process that prints."""
    return launch_env()[0] == 0


def init_distributed(device: str | None = None) -> DistInfo:
    rank, world, local_rank = launch_env()
    use_cuda = (device or ("cuda" if torch.cuda.is_available() else "cpu")).startswith("cuda")
    if use_cuda:
        dev = torch.device(device if device and ":" in device else f"cuda:{local_rank}")
        torch.cuda.set_device(dev)
    else:
        dev = torch.device("cpu")
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if use_cuda else "gloo")
    return DistInfo(rank, world, local_rank, dev)


def barrier(info: DistInfo) -> None:
    if info.distributed:
        dist.barrier()


def all_reduce_sum(t: torch.Tensor, info: DistInfo) -> torch.Tensor:
    if info.distributed:
        t = t.clone()
        dist.all_reduce(t)
    return t


def cleanup(info: DistInfo) -> None:
    if info.distributed and dist.is_initialized():
        dist.destroy_process_group()


def resolve_device(name: str | None) -> str:
    """``None`` -> cuda if available else cpu; a CUDA device on a machine without one is a user error."""
    if name is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise SetrError(f"--device {name}: CUDA is not available on this machine")
    return name
