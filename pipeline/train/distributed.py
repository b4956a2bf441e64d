"""Collectives for the training loop, working alike with one process or a torch.distributed group.

Gradients are all-reduced by hand once per optimiser step, after the k sampled subnets have
accumulated theirs (parameters a subnet never touched contribute zeros). That replaces DDP:
DDP's reducer fires per backward pass, so k accumulated subnets would need ``no_sync`` and
``find_unused_parameters=True`` (an extra graph walk every pass) - one flat all-reduce per step is
correct for any subnet and cheaper. BatchNorm running statistics, which DDP would broadcast, are
averaged across ranks before they are evaluated or checkpointed.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import torch
import torch.distributed as dist
import torch.nn as nn


@dataclass(frozen=True)
class WorkerInfo:
    rank: int
    world_size: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()


def allreduce_mean(tensors: Iterable[torch.Tensor], info: WorkerInfo) -> None:
    """Average tensors in place across ranks (one flat buffer, one collective)."""
    tensors = list(tensors)
    if not info.distributed or not tensors:
        return
    flat = torch.cat([t.reshape(-1) for t in tensors])
    dist.all_reduce(flat)
    flat /= info.world_size
    offset = 0
    for t in tensors:
        count = t.numel()
        t.copy_(flat[offset:offset + count].view_as(t))
        offset += count


def allreduce_gradients(parameters: Iterable[nn.Parameter], info: WorkerInfo) -> None:
    """Average gradients across ranks; a parameter without a gradient gets a zero one first."""
    params = [p for p in parameters if p.requires_grad]
    if not info.distributed:
        return
    for p in params:
        if p.grad is None:
            p.grad = torch.zeros_like(p)
    allreduce_mean([p.grad for p in params], info)


def average_batchnorm_buffers(module: nn.Module, info: WorkerInfo) -> None:
    """Average the floating-point running statistics of every BatchNorm across ranks."""
    buffers = [b for name, b in module.named_buffers()
               if b.is_floating_point() and ("running_mean" in name or "running_var" in name)]
    allreduce_mean(buffers, info)


def broadcast_object(value: object, info: WorkerInfo) -> object:
    """Rank 0's value on every rank."""
    if not info.distributed:
        return value
    holder = [value]
    dist.broadcast_object_list(holder, src=0)
    return holder[0]


def broadcast_parameters(module: nn.Module, info: WorkerInfo) -> None:
    """Copy rank 0's parameters and buffers to every rank."""
    if not info.distributed:
        return
    for tensor in list(module.parameters()) + list(module.buffers()):
        dist.broadcast(tensor.data, src=0)
