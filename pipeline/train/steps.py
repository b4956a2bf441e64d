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

Mixed precision (``train.precision``, ``pipeline.supernet.precision``): the forward passes run
under the context's autocast, every loss on the logits cast to float32; with fp16 the backward
pass and the optimiser step go through the context's gradient scaler (the gradients are all-reduced
scaled, so every rank skips the same steps). Cream's meta-gradient stays in fp32. With fp32 there
is no autocast and no scaler: the step is exactly the plain one.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.config import TrainConfig
from pipeline.supernet.precision import FP32, ForwardPrecision, float_logits, optimizer_step, scaled_backward
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
    precision: ForwardPrecision = FP32
    scaler: torch.amp.GradScaler | None = None  # fp16 only (``ForwardPrecision.grad_scaler``)


def _resized(images: torch.Tensor, resolution: int) -> torch.Tensor:
    if images.shape[-1] == resolution:
        return images
    return F.interpolate(images, size=(resolution, resolution), mode="bilinear",
                         align_corners=False, antialias=True)


@torch.no_grad()
def _path_probs(net: nn.Module, arch: dict, images: torch.Tensor,
                precision: ForwardPrecision = FP32) -> torch.Tensor:
    """Softmax of a path on images, train-mode BN with frozen running statistics."""
    net.set_active(arch)
    with frozen_batchnorm_stats(net):
        with precision.autocast():
            logits = net(_resized(images, arch["resolution"]))
        return F.softmax(float_logits(logits), dim=1)


def _cream_loss(ctx: StepContext, arch: dict, images: torch.Tensor, labels: torch.Tensor,
                lr: float, meta_step: bool) -> torch.Tensor | None:
    """Cream's student loss for ``arch``; None when no other board path can teach it."""
    cream = ctx.cream
    candidates = teacher_candidates(cream.board, arch)
    if not candidates:
        return None
    board = PrioritizedBoard(cream.board.size, cream.board.margin)
    board.entries = candidates
    student_probs = _path_probs(ctx.net, arch, cream.stored_images, ctx.precision)
    index, rho = select_teacher(cream.meta, student_probs, board)
    teacher_arch = dict(candidates[index].arch, resolution=arch["resolution"])
    target = _path_probs(ctx.net, teacher_arch, images, ctx.precision)
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
    with ctx.precision.autocast():
        logits = ctx.net(images)
    return cream_loss(float_logits(logits), labels, target, rho.detach(), ctx.train.label_smoothing)


def _subnet_loss(ctx: StepContext, images: torch.Tensor, labels: torch.Tensor, target: torch.Tensor | None,
                 multi_exit: bool) -> torch.Tensor:
    """The active subnet's loss (multi-exit or CE + KD), forward under autocast, loss in float32."""
    with ctx.precision.autocast():
        output = ctx.net.forward_exits(images) if multi_exit else ctx.net(images)
    if multi_exit:
        return multi_exit_loss(float_logits(output), labels, ctx.train.exit_weights, ctx.train.label_smoothing)
    return kd_loss(float_logits(output), labels, target, ctx.train.kd_weight, ctx.train.label_smoothing)


def _backward(ctx: StepContext, loss: torch.Tensor) -> None:
    scaled_backward(loss, ctx.scaler)


def _optimizer_step(ctx: StepContext) -> None:
    optimizer_step(ctx.optimizer, ctx.scaler)


def train_step(ctx: StepContext, archs: list[dict], images: torch.Tensor, labels: torch.Tensor,
               lr: float, full_phase: bool, use_board: bool, meta_step: bool) -> float:
    """Sum the gradients of ``archs`` on one batch, all-reduce, step; the mean loss."""
    for group in ctx.optimizer.param_groups:
        group["lr"] = lr
    ctx.optimizer.zero_grad(set_to_none=True)
    ctx.net.train()
    target = None
    if ctx.teacher is not None and not full_phase:
        target = teacher_target(ctx.teacher, images, ctx.train.ens_kd, ctx.train.exit_weights, ctx.precision)
    multi_exit = full_phase and getattr(ctx.net.space, "early_exits", False)
    total = 0.0
    for index, arch in enumerate(archs):
        loss = None
        if use_board and ctx.cream is not None and not multi_exit:
            loss = _cream_loss(ctx, arch, images, labels, lr, meta_step and index == 0)
        ctx.net.set_active(arch)
        if loss is None:
            loss = _subnet_loss(ctx, images, labels, target, multi_exit)
        _backward(ctx, loss)  # the k subnets' gradients add up, as in OFA (its learning rates assume it)
        total += float(loss.detach())
    allreduce_gradients(ctx.net.parameters(), ctx.info)
    _optimizer_step(ctx)
    return total / len(archs)


@torch.no_grad()
def update_board(ctx: StepContext, archs: list[dict]) -> int:
    """Offer the step's subnets to the board (held-out accuracy, same on every rank); entries made."""
    cream = ctx.cream
    entered = 0
    for arch in archs:
        probs = _path_probs(ctx.net, arch, cream.held_out_images, ctx.precision)
        correct = torch.tensor(100.0 * count_correct(probs, cream.held_out_labels) / probs.shape[0],
                               device=probs.device)
        stored = _path_probs(ctx.net, arch, cream.stored_images, ctx.precision)  # same batch as the student's
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
