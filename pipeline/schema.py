"""The Parquet result schema, the objective and result types, and atomic Parquet I/O.

A leaf module: every stage writes and reads rows through it, and it imports nothing from the
pipeline's packages (only ``atomic`` and ``errors``).

One row per evaluated architecture, flat columns that pandas can plot directly:
``run_id, arch_id, arch, space, iteration, source, top1, params_m, macs_m, latency_ms@<profile>...,
predicted_top1, is_pareto, rank, status, error, evaluated_at`` (plus any genes or extra metrics).
The file's schema metadata carries the run's config and the objective directions under the key
``pipeline`` (JSON). Files are written to a temporary name in the same folder, flushed, then
moved into place with ``os.replace``, so a crash never leaves a half-written file.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

import pandas as pd
import pyarrow.parquet as pq

from pipeline.atomic import METADATA_KEY
from pipeline.errors import ResultsError

#: an architecture: a small JSON-serialisable value (see ``pipeline.space.base``)
Architecture = dict[str, Any]
Direction = Literal["min", "max"]
#: a profile's median latency column is ``LATENCY_PREFIX + <profile>`` (the one spelling of it)
LATENCY_PREFIX = "latency_ms@"
#: top-1 of a variant of the subnet: ``TOP1_PREFIX + exitK`` (an early exit) or ``+ <profile>`` (the
#: model an int8 hardware profile deploys, measured after quantisation)
TOP1_PREFIX = "top1@"


def deployed_top1_columns(columns: Sequence[str]) -> list[str]:
    """The ``top1@<profile>`` columns among ``columns`` (accuracy after quantisation), not the exits'."""
    return [c for c in columns if c.startswith(TOP1_PREFIX) and not re.fullmatch(r"exit\d+", c[len(TOP1_PREFIX):])]


@dataclass(frozen=True)
class Objective:
    """A named objective and whether it is minimised or maximised."""

    name: str
    direction: Direction

    def __post_init__(self) -> None:
        if self.direction not in ("min", "max"):
            raise ValueError(f"objective {self.name!r}: direction must be 'min' or 'max'")


@dataclass
class EvaluationResult:
    """One architecture's measured metrics, or the reason it failed."""

    arch: Architecture
    arch_id: str
    metrics: dict[str, float] = field(default_factory=dict)
    status: Literal["ok", "failed"] = "ok"
    error: str = ""
    #: text columns written beside the metrics (e.g. ``latency_node@<profile>``: where it was measured)
    details: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Provenance:
    """Where an evaluated row comes from: its search iteration, its source, and the surrogate's top-1 for it."""

    iteration: int = 0
    source: str = "search"
    predicted_top1: float | None = None


SOURCES = ("init", "search", "generator", "finetune", "cream")
LEADING_COLUMNS: tuple[str, ...] = (
    "run_id", "arch_id", "arch", "space", "iteration", "source", "top1", "params_m", "macs_m",
)
TRAILING_COLUMNS: tuple[str, ...] = (
    "predicted_top1", "is_pareto", "rank", "status", "error", "evaluated_at",
)


def utc_now() -> str:
    """ISO-8601 UTC timestamp used for ``evaluated_at``."""
    return datetime.now(UTC).isoformat(timespec="milliseconds")


def result_row(
    result: EvaluationResult,
    *,
    run_id: str,
    space: str,
    arch_text: str,
    iteration: int,
    source: str,
    predicted_top1: float | None = None,
) -> dict[str, Any]:
    """A result as a flat row of the schema (metrics become columns)."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    row: dict[str, Any] = {
        "run_id": run_id,
        "arch_id": result.arch_id,
        "arch": arch_text,
        "space": space,
        "iteration": int(iteration),
        "source": source,
        "predicted_top1": predicted_top1,
        "status": result.status,
        "error": result.error,
        "evaluated_at": utc_now(),
    }
    row.update({name: float(value) for name, value in result.metrics.items()})
    row.update(result.details)
    return row


def order_columns(frame: pd.DataFrame) -> pd.DataFrame:
    """Schema column order: leading columns, metrics and genes, then trailing columns."""
    leading = [c for c in LEADING_COLUMNS if c in frame.columns]
    trailing = [c for c in TRAILING_COLUMNS if c in frame.columns]
    middle = sorted(c for c in frame.columns if c not in leading and c not in trailing)
    return frame[leading + middle + trailing]


def objectives_metadata(objectives: Sequence[Objective]) -> list[dict[str, str]]:
    """Objective names and directions as stored in the file metadata."""
    return [{"name": o.name, "direction": o.direction} for o in objectives]


def read_parquet(path: str | Path) -> pd.DataFrame:
    """Read a result file; a missing or corrupt file is one clear ``ResultsError``."""
    path = Path(path)
    if not path.is_file():
        raise ResultsError(f"result file {path} does not exist")
    try:
        return pq.read_table(path).to_pandas()
    except Exception as exc:  # pyarrow raises several error types for corrupt files
        raise ResultsError(f"result file {path} is corrupt or not Parquet ({type(exc).__name__})") from None


def read_metadata(path: str | Path) -> dict[str, Any]:
    """The ``pipeline`` metadata (config, objectives) stored in a result file."""
    path = Path(path)
    try:
        schema = pq.read_schema(path)
    except Exception as exc:
        raise ResultsError(f"result file {path} is corrupt or not Parquet ({type(exc).__name__})") from None
    raw = (schema.metadata or {}).get(METADATA_KEY)
    return json.loads(raw) if raw else {}
