"""Initialise a supernet from another one's tensors (``train.init_from``): OFAv2 grown on a trained base.

Tensors are matched by name and shape, with one translation: exit heads are matched by exit
number, not by position, since a single-exit supernet keeps its one head (exit 5) as ``heads.0``
while an early-exit supernet keeps exit ``n`` as ``heads.{n-1}``. So an ``SE_B`` supernet (for
example one imported from OFA) initialises the stem, the first block, every MBConv branch and the
exit-5 head of an ``EE_D`` / ``EE_DP`` supernet; its exit 1-4 heads and parallel branches start new.
Dense skips add no tensors, so they change the function, not the matching.

``match_tensors`` says what matches (and why the rest does not), ``initialise_from`` copies it;
``describe`` turns a match into the one-line-per-group summary the training job prints.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import torch

from pipeline.errors import ConfigError
from pipeline.space.ofav2 import NUM_STAGES
from pipeline.supernet.builder import SpaceSource, build_supernet
from pipeline.supernet.checkpoint import load_supernet
from pipeline.supernet.network import OFAv2Supernet

_HEAD_KEY = re.compile(r"^heads\.(\d+)\.(.*)$")
_BLOCK_KEY = re.compile(r"^stages\.\d+\.\d+\.(mbconv|conv1x1|transform)\.")
_BRANCH_NAMES = {"mbconv": "MBConv branches", "conv1x1": "1x1 convolution branches",
                 "transform": "transformation branches"}


def exit_keyed(name: str, early_exits: bool) -> str:
    """``name`` with its head index replaced by the exit number (``heads.0`` of a single-exit net is exit 5)."""
    match = _HEAD_KEY.match(name)
    if match is None:
        return name
    index, rest = int(match.group(1)), match.group(2)
    exit_number = index + 1 if early_exits else NUM_STAGES
    return f"exit{exit_number}.{rest}"


def group_of(name: str) -> str:
    """The part of the network a (exit-keyed) tensor belongs to, as the summary names it."""
    if name.startswith("exit"):
        return f"exit {name[4:name.index('.')]} head"
    block = _BLOCK_KEY.match(name)
    if block:
        return _BRANCH_NAMES[block.group(1)]
    return "stem and first block"


@dataclass
class TensorMatch:
    """Which of the target's tensors a source initialises, which start new, and why."""

    initialised: dict[str, str] = field(default_factory=dict)   # target key -> source key
    new: dict[str, str] = field(default_factory=dict)           # target key -> reason
    exit_keys: dict[str, str] = field(default_factory=dict)     # target key -> exit-keyed name

    def groups(self, keys: dict[str, str]) -> dict[str, list[str]]:
        """``keys`` (initialised or new) by the part of the network they belong to."""
        grouped: dict[str, list[str]] = {}
        for key in keys:
            grouped.setdefault(group_of(self.exit_keys[key]), []).append(key)
        return grouped


def match_tensors(target: OFAv2Supernet, source_state: dict[str, torch.Tensor], source_early_exits: bool
                  ) -> TensorMatch:
    """Match ``target``'s tensors to ``source_state``'s by exit-keyed name and shape."""
    by_name = {exit_keyed(k, source_early_exits): k for k in source_state}
    match = TensorMatch()
    for key, tensor in target.state_dict().items():
        wanted = exit_keyed(key, target.space.early_exits)
        match.exit_keys[key] = wanted
        source_key = by_name.get(wanted)
        if source_key is None:
            match.new[key] = "not in the source"
        elif tuple(source_state[source_key].shape) != tuple(tensor.shape):
            match.new[key] = f"shape {tuple(source_state[source_key].shape)} in the source, {tuple(tensor.shape)} here"
        else:
            match.initialised[key] = source_key
    return match


def initialise_from(target: OFAv2Supernet, path: str | Path) -> TensorMatch:
    """Copy every matching tensor of the checkpoint at ``path`` into ``target``; raise when none matches."""
    source, _ = load_supernet(path)
    source_state = source.state_dict()
    match = match_tensors(target, source_state, source.space.early_exits)
    own = target.state_dict()
    if not any(own[key].dim() >= 2 and ".transform_" not in key for key in match.initialised):
        # kernel matrices and BN counters have the same shape at any width: they alone are no match
        raise ConfigError(f"train.init_from {path}: no tensor's name and shape match the configured supernet "
                          f"({target.space.variant_name}); is it a supernet of other widths?")
    with torch.no_grad():
        for key, source_key in match.initialised.items():
            own[key].copy_(source_state[source_key])
    return match


def preview(section: SpaceSource, path: str | Path) -> list[str]:
    """Check ``path`` against the supernet ``section`` describes and summarise the match (``describe``).

    The driver runs this before training starts; the target is built with the source's classes
    (the data's class count is known on the workers only).
    """
    source, _ = load_supernet(path)
    return describe(initialise_from(build_supernet(section, source.num_classes, seed=0), path), path)


def describe(match: TensorMatch, path: str | Path) -> list[str]:
    """One line for what was initialised and one per group that starts new."""
    initialised = match.groups(match.initialised)
    lines = [f"init_from {path}: initialised {len(match.initialised)} tensors: "
             + ", ".join(f"{label} ({len(keys)})" for label, keys in initialised.items())]
    for label, keys in match.groups(match.new).items():
        lines.append(f"init_from: {label} start new ({len(keys)} tensors; {match.new[keys[0]]})")
    return lines
