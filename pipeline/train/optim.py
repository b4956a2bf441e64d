"""Optimiser pieces shared by supernet training, search-time adaptation and fine-tuning.

- ``parameter_groups``: weight decay on convolution and linear weights only; none on BN
  parameters or biases (every 1-D tensor), as OFA trains;
- ``make_optimizer``: progressive shrinking's SGD (Nesterov momentum from ``TrainConfig``) on
  those groups; the learning rate is set per step by the loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.config import PipelineConfig


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights with ``weight_decay``, BN parameters and biases (1-D) without."""
    decay, no_decay = [], []
    for param in module.parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def make_optimizer(net: nn.Module, config: PipelineConfig) -> torch.optim.Optimizer:
    """SGD on ``parameter_groups`` with the training config's momentum and Nesterov switch."""
    train = config.train
    return torch.optim.SGD(parameter_groups(net, train.weight_decay), lr=0.0, momentum=train.momentum,
                           nesterov=train.nesterov and train.momentum > 0)
