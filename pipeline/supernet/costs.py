"""Cost counting from the real module: parameters and multiply-accumulates.

``count_costs`` counts the parameters of a module (an extracted subnet holds exactly the weights
on its path to the output(s)) and its MACs with ``torch.utils.flop_counter.FlopCounterMode`` on one
image at the given resolution (FLOPs / 2). Convolutions and linear layers are counted; BN,
activations and additions are not (the usual MAC convention). ``arch_costs`` extracts an
architecture and counts it; ``ArchCostCounter`` caches that by ``arch_id``.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from pipeline.space.base import Architecture, arch_id


def count_costs(module: nn.Module, resolution: int) -> dict[str, float]:
    """``{"params_m": parameters / 1e6, "macs_m": MACs of one image / 1e6}``."""
    params = sum(p.numel() for p in module.parameters())
    try:
        device = next(module.parameters()).device
    except StopIteration:
        device = torch.device("cpu")
    was_training = module.training
    module.eval()
    try:
        with torch.no_grad(), FlopCounterMode(display=False) as counter:
            module(torch.zeros(1, 3, resolution, resolution, device=device))
    finally:
        module.train(was_training)
    return {"params_m": params / 1e6, "macs_m": counter.get_total_flops() / 2 / 1e6}


def arch_costs(net: nn.Module, arch: Architecture, all_exits: bool = False) -> dict[str, float]:
    """Costs of ``arch`` of the supernet ``net``, counted on its extracted module at its resolution."""
    arch = net.space.validate(arch)
    return count_costs(net.extract(arch, all_exits=all_exits), arch["resolution"])


class ArchCostCounter:
    """``arch_costs`` with a per-instance cache keyed by ``arch_id`` (costs do not depend on weights)."""

    def __init__(self, net: nn.Module) -> None:
        self.net = net
        self._cache: dict[tuple[str, bool], dict[str, float]] = {}

    def __call__(self, arch: Architecture, all_exits: bool = False) -> dict[str, float]:
        key = (arch_id(self.net.space.validate(arch)), all_exits)
        if key not in self._cache:
            self._cache[key] = arch_costs(self.net, arch, all_exits)
        return dict(self._cache[key])
