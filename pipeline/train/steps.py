"""One optimiser step of progressive shrinking: k sampled subnets, accumulated, all-reduced.

``StepContext`` bundles what a step needs (supernet, optimiser, loss settings, teacher or Cream
state); ``train_step`` runs the subnets, ``update_board`` offers them to Cream's board afterwards.
Loss per subnet:

- full phase of an early-exit supernet: sum_i w_i CE(z_i, y) over all exits;
- a fixed/dynamic teacher: CE + kd_weight * soft CE against the teacher's (ENS-KD) target;
- Cream (after warm-up, outside the full phase of an early-exit supernet, whose multi-exit loss
  stays): (rho KD + (2 - rho) CE) / 2 with the board path the meta network picks as teacher
  among the paths other than the student's; the meta network is updated every
  ``meta_update_interval`` steps;
- otherwise label-smoothed CE.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.config import TrainConfig
from pipeline.train.cream import (
    BoardEntry,
    MetaNetwork,
    PrioritizedBoard,
    meta_gradient,
    select_teacher,
    teacher_candidates,
)
from pipeline.train.distributed import WorkerInfo, allreduce_gradients, allreduce_mean
from pipeline.train.evaluation import count_correct, frozen_batchnorm_stats
from pipeline.train.losses import cream_loss, kd_loss, multi_exit_loss
from pipeline.train.teacher import teacher_target


@dataclass
class CreamState:
    board: PrioritizedBoard
    meta: MetaNetwork
    meta_optimizer: torch.optim.Optimizer
    held_out_images: torch.Tensor  # normalised, at the largest resolution
    held_out_labels: torch.Tensor
    stored_images: torch.Tensor    # the first images of the held-out set
    macs: Callable[[dict], float]


@dataclass
class StepContext:
    net: nn.Module
    optimizer: torch.optim.Optimizer
    train: TrainConfig
    info: WorkerInfo
    teacher: nn.Module | None = None
    cream: CreamState | None = None


def _resized(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear",
                         align_corners=False, antialias=True)


@torch.no_grad()
def _path_probs(net: nn.Module, arch: dict, images: torch.Tensor) -> torch.Tensor:
    """Softmax of a path on images, train-mode BN with frozen running statistics."""
    net.set_active(arch)
    with frozen_batchnorm_stats(net):
        return F.softmax(net(_resized(images, arch["resolution"])), dim=1)


def _cream_loss(ctx: StepContext, arch: dict, images: torch.Tensor, labels: torch.Tensor,
                lr: float, meta_step: bool) -> torch.Tensor | None:
    """Cream's student loss for ``arch``; None when no other board path can teach it."""
    cream = ctx.cream
    candidates = teacher_candidates(cream.board, arch)
    if not candidates:
        return None
    board = PrioritizedBoard(cream.board.size, cream.board.margin)
    board.entries = candidates
    student_probs = _path_probs(ctx.net, arch, cream.stored_images)
    index, rho = select_teacher(cream.meta, student_probs, board)
    teacher_arch = dict(candidates[index].arch, resolution=arch["resolution"])
    target = _path_probs(ctx.net, teacher_arch, images)
    ctx.net.set_active(arch)
    if meta_step:
        cream.meta_optimizer.zero_grad(set_to_none=True)
        with frozen_batchnorm_stats(ctx.net):
            meta_gradient(ctx.net, rho, images, labels, target,
                          _resized(cream.held_out_images, arch["resolution"]), cream.held_out_labels,
                          lr, ctx.train.label_smoothing)
        allreduce_gradients(cream.meta.parameters(), ctx.info)
        cream.meta_optimizer.step()
        ctx.net.zero_grad(set_to_none=True)
    logits = ctx.net(images)
    return cream_loss(logits, labels, target, rho.detach(), ctx.train.label_smoothing)


def train_step(ctx: StepContext, archs: list[dict], images: torch.Tensor, labels: torch.Tensor,
               lr: float, full_phase: bool, use_board: bool, meta_step: bool) -> float:
    """Sum the gradients of ``archs`` on one batch, all-reduce, step; the mean loss."""
    for group in ctx.optimizer.param_groups:
        group["lr"] = lr
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.net.train()
    target = None
    if ctx.teacher is not None and not full_phase:
        target = teacher_target(ctx.teacher, images, ctx.train.ens_kd, ctx.train.exit_weights)
    multi_exit = full_phase and getattr(ctx.net.space, "early_exits", False)
    total = 0.0
    for index, arch in enumerate(archs):
        loss = None
        if use_board and ctx.cream is not None and not multi_exit:
            loss = _cream_loss(ctx, arch, images, labels, lr, meta_step and index == 0)
        ctx.net.set_active(arch)
        if loss is None:
            if multi_exit:
                loss = multi_exit_loss(ctx.net.forward_exits(images), labels, ctx.train.exit_weights,
                                       ctx.train.label_smoothing)
            else:
                loss = kd_loss(ctx.net(images), labels, target, ctx.train.kd_weight,
                               ctx.train.label_smoothing)
        loss.backward()  # the k subnets' gradients add up, as in OFA (its learning rates assume it)
        total += float(loss.detach())
    allreduce_gradients(ctx.net.parameters(), ctx.info)
    ctx.optimizer.step()
    return total / len(archs)


@torch.no_grad()
def update_board(ctx: StepContext, archs: list[dict]) -> int:
    """Offer the step's subnets to the board (held-out accuracy, same on every rank); entries made."""
    cream = ctx.cream
    entered = 0
    for arch in archs:
        probs = _path_probs(ctx.net, arch, cream.held_out_images)
        correct = torch.tensor(100.0 * count_correct(probs, cream.held_out_labels) / probs.shape[0],
                               device=probs.device)
        stored = _path_probs(ctx.net, arch, cream.stored_images)  # same batch as the student's
        values = torch.cat([correct.reshape(1), stored.reshape(-1)])
        allreduce_mean([values], ctx.info)
        accuracy = float(values[0])
        known = cream.board.find(arch)
        if known is None and not cream.board.could_enter(accuracy):
            continue  # rejected whatever its MACs; skip counting them
        macs = known.macs if known is not None else cream.macs(arch)
        entry = BoardEntry(arch=arch, accuracy=accuracy, macs=macs,
                           probs=values[1:].reshape(stored.shape).cpu())
        entered += int(cream.board.consider(entry))
    ctx.net.set_active(archs[-1])
    return entered
