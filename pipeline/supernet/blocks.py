"""Elastic OFAv2 blocks: the MBConv with elastic kernel and expand, and the block with branches.

``ElasticMBConv`` keeps every weight at its largest size (hidden width ``in * max(expand)``,
kernel ``max(kernel)``) and runs the active ``(kernel, expand)`` with functional ops on weight
views. The active hidden width is ``make_divisible(in * expand)`` (the first channels), and the
SE's squeeze width is ``make_divisible(hidden // 4)`` of the active hidden width, as in OFA.
Without autograd (evaluation, BN recalibration) the active weights are cached between forwards.
``reorganize_channels`` sorts the hidden channels (and the SE's squeeze channels) by importance
and permutes every tensor that touches them, leaving the full network's function unchanged.
``to_static`` copies exactly the active weights into a plain ``layers.MBConv``.

``ElasticBlock`` sums its active branches (3-bit mask: 1 MBConv, 2 1x1 conv + BN + act,
4 transformation branch). The identity shortcut belongs to the MBConv branch (OFA's residual
block): it is added only when the MBConv bit is on and stride is 1 and widths match, so a mask
without the MBConv bit is the sum of its other branches alone.
"""

from __future__ import annotations

import copy
from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import nn

from pipeline.space.ofav2 import MBCONV_BIT
from pipeline.supernet.dynamic_ops import ElasticDepthwiseKernel, batch_norm, make_divisible
from pipeline.supernet.layers import Block, MBConv, SqueezeExcite, conv_bn_act, sum_branches, transform_branch

FUNCTIONAL_ACTIVATIONS = {"relu": F.relu, "hswish": F.hardswish}


def _copy_bn(source: nn.BatchNorm2d, channels: int) -> nn.BatchNorm2d:
    """A new BN holding the first ``channels`` channels of ``source`` (parameters and statistics)."""
    index = slice(0, channels)
    target = nn.BatchNorm2d(channels, eps=source.eps, momentum=source.momentum)
    with torch.no_grad():
        target.weight.copy_(source.weight[index])
        target.bias.copy_(source.bias[index])
        target.running_mean.copy_(source.running_mean[index])
        target.running_var.copy_(source.running_var[index])
        target.num_batches_tracked.copy_(source.num_batches_tracked)
    return target


def _permute_bn(bn: nn.BatchNorm2d, order: torch.Tensor) -> None:
    for tensor in (bn.weight, bn.bias, bn.running_mean, bn.running_var):
        tensor.data.copy_(tensor.data[order])


