"""The one module that touches `torch.distributed`.

Under `torchrun` (RANK / WORLD_SIZE / LOCAL_RANK in the environment) training runs data
parallel: nccl on GPUs, gloo on CPU; every process starts from rank 0's weights, and after the
last micro-batch of a step the gradients are summed over the processes with one all-reduce of
a flat buffer. Without torchrun everything here is a no-op for a single process, so the
training loop reads the same either way.

Why not DistributedDataParallel: constructing it keeps gloo's worker threads alive past
`destroy_process_group()`, and one that needs the GIL while Python finalises can abort the
process. Without it the group's threads are joined at teardown; what DDP would add (overlap
of communication with the backward pass) is small at these model sizes.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from pianomuse.devices import resolve_device


@dataclass(frozen=True)
class Dist:
    """Where this process stands: its rank, the world size and its device."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    device: torch.device = torch.device("cpu")

    @property
    def is_main(self) -> bool:
        """Only the main process writes files and logs."""
        return self.rank == 0

    @property
    def enabled(self) -> bool:
        return self.world > 1


def setup(device: str = "auto") -> Dist:
    """Join the process group when launched by torchrun, and pick this process's device."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", "0"))
    cuda = resolve_device(device).type == "cuda"
    dev = torch.device(f"cuda:{local}" if cuda else "cpu")
    if cuda:
        torch.cuda.set_device(dev)
    if world > 1 and not dist.is_initialized():
        dist.init_process_group(backend="nccl" if cuda else "gloo")
    return Dist(rank, world, local, dev)


def broadcast_parameters(model: nn.Module, d: Dist) -> None:
    """Every process takes rank 0's weights (and buffers)."""
    if d.enabled:
        for t in (*model.parameters(), *model.buffers()):
            dist.broadcast(t.data, src=0)


def sum_gradients(model: nn.Module, d: Dist) -> None:
    """Replace every gradient by its sum over the processes (one flat all-reduce)."""
    if not d.enabled:
        return
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat, op=dist.ReduceOp.SUM)
    for g, part in zip(grads, flat.split([g.numel() for g in grads]), strict=True):
        g.copy_(part.view_as(g))


def all_sum(x: torch.Tensor, d: Dist) -> torch.Tensor:
    """Sum of a tensor over all processes (a copy; the input is left as it was)."""
    x = x.clone()
    if d.enabled:
        dist.all_reduce(x, op=dist.ReduceOp.SUM)
    return x


def weight_spread(model: nn.Module, d: Dist) -> float:
    """Largest difference of any weight between processes (0.0 when they are in sync)."""
    if not d.enabled:
        return 0.0
    worst = torch.zeros((), device=d.device)
    for p in model.parameters():
        hi, lo = p.detach().clone(), p.detach().clone()
        dist.all_reduce(hi, op=dist.ReduceOp.MAX)
        dist.all_reduce(lo, op=dist.ReduceOp.MIN)
        worst = torch.maximum(worst, (hi - lo).abs().max())
    return float(worst)


def barrier(d: Dist) -> None:
    if d.enabled:
        dist.barrier()


def teardown(d: Dist) -> None:
    if d.enabled and dist.is_initialized():
        dist.destroy_process_group()
