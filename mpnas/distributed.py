"""Data-parallel helpers in plain torch.distributed (gloo on CPU, NCCL on GPU) for runs launched with torchrun.

Each rank draws its own share of the global batch, computes gradients locally, and `all_reduce_gradients` averages
them, so every rank takes the same optimizer step as one process on the global batch (when the per-rank shares are
equal and batch-norm statistics do not differ between shares: BN normalises with per-rank batch statistics, as in
DDP without SyncBatchNorm). Only rank 0 writes files (`is_main`, `rank0_only`).
"""

from __future__ import annotations

import functools
import os
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Optional, TypeVar

import torch
import torch.distributed as dist
from torch import nn

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def enabled(self) -> bool:
        return self.world_size > 1


def init_from_env(backend: Optional[str] = None) -> DistInfo:
    """Join the process group torchrun describes (RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR/PORT); single process
    when WORLD_SIZE is unset or 1. NCCL and one GPU per local rank when CUDA is present, else gloo on CPU."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo(device=torch.device("cuda" if torch.cuda.is_available() else "cpu"))
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    cuda = torch.cuda.is_available()
    backend = backend or ("nccl" if cuda else "gloo")
    if cuda:
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, rank=rank, world_size=world)
    return DistInfo(rank, world, local_rank, torch.device("cuda", local_rank) if cuda else torch.device("cpu"))


def current() -> DistInfo:
    """The DistInfo of an initialised process group (or the single-process default)."""
    if not (dist.is_available() and dist.is_initialized()):
        return DistInfo()
    return DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", "0")))


def is_main() -> bool:
    return current().rank == 0


def rank0_only(fn: Callable[..., T]) -> Callable[..., Optional[T]]:
    """Run `fn` on rank 0 only (checkpoint and artifact writes); other ranks get None."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Optional[T]:
        return fn(*args, **kwargs) if is_main() else None

    return wrapper


def broadcast_parameters(module: nn.Module, src: int = 0) -> None:
    """Make every rank start from rank `src`'s parameters and buffers."""
    if current().enabled:
        for t in [*module.parameters(), *module.buffers()]:
            dist.broadcast(t.data, src)


def all_reduce_gradients(params: nn.Module | Iterable[nn.Parameter]) -> None:
    """Average gradients over ranks (call after backward, before the optimizer step). Parameters that got no
    gradient on a rank (a domain path not sampled there) contribute zeros, so every rank applies the same update."""
    info = current()
    if not info.enabled:
        return
    for p in (params.parameters() if isinstance(params, nn.Module) else params):
        if not p.requires_grad:
            continue
        if p.grad is None:
            p.grad = torch.zeros_like(p)
        dist.all_reduce(p.grad, op=dist.ReduceOp.SUM)
        p.grad.div_(info.world_size)


def average_scalars(values: dict[str, float]) -> dict[str, float]:
    """Mean of per-rank scalars (per-domain losses/accuracies), so that adaptive loss weights agree on all ranks."""
    info = current()
    if not info.enabled or not values:
        return values
    keys = sorted(values)
    t = torch.tensor([float(values[k]) for k in keys], dtype=torch.float64)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return {k: float(v) / info.world_size for k, v in zip(keys, t.tolist())}


def shard(x: torch.Tensor, info: Optional[DistInfo] = None) -> torch.Tensor:
    """This rank's contiguous share of a global batch (the batch size must divide evenly)."""
    info = info or current()
    if x.shape[0] % info.world_size:
        raise ValueError(f"global batch of {x.shape[0]} does not split evenly over {info.world_size} ranks")
    n = x.shape[0] // info.world_size
    return x[info.rank * n:(info.rank + 1) * n]


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
