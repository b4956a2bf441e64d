"""The progressive-shrinking plan: which parts run, for how many steps, with which choices.

``build_plan`` turns ``TrainConfig.phases`` into a flat list of ``PartPlan`` for one supernet
variant: phases that do not apply are skipped (``level`` needs parallel blocks, ``height`` needs
early exits), and every part knows the allowed values of every elastic dimension. A dimension
becomes elastic at its phase and stays elastic afterwards with the choices of that phase's last
part; a dimension that is not elastic yet stays at its maximum.

Epoch arithmetic: a part runs ``max(1, round(epochs * epochs_scale * steps_per_epoch))``
optimiser steps, so fractional (scaled) epochs are allowed. Steps are grouped into "epochs" of
``steps_per_epoch`` steps (the last one may be shorter); an epoch is the unit of checkpointing,
evaluation and metrics. Warm-up is scaled the same way and is always shorter than its part.

Randomness: ``derive_seed(seed, *position)`` derives every random stream from the run seed and a
position (phase, part, epoch, step, purpose), so every rank draws the same subnets and a resumed
run draws exactly what an uninterrupted run would.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch

from pipeline.config import TrainConfig
from pipeline.errors import ConfigError
from pipeline.space.ofav2 import (
    NUM_STAGES,
    ElasticChoices,
    OFAv2Space,
)


def derive_seed(seed: int, *position: int) -> int:
    """A 63-bit seed that depends only on the run seed and the position tuple."""
    state = np.random.SeedSequence([seed, *position]).generate_state(2, dtype=np.uint32)
    return int((int(state[0]) << 31) ^ int(state[1])) & ((1 << 63) - 1)


def torch_generator(seed: int, *position: int) -> torch.Generator:
    return torch.Generator().manual_seed(derive_seed(seed, *position))


def numpy_generator(seed: int, *position: int) -> np.random.Generator:
    return np.random.default_rng(derive_seed(seed, *position))


@dataclass(frozen=True)
class PartPlan:
    phase: str
    phase_index: int
    part_index: int
    lr: float
    steps: int
    warmup_steps: int
    epochs: int  # number of checkpoint epochs (ceil(steps / steps_per_epoch))
    subnets_per_step: int
    choices: ElasticChoices
    first_epoch: int  # global index of this part's first epoch

    @property
    def label(self) -> str:
        return f"{self.phase}/{self.part_index + 1}"


_PHASE_FIELD = {"kernel": "kernels", "level": "branch_counts", "height": "exits",
                "depth": "depths", "expand": "expands"}


def applicable_phases(space: OFAv2Space) -> set[str]:
    phases = {"full", "kernel", "depth", "expand"}
    if space.parallel_blocks:
        phases.add("level")
    if space.early_exits:
        phases.add("height")
    return phases


def _space_values(phase: str, space: OFAv2Space) -> tuple[int, ...]:
    return {
        "kernel": tuple(space.kernel_choices),
        "level": (1, 2, 3),
        "height": tuple(range(1, NUM_STAGES + 1)),
        "depth": tuple(space.depth_choices),
        "expand": tuple(space.expand_choices),
    }[phase]


def build_plan(train: TrainConfig, space: OFAv2Space, steps_per_epoch: int) -> list[PartPlan]:
    """The flat list of parts this variant trains, with steps computed from ``steps_per_epoch``."""
    if steps_per_epoch < 1:
        raise ConfigError("train: an epoch must have at least one step (data set too small?)")
    applicable = applicable_phases(space)
    elastic: dict[str, tuple[int, ...]] = {}
    if train.init_from is not None:  # the source supernet trained them: unlisted phases are elastic throughout
        listed = {phase.name for phase in train.phases}
        for name in sorted(applicable - listed - {"full"}):
            elastic[_PHASE_FIELD[name]] = _space_values(name, space)
    plan: list[PartPlan] = []
    epoch = 0
    for phase_index, phase in enumerate(train.phases):
        if phase.name not in applicable:
            continue
        for part_index, part in enumerate(phase.parts):
            if phase.name == "full":
                if part.choices is not None:
                    raise ConfigError("train.phases: the 'full' phase has no elastic choices")
            else:
                space_values = _space_values(phase.name, space)
                allowed = space_values if part.choices is None else tuple(
                    sorted(set(part.choices) & set(space_values)))
                if not allowed:
                    raise ConfigError(
                        f"train.phases.{phase.name}[{part_index}].choices {part.choices} "
                        f"share nothing with the space's {list(space_values)}")
                elastic[_PHASE_FIELD[phase.name]] = allowed
            steps = max(1, round(part.epochs * train.epochs_scale * steps_per_epoch))
            warmup = min(steps - 1, round(part.warmup_epochs * train.epochs_scale * steps_per_epoch))
            epochs = math.ceil(steps / steps_per_epoch)
            plan.append(PartPlan(
                phase=phase.name, phase_index=phase_index, part_index=part_index, lr=part.lr,
                steps=steps, warmup_steps=max(0, warmup), epochs=epochs,
                subnets_per_step=1 if phase.name == "full" else part.subnets_per_step,
                choices=ElasticChoices(**({} if phase.name == "full" else elastic)), first_epoch=epoch,
            ))
            epoch += epochs
    return plan


def cosine_lr(step: int, steps: int, base_lr: float) -> float:
    """Cosine decay from ``base_lr`` at step 0 towards 0 at ``steps``."""
    return 0.5 * base_lr * (1.0 + math.cos(math.pi * step / max(1, steps)))


def lr_at(step: int, part: PartPlan, base_lr: float) -> float:
    """Linear warm-up to ``base_lr`` then cosine decay to 0 over the part (step is 0-based)."""
    if step < part.warmup_steps:
        return base_lr * (step + 1) / (part.warmup_steps + 1)
    return cosine_lr(step - part.warmup_steps, part.steps - part.warmup_steps, base_lr)
