"""Static building blocks, made of plain ``nn.Conv2d``/``nn.BatchNorm2d``/activation modules.

These are what an extracted subnet is made of (so it exports to ONNX and fine-tunes like any
network), and the supernet uses them unchanged for its fixed parts: the stem, the first block,
the exit heads and the non-elastic parallel branches.

- ``conv_bn_act``: convolution, BN and an optional activation as an ``nn.Sequential``.
- ``SqueezeExcite``: MobileNetV3's SE (mean pool, 1x1 reduce + ReLU, 1x1 expand + h-sigmoid).
- ``MBConv``: inverted bottleneck (optional 1x1 expand, depthwise, optional SE, 1x1 project + BN).
- ``Block``: the sum of its branches, plus the identity residual when ``residual`` (the elastic
  block sets it only for an active MBConv branch whose stride is 1 and widths match).
- ``Stage``: blocks in sequence, or with OFAv2's long-range dense skips (see ``run_stage``).
- ``ExitHead``: 1x1 conv to 6C + BN + h-swish, pooling, 1x1 conv to 8C + h-swish, dropout, linear.
- ``StaticSubnet``: stem, first block, stages, and the head of the last stage (or several heads
  for an all-exit, multi-output network; ``single_exit`` is its deployed, last-exit network).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import nn

ACTIVATIONS: dict[str, Callable[[], nn.Module]] = {"relu": nn.ReLU, "hswish": nn.Hardswish}


def conv_bn_act(
    in_channels: int, out_channels: int, kernel: int, stride: int = 1, groups: int = 1, act: str | None = None
) -> nn.Sequential:
    """``Conv2d`` (no bias, 'same' padding) + ``BatchNorm2d`` (+ activation)."""
    layers: list[nn.Module] = [
        nn.Conv2d(in_channels, out_channels, kernel, stride, kernel // 2, groups=groups, bias=False),
        nn.BatchNorm2d(out_channels),
    ]
    if act is not None:
        layers.append(ACTIVATIONS[act]())
    return nn.Sequential(*layers)


class SqueezeExcite(nn.Module):
    """MobileNetV3 squeeze-and-excitation on ``channels`` with ``squeeze`` hidden channels."""

    def __init__(self, channels: int, squeeze: int) -> None:
        super().__init__()
        self.reduce = nn.Conv2d(channels, squeeze, 1, bias=True)
        self.expand = nn.Conv2d(squeeze, channels, 1, bias=True)
        self.relu = nn.ReLU()
        self.gate = nn.Hardsigmoid()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = x.mean((2, 3), keepdim=True)
        return x * self.gate(self.expand(self.relu(self.reduce(scale))))


class MBConv(nn.Module):
    """Inverted bottleneck; ``expand`` is None when the expand ratio is 1."""

    def __init__(
        self, expand: nn.Module | None, depthwise: nn.Module, se: nn.Module | None, project: nn.Module
    ) -> None:
        super().__init__()
        self.expand = expand
        self.depthwise = depthwise
        self.se = se
        self.project = project

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.expand is not None:
            x = self.expand(x)
        x = self.depthwise(x)
        if self.se is not None:
            x = self.se(x)
        return self.project(x)


def transform_branch(in_channels: int, out_channels: int, stride: int, act: str) -> nn.Sequential:
    """OFAv2's transformation branch: max-pool if strided, 1x1 conv if widths differ, BN, act."""
    layers: list[nn.Module] = []
    if stride > 1:
        layers.append(nn.MaxPool2d(3, stride, 1))
    if in_channels != out_channels:
        layers.append(nn.Conv2d(in_channels, out_channels, 1, bias=False))
    layers += [nn.BatchNorm2d(out_channels), ACTIVATIONS[act]()]
    return nn.Sequential(*layers)


def sum_branches(branches: Sequence[nn.Module], x: torch.Tensor, residual: bool) -> torch.Tensor:
    """The parallel-block rule: the sum of the branches' outputs, plus ``x`` when ``residual``."""
    out = None
    for branch in branches:
        y = branch(x)
        out = y if out is None else out + y
    return out + x if residual else out


class Block(nn.Module):
    """Sum of the branches' outputs, plus ``x`` when ``residual``."""

    def __init__(self, branches: Sequence[nn.Module], residual: bool) -> None:
        super().__init__()
        self.branches = nn.ModuleList(branches)
        self.residual = residual

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return sum_branches(self.branches, x, self.residual)