class ElasticMBConv(nn.Module):
    """Inverted bottleneck with elastic depthwise kernel and elastic expand ratio."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: str, use_se: bool,
                 kernel_choices: Sequence[int], expand_choices: Sequence[int]) -> None:
        super().__init__()
        self.in_channels, self.out_channels, self.stride, self.act = in_channels, out_channels, stride, act
        self.kernel_choices = tuple(sorted(kernel_choices))
        self.expand_choices = tuple(sorted(expand_choices))
        max_hidden = self.hidden_channels(self.expand_choices[-1])
        self.expand_conv = nn.Conv2d(in_channels, max_hidden, 1, bias=False)
        self.expand_bn = nn.BatchNorm2d(max_hidden)
        self.depthwise = ElasticDepthwiseKernel(max_hidden, self.kernel_choices)
        self.depthwise_bn = nn.BatchNorm2d(max_hidden)
        self.se = SqueezeExcite(max_hidden, self.squeeze_channels(max_hidden)) if use_se else None
        self.project_conv = nn.Conv2d(max_hidden, out_channels, 1, bias=False)
        self.project_bn = nn.BatchNorm2d(out_channels)
        self._act = FUNCTIONAL_ACTIVATIONS[act]
        self._sources = list(self.parameters())
        self._cache_key: tuple | None = None
        self._cache: list[torch.Tensor] = []
        self.set_active(self.kernel_choices[-1], self.expand_choices[-1])

    def hidden_channels(self, expand: int) -> int:
        return make_divisible(self.in_channels * expand)

    @staticmethod
    def squeeze_channels(hidden: int) -> int:
        return make_divisible(hidden // 4)

    def set_active(self, kernel: int, expand: int) -> None:
        self.active_kernel = kernel
        self.active_expand = expand
        self._hidden = self.hidden_channels(expand)
        self._squeeze = self.squeeze_channels(self._hidden)
        self._full_width = self._hidden == self.expand_conv.weight.shape[0]

    def _active_weights(self) -> list[torch.Tensor]:
        """Views of the active weights: expand, depthwise kernel, [SE reduce w/b, SE expand w/b], project."""
        hidden, squeeze = self._hidden, self._squeeze
        if self._full_width:  # the whole tensors: no slicing, no slice nodes in the autograd graph
            weights = [self.expand_conv.weight, self.depthwise.kernel(self.active_kernel, hidden)]
            if self.se is not None:
                weights += [self.se.reduce.weight, self.se.reduce.bias, self.se.expand.weight, self.se.expand.bias]
            weights.append(self.project_conv.weight)
            return weights
        weights = [self.expand_conv.weight[:hidden], self.depthwise.kernel(self.active_kernel, hidden)]
        if self.se is not None:
            weights += [self.se.reduce.weight[:squeeze, :hidden], self.se.reduce.bias[:squeeze],
                        self.se.expand.weight[:hidden, :squeeze], self.se.expand.bias[:hidden]]
        weights.append(self.project_conv.weight[:, :hidden])
        return weights

    def _cached_weights(self) -> list[torch.Tensor]:
        """Without autograd the active weights are reused across forwards (contiguous copies) until
        the architecture or any source parameter changes (tracked by tensor version and storage)."""
        key = (self.active_kernel, self._hidden, tuple((p._version, p.data_ptr()) for p in self._sources))
        if self._cache_key != key:
            with torch.inference_mode(False), torch.no_grad():
                self._cache = [w.contiguous() for w in self._active_weights()]
            self._cache_key = key
        return self._cache

    def _apply(self, fn, recurse=True):  # device/dtype moves replace tensors: rebuild the source list
        result = super()._apply(fn, recurse)
        self._sources = list(self.parameters())
        self._cache_key, self._cache = None, []
        return result

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        hidden, act, kernel = self._hidden, self._act, self.active_kernel
        weights = self._active_weights() if torch.is_grad_enabled() else self._cached_weights()
        x = F.conv2d(x, weights[0])
        x = act(batch_norm(self.expand_bn, x, hidden))
        x = F.conv2d(x, weights[1], None, self.stride, kernel // 2, 1, hidden)
        x = act(batch_norm(self.depthwise_bn, x, hidden))
        if self.se is not None:
            scale = x.mean((2, 3), keepdim=True)
            scale = F.relu(F.conv2d(scale, weights[2], weights[3]))
            x = x * F.hardsigmoid(F.conv2d(scale, weights[4], weights[5]))
        x = F.conv2d(x, weights[-1])
        return batch_norm(self.project_bn, x, self.out_channels)

    @torch.no_grad()
    def reorganize_channels(self) -> None:
        """Sort hidden channels by the L1 norm of the projection weights that consume them (and the
        SE's squeeze channels by the L1 norm of the SE expand weights), most important first."""
        if self.se is not None:
            order = torch.argsort(self.se.expand.weight.abs().sum((0, 2, 3)), descending=True, stable=True)
            self.se.reduce.weight.copy_(self.se.reduce.weight[order])
            self.se.reduce.bias.copy_(self.se.reduce.bias[order])
            self.se.expand.weight.copy_(self.se.expand.weight[:, order])
        order = torch.argsort(self.project_conv.weight.abs().sum((0, 2, 3)), descending=True, stable=True)
        self.project_conv.weight.copy_(self.project_conv.weight[:, order])
        self.expand_conv.weight.copy_(self.expand_conv.weight[order])
        _permute_bn(self.expand_bn, order)
        self.depthwise.permute_channels(order)
        _permute_bn(self.depthwise_bn, order)
        if self.se is not None:
            self.se.reduce.weight.copy_(self.se.reduce.weight[:, order])
            self.se.expand.weight.copy_(self.se.expand.weight[order])
            self.se.expand.bias.copy_(self.se.expand.bias[order])

    @torch.no_grad()
    def to_static(self) -> MBConv:
        """A plain ``MBConv`` with copies of the active weights (transformed kernel baked in)."""
        hidden, squeeze, kernel = self._hidden, self._squeeze, self.active_kernel
        expand = conv_bn_act(self.in_channels, hidden, 1, act=self.act)
        expand[0].weight.copy_(self.expand_conv.weight[:hidden])
        expand[1] = _copy_bn(self.expand_bn, hidden)
        depthwise = conv_bn_act(hidden, hidden, kernel, self.stride, groups=hidden, act=self.act)
        depthwise[0].weight.copy_(self.depthwise.kernel(kernel, hidden))
        depthwise[1] = _copy_bn(self.depthwise_bn, hidden)
        se = None
        if self.se is not None:
            se = SqueezeExcite(hidden, squeeze)
            se.reduce.weight.copy_(self.se.reduce.weight[:squeeze, :hidden])
            se.reduce.bias.copy_(self.se.reduce.bias[:squeeze])
            se.expand.weight.copy_(self.se.expand.weight[:hidden, :squeeze])
            se.expand.bias.copy_(self.se.expand.bias[:hidden])
        project = conv_bn_act(hidden, self.out_channels, 1)
        project[0].weight.copy_(self.project_conv.weight[:, :hidden])
        project[1] = _copy_bn(self.project_bn, self.out_channels)
        for module in (expand, depthwise, se, project):
            if module is not None:
                module.train(self.training)
        return MBConv(expand, depthwise, se, project)


class ElasticBlock(nn.Module):
    """An OFAv2 block: elastic MBConv, plus (parallel supernets) the 1x1 and transformation branches."""

    def __init__(self, in_channels: int, out_channels: int, stride: int, act: str, use_se: bool,
                 kernel_choices: Sequence[int], expand_choices: Sequence[int], parallel: bool) -> None:
        super().__init__()
        self.mbconv = ElasticMBConv(in_channels, out_channels, stride, act, use_se, kernel_choices, expand_choices)
        self.conv1x1: nn.Module | None = None
        self.transform: nn.Module | None = None
        if parallel:
            self.conv1x1 = conv_bn_act(in_channels, out_channels, 1, stride, act=act)
            self.transform = transform_branch(in_channels, out_channels, stride, act)
        self.shapes_match = stride == 1 and in_channels == out_channels
        self.set_active(self.mbconv.kernel_choices[-1], self.mbconv.expand_choices[-1], 7 if parallel else 1)

    def set_active(self, kernel: int, expand: int, mask: int = 1) -> None:
        if self.conv1x1 is None and mask != 1:
            raise ValueError("a block without parallel branches only has the MBConv branch (mask 1)")
        self.mbconv.set_active(kernel, expand)
        self.active_mask = mask
        self.residual = self.shapes_match and bool(mask & MBCONV_BIT)
        self._branches = [
            branch for bit, branch in ((1, self.mbconv), (2, self.conv1x1), (4, self.transform)) if mask & bit
        ]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum_branches(self._branches, x, self.residual)

    def to_static(self) -> Block:
        branches: list[nn.Module] = []
        if self.active_mask & 1:
            branches.append(self.mbconv.to_static())
        if self.active_mask & 2:
            branches.append(copy.deepcopy(self.conv1x1))
        if self.active_mask & 4:
            branches.append(copy.deepcopy(self.transform))
        return Block(branches, self.residual)

