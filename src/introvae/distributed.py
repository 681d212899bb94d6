"""Data-parallel training over torch.distributed, launched with torchrun (one process per GPU, or per CPU slot).

    torchrun --nproc_per_node 4 -m introvae train --data DIR --out RUN ...                      # one machine
    torchrun --nnodes 2 --node_rank R --nproc_per_node 8 --rdzv_backend c10d \\
             --rdzv_endpoint HOST:29500 -m introvae train ...                                    # several machines

Why not the DistributedDataParallel wrapper: an introspective step is several phases, each a backward pass of its own
loss into its own network with the graph retained for the next phase, and each followed by that network's optimizer
step (see `engine.step_phases`). DDP's reducer assumes one forward and one backward per step and module. So the
same data parallelism is written out here: every rank holds the whole model, sees its own slice of the global batch,
and before each optimizer step the gradients of the phase's network are averaged over the ranks with one all-reduce
(`average_gradients`), which is what DDP computes. Batch-norm statistics are per rank during the forward pass (as
with DDP without SyncBatchNorm); their running averages are copied from rank 0 after every step
(`broadcast_buffers`, DDP's broadcast_buffers), so every rank holds the same model and rank 0's checkpoint is
everyone's.

The global batch is `--batch-size`; each of the W ranks takes every W-th image of it, so the union over ranks is
exactly the single-process batch and the data order, the step and the images seen are global: a run resumes with the
same or a different number of processes. Noise is drawn per rank from seeds derived from (seed, step, rank).
NCCL is used on GPUs, gloo on CPUs. Only rank 0 writes logs, grids, checkpoints and pictures.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

__all__ = ["Distributed", "setup", "average_gradients", "broadcast_buffers", "broadcast_parameters"]


@dataclass(frozen=True)
class Distributed:
    """Where this process stands: rank among world_size processes, local_rank on its machine."""

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def setup(device_name: str) -> tuple[Distributed, str]:
    """Join the process group torchrun set up (WORLD_SIZE > 1), choosing NCCL on CUDA and gloo otherwise.

    Returns the process's place and the device it should use: with CUDA, GPU `local_rank`. A single process (no
    torchrun, or --nproc_per_node 1) changes nothing.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed(), device_name
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    wants_cuda = device_name.startswith("cuda") or (device_name == "auto" and torch.cuda.is_available())
    if wants_cuda:
        torch.cuda.set_device(local_rank)
        device_name = f"cuda:{local_rank}"
    elif device_name == "auto":
        device_name = "cpu"
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if wants_cuda else "gloo")
    return Distributed(rank, world_size, local_rank), device_name


def barrier(world_size: int) -> None:
    if world_size > 1:
        dist.barrier()


def teardown() -> None:
    """Leave the process group together: a rank that tears gloo down while another still talks to it can abort."""
    if dist.is_initialized():
        try:
            dist.barrier()
        finally:
            dist.destroy_process_group()


def average_gradients(module: nn.Module, world_size: int) -> None:
    """Average the gradients of `module` over all ranks (one flattened all-reduce)."""
    grads = [p.grad for p in module.parameters() if p.grad is not None]
    if world_size <= 1 or not grads:
        return
    flat = torch.cat([g.reshape(-1) for g in grads])
    dist.all_reduce(flat)
    flat /= world_size
    offset = 0
    for g in grads:
        g.copy_(flat[offset:offset + g.numel()].view_as(g))
        offset += g.numel()


def broadcast_buffers(module: nn.Module, world_size: int) -> None:
    """Copy rank 0's buffers (batch-norm running statistics) to every rank."""
    if world_size <= 1:
        return
    for buffer in module.buffers():
        dist.broadcast(buffer, src=0)


def broadcast_parameters(module: nn.Module, world_size: int) -> None:
    """Copy rank 0's parameters and buffers to every rank (at start, so all ranks begin from one model)."""
    if world_size <= 1:
        return
    with torch.no_grad():
        for tensor in list(module.parameters()) + list(module.buffers()):
            dist.broadcast(tensor, src=0)


def all_true(flag: bool, world_size: int, device: torch.device) -> bool:
    """Whether `flag` holds on every rank (so that all ranks skip a step together)."""
    if world_size <= 1:
        return flag
    value = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(value, op=dist.ReduceOp.MIN)
    return bool(value.item() > 0.5)


def mean_over_ranks(value: float) -> float:
    """The mean of `value` over all ranks (for a number every rank must agree on, such as a measured margin)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() == 1:
        return value
    device = torch.device("cuda", torch.cuda.current_device()) if dist.get_backend() == "nccl" else torch.device("cpu")
    total = torch.tensor([value], dtype=torch.float64, device=device)
    dist.all_reduce(total)
    return float(total.item()) / dist.get_world_size()
