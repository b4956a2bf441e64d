"""Subnet extraction: a standalone static module with copies of exactly the weights a subnet uses.

The result is a ``layers.StaticSubnet`` of plain ``nn.Conv2d``/``nn.BatchNorm2d``/activation
modules: elastic kernels are baked in (transformation matrices applied), elastic widths are cut to
their active channels, inactive branches, blocks, stages and exit heads are left out. BN running
statistics are copied, and the module is in the supernet's train/eval mode. It shares no tensor
with the supernet, so fine-tuning it leaves the supernet untouched.
"""

from __future__ import annotations

import copy

import torch
from torch import nn

from pipeline.space.base import Architecture
from pipeline.supernet.layers import Stage, StaticSubnet


@torch.no_grad()
def extract_subnet(net: nn.Module, arch: Architecture, all_exits: bool = False) -> StaticSubnet:
    """Extract ``arch`` from the ``OFAv2Supernet`` ``net`` (its active architecture is kept).

    With ``all_exits`` the module returns a tuple of logits of exits 1..exit (early-exit
    supernets; a single-exit supernet gives a 1-tuple); otherwise a Tensor.
    """
    previous = net.active_arch
    arch = net.set_active(arch)
    try:
        num_stages = arch.get("exit", len(net.stages))
        stages = [
            Stage([block.to_static() for block in net.stages[s][: arch["depths"][s]]], net.space.dense_skips)
            for s in range(num_stages)
        ]
        head_stages = list(range(num_stages)) if all_exits and net.space.early_exits else [num_stages - 1]
        heads = [copy.deepcopy(net.head(s + 1)) for s in head_stages]
        subnet = StaticSubnet(copy.deepcopy(net.stem), copy.deepcopy(net.first_block), stages, heads,
                              head_stages, multi_output=all_exits)
    finally:
        net.set_active(previous)
    subnet.train(net.training)
    return subnet
