"""BatchNorm recalibration: recompute running statistics for the active subnet from a few batches.

OFA evaluates a subnet only after resetting BN running statistics from a fixed subset of training
images; without it accuracy is near chance. ``recalibrate_bn`` does that in place, with no copy of
the network: it resets every BN layer, switches it to a cumulative average (``momentum=None``),
forwards the batches in train mode under ``no_grad`` and restores each layer's momentum and the
network's mode. On an early-exit supernet it forwards every exit up to the active one
(``forward_exits``), so the statistics also suit the all-exit (multi-output) extraction. Layers
the subnet does not use keep the reset statistics (mean 0, variance 1).
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import torch
from torch import nn

from pipeline.errors import DataError
from pipeline.space.base import Architecture


def _images(batch: Any) -> torch.Tensor:
    """The image tensor of a batch: the batch itself or the first item of a (images, labels) pair."""
    if isinstance(batch, (tuple, list)):
        batch = batch[0]
    if not isinstance(batch, torch.Tensor) or batch.dim() != 4:
        raise DataError("BN recalibration needs batches of images shaped (N, C, H, W)")
    return batch


@torch.no_grad()
def recalibrate_bn(net: nn.Module, batches: Iterable[Any], arch: Architecture | None = None) -> None:
    """Reset and recompute the BN running statistics of ``net`` (optionally after ``set_active(arch)``)."""
    if arch is not None:
        net.set_active(arch)
    layers = [m for m in net.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    momenta = [layer.momentum for layer in layers]
    was_training = net.training
    forward = getattr(net, "forward_exits", net)
    try:
        device = next(net.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    for layer in layers:
        layer.reset_running_stats()
        layer.momentum = None
    seen = 0
    try:
        net.train()
        for batch in batches:
            forward(_images(batch).to(device))
            seen += 1
    finally:
        for layer, momentum in zip(layers, momenta):
            layer.momentum = momentum
        net.train(was_training)
    if seen == 0:
        raise DataError("BN recalibration got no batches")
