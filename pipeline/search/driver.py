"""Runs one NATv2 search into a run directory: checks, archive sink, engine, history file.

``run_search`` is what ``jobs/search.py`` calls once it has built the space and the evaluator
(a ``TableEvaluator`` in benchmark mode, the actor-backed ``ofav2`` evaluator otherwise). It
refuses an impossible budget and a run directory that already holds a search (unless resuming)
before writing anything, then runs ``NATv2Engine`` with an in-process ``ArchiveStore`` unless a
sink (e.g. a client of the archive actor) is given, and writes ``search_history.parquet``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from pipeline.errors import BudgetError, ConfigError
from pipeline.evaluate.interface import Evaluator, Objective
from pipeline.run_dir import RunDir
from pipeline.schema import write_parquet_atomic
from pipeline.search.archive_store import ArchiveStore
from pipeline.search.natv2 import ArchiveSink, LatencyPredictor, NATv2Engine, NATv2Settings, SearchResult
from pipeline.space.base import Architecture


def history_frame(history: Sequence[dict[str, Any]]) -> pd.DataFrame:
    """The per-iteration log as flat columns (``surrogate_<objective>``, ``tau_<objective>``)."""
    rows = []
    for entry in history:
        row = {k: v for k, v in entry.items() if k != "surrogate"}
        for objective, choice in entry.get("surrogate", {}).items():
            row[f"surrogate_{objective}"] = choice["name"]
            row[f"tau_{objective}"] = choice["tau"]
        rows.append(row)
    return pd.DataFrame(rows)


def run_search(
    evaluator: Evaluator,
    objectives: Sequence[Objective],
    settings: NATv2Settings,
    run_dir: str | Path,
    *,
    seed: int,
    run_id: str,
    resume: bool = False,
    metadata: dict[str, Any] | None = None,
    sink: ArchiveSink | None = None,
    latency_predictors: Mapping[str, LatencyPredictor] | None = None,
    adapt: Callable[[list[Architecture]], None] | None = None,
    log: Callable[[str], None] | None = None,
    stop_after_iteration: int | None = None,
    on_start: Callable[[], None] | None = None,
) -> SearchResult:
    """Check inputs, run (or resume) the search in ``run_dir``, write the history; return the result."""
    run_dir = Path(run_dir)
    needed = settings.evaluations_for_initial()
    if needed > settings.max_evaluations:
        raise BudgetError(
            f"evaluation budget {settings.max_evaluations} is below the {needed} evaluations the initial archive "
            f"needs (initial archive {settings.initial_archive_size()} x pre-processing factor {settings.initial_factor})"
        )
    if settings.candidates() < 1:
        raise ConfigError("search.candidates_per_iteration must be at least 1")
    has_state = RunDir(run_dir).search_state.exists()
    if has_state and not resume:
        raise ConfigError(f"{run_dir} already holds a search; pass --resume to continue it or choose another --out")
    run_dir.mkdir(parents=True, exist_ok=True)
    if on_start is not None:  # e.g. write config.yaml, once the inputs are known to be good
        on_start()
    if sink is None:
        sink = ArchiveStore(run_dir, run_id=run_id, space=evaluator.space.name, objectives=objectives,
                            config=metadata or {})
    engine = NATv2Engine(
        evaluator.space, evaluator, objectives, sink, run_dir, settings, seed,
        run_id=run_id, latency_predictors=latency_predictors, adapt=adapt, log=log,
    )
    result = engine.run(resume=resume and has_state, stop_after_iteration=stop_after_iteration)
    write_parquet_atomic(history_frame(result.history), RunDir(run_dir).search_history, {"run_id": run_id})
    return result
