"""The training state a checkpoint holds, and its save/load to a checkpoint directory.

One file ``state.pt`` (written atomically) holds: the supernet's weights, the optimiser, the
position (plan part, epoch within the part, global epoch - the learning-rate schedule is a pure
function of the position, so the position *is* the scheduler state), the best weights of the
current phase (for the dynamic teacher), the teacher's source weights, the Cream board and meta
network, the metrics history, the global torch RNG state, and a fingerprint of the settings that
must not change on resume (variant, plan, world size, seed).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from pipeline.atomic import atomic_path
from pipeline.errors import CheckpointError

STATE_FILE = "state.pt"


@dataclass
class TrainState:
    part_index: int = 0          # index into the plan of the part to run next
    epoch_in_part: int = 0       # next epoch of that part
    global_epoch: int = 0        # epochs completed overall
    model: dict[str, torch.Tensor] | None = None
    optimizer: dict[str, Any] | None = None
    phase_best: dict[str, Any] | None = None   # {"phase", "top1", "state"}
    teacher_source: dict[str, Any] | None = None  # {"phase", "state"}
    board: dict[str, Any] | None = None
    meta: dict[str, Any] | None = None
    meta_optimizer: dict[str, Any] | None = None
    history: list[dict[str, Any]] = field(default_factory=list)
    torch_rng: torch.Tensor | None = None
    fingerprint: dict[str, Any] = field(default_factory=dict)


def save_state(state: TrainState, directory: Path) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    target = directory / STATE_FILE
    with atomic_path(target) as tmp:
        torch.save(state.__dict__, tmp)
    return target


def load_state(directory: Path, fingerprint: dict[str, Any]) -> TrainState:
    """Load a state and check it belongs to this run's settings."""
    path = Path(directory) / STATE_FILE
    try:
        raw = torch.load(path, map_location="cpu", weights_only=True)
        state = TrainState(**raw)
    except FileNotFoundError:
        raise CheckpointError(f"checkpoint {path} does not exist") from None
    except Exception as exc:  # noqa: BLE001 - any unreadable file is a corrupt checkpoint
        raise CheckpointError(f"checkpoint {path} is corrupt ({type(exc).__name__})") from None
    for key, value in fingerprint.items():
        if state.fingerprint.get(key) != value:
            raise CheckpointError(
                f"checkpoint {path} was written with a different '{key}' "
                f"({state.fingerprint.get(key)!r} != {value!r}); start without --resume")
    return state
