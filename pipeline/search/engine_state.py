"""The NATv2 engine's resumable state, saved atomically as JSON in the run directory.

The state is everything needed to continue a search exactly where it stopped: the iteration and
evaluation counters, the engine's ``numpy`` bit-generator state, every truly evaluated record
(architecture, metrics, provenance, whether its metrics are current), the constant-size archive's
membership, the fixed hypervolume normalisation, the per-iteration log and the candidates of an
``ask`` not yet told. ``NATv2Engine.state_dict()`` returns it as a JSON-ready dict; the driver
writes it after initialisation and after every completed iteration (temporary file +
``os.replace``), so a crash mid-iteration resumes from the last completed one and reproduces the
same run.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from pipeline.atomic import write_text_atomic
from pipeline.errors import CheckpointError
from pipeline.search.files import SearchFiles

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
    exhausted: bool = False  # the space had no unevaluated architecture left to propose
    pending: dict[str, Any] = field(default_factory=dict)  # the last ask, until it is told

    def to_dict(self) -> dict[str, Any]:
        payload = asdict(self)
        payload["version"] = STATE_VERSION
        payload["records"] = [asdict(record) for record in self.records.values()]
        return json.loads(json.dumps(payload))  # JSON types only (tuples become lists)

    @classmethod
    def from_dict(cls, payload: dict[str, Any]) -> EngineState:
        payload = dict(payload)
        if payload.pop("version", None) != STATE_VERSION:
            raise ValueError("unsupported state version")
        records = [EvaluatedRecord(**record) for record in payload.pop("records")]
        state = cls(**payload)
        state.records = {record.arch_id: record for record in records}
        return state


def save_state(run_dir: str | Path, state: dict[str, Any]) -> Path:
    """Write a ``state_dict`` to ``run_dir/search_state.json`` atomically."""
    return write_text_atomic(SearchFiles(run_dir).state, json.dumps(state, sort_keys=True))


def load_state_dict(run_dir: str | Path) -> dict[str, Any] | None:
    """The saved ``state_dict``, ``None`` when there is none; a corrupt file is a ``CheckpointError``."""
    path = SearchFiles(run_dir).state
    if not path.is_file():
        return None
    try:
        payload = json.loads(path.read_text())
        EngineState.from_dict(payload)  # checks it is whole and of this version
        return payload
    except (ValueError, TypeError, KeyError) as exc:
        raise CheckpointError(f"search state {path} is corrupt or from another version ({type(exc).__name__})") from None


def load_state(run_dir: str | Path) -> EngineState | None:
    """The saved state as an ``EngineState`` (for inspection), ``None`` when there is none."""
    payload = load_state_dict(run_dir)
    return None if payload is None else EngineState.from_dict(payload)