def dense_sum(outputs: Sequence[torch.Tensor]) -> torch.Tensor:
    """OFAv2's dense-skip sum over the stage's block outputs ``y_1 .. y_m`` so far.

    The main path's output ``y_m`` plus the long-range outputs ``y_1 .. y_(m-2)``; the block just
    before the main path, ``y_(m-1)``, is never added (the authors' ``get_input_tensor``).
    """
    total = outputs[-1]
    for earlier in outputs[: len(outputs) - 2]:
        total = total + earlier
    return total


def run_stage(blocks: Sequence[nn.Module], x: torch.Tensor, dense: bool) -> torch.Tensor:
    """Run blocks in sequence; with ``dense``, OFAv2's long-range dense skips.

    With ``y_j`` the output of block j (1-based) and m the main path's block, block j receives
    ``dense_sum(y_1 .. y_(j-1))`` = y_(j-1) (+ y_1 + ... + y_(j-3) when j >= 4) and the stage
    output is ``dense_sum(y_1 .. y_D)`` = y_D (+ y_1 + ... + y_(D-2) when D >= 3). The stage input
    y_0 never enters a sum (stride and width change there).
    """
    if not dense:
        for block in blocks:
            x = block(x)
        return x
    outputs: list[torch.Tensor] = []
    for block in blocks:
        outputs.append(block(dense_sum(outputs) if outputs else x))
    return dense_sum(outputs)


class Stage(nn.Module):
    """A stage of static blocks, optionally with dense skips."""

    def __init__(self, blocks: Sequence[nn.Module], dense: bool) -> None:
        super().__init__()
        self.blocks = nn.ModuleList(blocks)
        self.dense = dense

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return run_stage(self.blocks, x, self.dense)


class ExitHead(nn.Module):
    """An exit: 1x1 conv to ``6C`` + BN + h-swish, pool, 1x1 conv to ``8C`` + h-swish, dropout, linear."""

    def __init__(self, in_channels: int, expand_channels: int, feature_channels: int, num_classes: int,
                 dropout: float) -> None:
        super().__init__()
        self.expand = conv_bn_act(in_channels, expand_channels, 1, act="hswish")
        self.mix = nn.Conv2d(expand_channels, feature_channels, 1, bias=False)
        self.mix_act = nn.Hardswish()
        self.dropout = nn.Dropout(dropout)
        self.classifier = nn.Linear(feature_channels, num_classes)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.expand(x).mean((2, 3), keepdim=True)
        x = self.mix_act(self.mix(x)).flatten(1)
        return self.classifier(self.dropout(x))


class StaticSubnet(nn.Module):
    """A standalone subnet: stem, first block, stages, and exit heads.

    Single-output (``multi_output`` False): one head, after the last stage; forward returns a
    Tensor. Multi-output: ``heads[i]`` runs after stage ``head_stages[i]`` (0-based); forward
    returns a tuple of logits in stage order.
    """

    def __init__(self, stem: nn.Module, first_block: nn.Module, stages: Sequence[nn.Module],
                 heads: Sequence[nn.Module], head_stages: Sequence[int], multi_output: bool) -> None:
        super().__init__()
        if len(heads) != len(head_stages) or (not multi_output and list(head_stages) != [len(stages) - 1]):
            raise ValueError("StaticSubnet: one head per head stage; a single output comes from the last stage")
        self.stem = stem
        self.first_block = first_block
        self.stages = nn.ModuleList(stages)
        self.heads = nn.ModuleList(heads)
        self.head_stages = tuple(int(s) for s in head_stages)
        self.multi_output = multi_output

    def single_exit(self) -> StaticSubnet:
        """The network a subnet deploys: its own (last) exit only, sharing this module's weights.

        A multi-output module's other heads are for (joint) training; they do not belong to the
        chosen subnet, its ONNX graph or its costs.
        """
        if not self.multi_output:
            return self
        last = len(self.stages) - 1
        if self.head_stages[-1] != last:
            raise ValueError("the last head of a multi-output subnet must follow its last stage")
        single = StaticSubnet(self.stem, self.first_block, list(self.stages), [self.heads[-1]], [last], False)
        return single.train(self.training)

    def forward(self, x: torch.Tensor) -> torch.Tensor | tuple[torch.Tensor, ...]:
        x = self.first_block(self.stem(x))
        if not self.multi_output:
            for stage in self.stages:
                x = stage(x)
            return self.heads[0](x)
        outputs = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self.head_stages:
                outputs.append(self.heads[self.head_stages.index(index)](x))
        return tuple(outputs)
