"""Distillation teachers: the fixed full network and the dynamic (progressively extracted) one.

Both are the maximal subnet extracted from a saved state of the supernet (the best epoch of a
phase), recalibrated on the calibration subset and frozen. For early-exit supernets the teacher is
the all-exit network, and its target is ENS-KD's softmax(sum_i a_i z_i) when ``ens_kd`` is on
(otherwise the last exit's softmax).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from pipeline.space.ofav2 import OFAv2Space
from pipeline.supernet.builder import build_supernet
from pipeline.supernet.precision import FP32, ForwardPrecision, float_logits
from pipeline.train.evaluation import DataView, calibrated_copy
from pipeline.train.losses import ens_kd_target


def build_teacher(source_state: dict[str, torch.Tensor], space: OFAv2Space, num_classes: int,
                  view: DataView, all_exits: bool | None = None) -> nn.Module:
    """The frozen maximal subnet of ``source_state``; with all exits (``all_exits``, by default
    for early-exit spaces) or its last exit alone."""
    supernet = build_supernet(space, num_classes, seed=0)  # overwritten by the state; seeded so no global RNG is used
    supernet.load_state_dict(source_state)
    all_exits = space.early_exits if all_exits is None else all_exits
    teacher = calibrated_copy(supernet, space.largest(), view, all_exits=all_exits)
    for p in teacher.parameters():
        p.requires_grad_(False)
    return teacher


@torch.no_grad()
def teacher_target(teacher: nn.Module, images: torch.Tensor, ens_kd: bool,
                   exit_weights: Sequence[float], precision: ForwardPrecision = FP32) -> torch.Tensor:
    """The teacher's soft target on ``images`` (forward under ``precision``'s autocast, target in float32)."""
    with precision.autocast():
        output = teacher(images)
    output = float_logits(output)
    if isinstance(output, list):
        if ens_kd:
            return ens_kd_target(list(output), exit_weights)
        output = output[-1]
    return F.softmax(output, dim=1)
