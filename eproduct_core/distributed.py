"""Process-group plumbing for `torchrun`: who am I, which device, and the few collectives we need.

Under `torchrun --nproc_per_node N` the environment carries RANK / WORLD_SIZE / LOCAL_RANK; we start a
process group (nccl on GPU, gloo on CPU). Without it everything is a single process (rank 0 of 1).
Only rank 0 writes files.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

from .errors import EproductError


@dataclass(frozen=True)
class Dist:
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world > 1

    @property
    def main(self) -> bool:
        return self.rank == 0


def resolve_device(name: str, local_rank: int = 0) -> torch.device:
    """ "auto" -> CUDA when present else CPU; "cuda" without a GPU is a user error."""
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    if name == "cuda":
        if not torch.cuda.is_available():
            raise EproductError("device=cuda but no CUDA GPU is visible. Use --device cpu or --device auto.")
        return torch.device("cuda", local_rank % max(1, torch.cuda.device_count()))
    if name != "cpu":
        raise EproductError(f"Unknown device {name!r}. Use auto, cpu or cuda.")
    return torch.device("cpu")


def init(device_name: str = "auto") -> tuple[Dist, torch.device]:
    """Join the torchrun process group when there is one; return (Dist, this process's device)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist(), resolve_device(device_name)
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    device = resolve_device(device_name, local_rank)
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(device)
        dist.init_process_group(backend=backend)
    return Dist(rank=rank, world=world, local_rank=local_rank), device


def barrier(info: Dist) -> None:
    if info.enabled and dist.is_initialized():
        dist.barrier()


def sync_buffers(module: torch.nn.Module, info: Dist) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank, so all ranks hold one model.

    DDP keeps parameters in step but each rank's last forward updates its own running statistics.
    """
    if info.enabled and dist.is_initialized():
        for buffer in module.buffers():
            dist.broadcast(buffer, src=0)


def shutdown(info: Dist) -> None:
    if info.enabled and dist.is_initialized():
        dist.destroy_process_group()
