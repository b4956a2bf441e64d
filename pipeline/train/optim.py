"""Optimiser pieces shared by supernet training, search-time adaptation and fine-tuning.

- ``parameter_groups``: weight decay on convolution and linear weights only; none on BN
  parameters or biases (every 1-D tensor), as OFA trains;
- ``momentum_sgd``: SGD with ``TrainConfig``'s momentum and Nesterov switch (fine-tuning's SGD too);
- ``make_optimizer``: progressive shrinking's SGD on those groups; the learning rate is set per
  step by the loop.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from pipeline.config import PipelineConfig, TrainConfig


def parameter_groups(module: nn.Module, weight_decay: float) -> list[dict[str, Any]]:
    """Two groups: weights with ``weight_decay``, BN parameters and biases (1-D) without."""
    decay, no_decay = [], []
    for param in module.parameters():
        (no_decay if param.ndim <= 1 else decay).append(param)
    return [{"params": decay, "weight_decay": weight_decay}, {"params": no_decay, "weight_decay": 0.0}]


def momentum_sgd(groups: list[dict[str, Any]], lr: float, train: TrainConfig) -> torch.optim.SGD:
    """SGD with the training config's momentum and Nesterov switch (Nesterov needs momentum > 0)."""
    return torch.optim.SGD(groups, lr=lr, momentum=train.momentum, nesterov=train.nesterov and train.momentum > 0)


def make_optimizer(net: nn.Module, config: PipelineConfig) -> torch.optim.Optimizer:
    """``momentum_sgd`` on ``parameter_groups``; the loop sets the learning rate per step."""
    return momentum_sgd(parameter_groups(net, config.train.weight_decay), 0.0, config.train)
