"""The NATv2 engine's resumable state, saved atomically as JSON in the run directory.

The state is everything needed to continue a search exactly where it stopped: the iteration and
evaluation counters, the engine's ``numpy`` bit-generator state, every truly evaluated record
(architecture, metrics, provenance, whether its metrics are current), the constant-size archive's
membership, the fixed hypervolume normalisation and the per-iteration log. It is written after
initialisation and after every completed iteration (temporary file + ``os.replace``), so a crash
mid-iteration resumes from the last completed one and reproduces the same run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text_atomic
from pipeline.errors import CheckpointError
from pipeline.run_dir import RunDir

STATE_VERSION = 1


@dataclass
class EvaluatedRecord:
    """One truly evaluated architecture as the engine remembers it."""

    arch_id: str
    arch: dict[str, Any]
    metrics: dict[str, float]
    iteration: int
    source: str
    status: str = "ok"
    predicted: dict[str, float] = field(default_factory=dict)
    current: bool = True  # False once a supernet adaptation made the metrics stale


@dataclass
class EngineState:
    """Counters, RNG, records and archive membership of a search."""

    seed: int
    iteration: int = 0
    evaluations: int = 0
    reevaluations: int = 0
    rng_state: dict[str, Any] = field(default_factory=dict)
    records: dict[str, EvaluatedRecord] = field(default_factory=dict)
    archive_ids: list[str] = field(default_factory=list)
    hv_ideal: list[float] = field(default_factory=list)
    hv_nadir: list[float] = field(default_factory=list)
    history: list[dict[str, Any]] = field(default_factory=list)
    finished: bool = False

    def to_json(self) -> str:
        payload = asdict(self)
        payload["version"] = STATE_VERSION
        payload["records"] = [asdict(record) for record in self.records.values()]
        return json.dumps(payload, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> EngineState:
        payload = json.loads(text)
        if payload.pop("version", None) != STATE_VERSION:
            raise ValueError("unsupported state version")
        records = [EvaluatedRecord(**record) for record in payload.pop("records")]
        state = cls(**payload)
        state.records = {record.arch_id: record for record in records}
        return state


def save_state(run_dir: str | Path, state: EngineState) -> Path:
    """Write ``run_dir/search_state.json`` atomically."""
    return write_text_atomic(RunDir(run_dir).search_state, state.to_json())


def load_state(run_dir: str | Path) -> EngineState | None:
    """The saved state, ``None`` when there is none; a corrupt file is a ``CheckpointError``."""
    path = RunDir(run_dir).search_state
    if not path.is_file():
        return None
    try:
        return EngineState.from_json(path.read_text())
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"search state {path} is corrupt or from another version ({type(exc).__name__})") from None
