"""The OFAv2 supernet: MobileNetV3 layout, elastic stages, dense skips, parallel branches, exits.

Layout (widths are ``make_divisible(width * width_mult)``):

- stem: 3x3 conv, stride 2, 16 channels, BN, h-swish; then a fixed MBConv (expand 1, kernel 3,
  ReLU) with identity residual;
- five elastic stages of up to 4 ``ElasticBlock`` s (strides 2, 2, 2, 1, 2; ReLU, ReLU, h-swish,
  h-swish, h-swish; SE in stages 2, 4, 5); the first block of a stage changes stride and width;
- exit heads (``layers.ExitHead``, 6C and 8C channels for stage width C): one after every stage
  in early-exit supernets, only the last (the original 960/1280 head) otherwise.

``set_active(arch)`` validates an architecture of ``space`` and activates it; ``forward`` returns
the active exit's logits and ``forward_exits`` the logits of exits 1..active exit. The input's
resolution is the caller's business (``active_resolution`` records the architecture's).
``extract(arch, all_exits)`` returns a standalone ``layers.StaticSubnet`` with copies of exactly
the weights the subnet uses; see ``extract.py``.
"""

from __future__ import annotations

import torch
from torch import nn

from pipeline.space.base import Architecture
from pipeline.space.ofav2 import MAX_BLOCKS_PER_STAGE, NUM_STAGES, OFAv2Space
from pipeline.supernet.blocks import ElasticBlock
from pipeline.supernet.dynamic_ops import ElasticDepthwiseKernel, make_divisible
from pipeline.supernet.layers import Block, ExitHead, MBConv, conv_bn_act, run_stage

STEM_WIDTH = 16
STAGE_STRIDES = (2, 2, 2, 1, 2)
STAGE_ACTIVATIONS = ("relu", "relu", "hswish", "hswish", "hswish")
STAGE_SE = (False, True, False, True, True)
HEAD_EXPAND = 6
HEAD_FEATURES = 8


def _first_block(channels: int) -> Block:
    depthwise = conv_bn_act(channels, channels, 3, groups=channels, act="relu")
    return Block([MBConv(None, depthwise, None, conv_bn_act(channels, channels, 1))], residual=True)


class OFAv2Supernet(nn.Module):
    """The weight-sharing OFAv2 supernet of a space (its variant and choice lists)."""

    def __init__(self, space: OFAv2Space, num_classes: int, dropout: float = 0.1, seed: int | None = None) -> None:
        """``seed`` makes the weight initialisation reproducible (its own generator; the global RNG
        is neither read nor re-seeded then)."""
        super().__init__()
        if num_classes < 1:
            raise ValueError("num_classes must be positive")
        self.space = space
        self.num_classes = int(num_classes)
        self.dropout = float(dropout)
        stem_width = make_divisible(STEM_WIDTH * space.width_mult)
        self.stage_widths = tuple(make_divisible(w * space.width_mult) for w in space.stage_widths)
        self.stem = conv_bn_act(3, stem_width, 3, stride=2, act="hswish")
        self.first_block = _first_block(stem_width)
        stages = []
        in_channels = stem_width
        for stage in range(NUM_STAGES):
            width = self.stage_widths[stage]
            blocks = [
                ElasticBlock(
                    in_channels if slot == 0 else width, width, STAGE_STRIDES[stage] if slot == 0 else 1,
                    STAGE_ACTIVATIONS[stage], STAGE_SE[stage], space.kernel_choices, space.expand_choices,
                    space.parallel_blocks,
                )
                for slot in range(MAX_BLOCKS_PER_STAGE)
            ]
            stages.append(nn.ModuleList(blocks))
            in_channels = width
        self.stages = nn.ModuleList(stages)
        head_stages = range(NUM_STAGES) if space.early_exits else (NUM_STAGES - 1,)
        self.heads = nn.ModuleList(
            ExitHead(self.stage_widths[s], HEAD_EXPAND * self.stage_widths[s], HEAD_FEATURES * self.stage_widths[s],
                     self.num_classes, self.dropout)
            for s in head_stages
        )
        self._init_weights(None if seed is None else torch.Generator().manual_seed(int(seed)))
        self.set_active(space.largest())

    def _init_weights(self, generator: torch.Generator | None) -> None:
        """OFA's initialisation: He (fan-out) for convolutions, N(0, 0.01) for classifiers."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", generator=generator)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)
            elif isinstance(module, ElasticDepthwiseKernel):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", generator=generator)
            elif isinstance(module, nn.Linear):
                nn.init.normal_(module.weight, 0, 0.01, generator=generator)
                nn.init.zeros_(module.bias)

    # ------------------------------------------------------------------------ activation
    def set_active(self, arch: Architecture) -> Architecture:
        """Validate ``arch`` (``ArchitectureError`` naming the field) and run that subnet from now on.

        Returns the canonical architecture, also kept as ``active_arch``.
        """
        arch = self.space.validate(arch)
        branches = arch.get("branches")
        for stage in range(NUM_STAGES):
            for slot, block in enumerate(self.stages[stage]):
                index = stage * MAX_BLOCKS_PER_STAGE + slot
                mask = branches[index] if branches is not None else 1
                block.set_active(arch["kernels"][index], arch["expands"][index], mask)
        self.active_arch = arch
        self.active_resolution = arch["resolution"]
        self._num_stages = arch.get("exit", NUM_STAGES)
        self._active_stages = [
            list(self.stages[stage][: arch["depths"][stage]]) for stage in range(self._num_stages)
        ]
        return arch

    @property
    def active_exit(self) -> int:
        """The exit (1..5) that ``forward`` returns."""
        return self._num_stages

    def head(self, exit_number: int) -> ExitHead:
        """The head of exit ``exit_number`` (1..5); single-exit supernets only have exit 5."""
        if self.space.early_exits:
            return self.heads[exit_number - 1]
        if exit_number != NUM_STAGES:
            raise ValueError("a single-exit supernet only has exit 5")
        return self.heads[0]

    # ------------------------------------------------------------------------ forward
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.first_block(self.stem(x))
        dense = self.space.dense_skips
        for blocks in self._active_stages:
            x = run_stage(blocks, x, dense)
        return self.heads[-1 if not self.space.early_exits else self._num_stages - 1](x)

    def forward_exits(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Logits of exits 1..active exit (a single-exit supernet returns its one exit)."""
        if not self.space.early_exits:
            return [self.forward(x)]
        x = self.first_block(self.stem(x))
        dense = self.space.dense_skips
        outputs = []
        for blocks, head in zip(self._active_stages, self.heads):
            x = run_stage(blocks, x, dense)
            outputs.append(head(x))
        return outputs

    # ------------------------------------------------------------------------ width and extraction
    def reorganize_channels(self) -> None:
        """Importance-sort every elastic block's hidden channels (start of an expand phase).

        The full network's function is unchanged. Optimizer state (momentum) is not permuted, so
        build a new optimizer afterwards, as OFA does at the start of each phase.
        """
        for blocks in self.stages:
            for block in blocks:
                block.mbconv.reorganize_channels()

    def extract(self, arch: Architecture, all_exits: bool = False) -> nn.Module:
        """A standalone static subnet of ``arch``; ``all_exits`` returns every exit up to its exit."""
        from pipeline.supernet.extract import extract_subnet

        return extract_subnet(self, arch, all_exits)
