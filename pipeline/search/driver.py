"""Runs one NATv2 search into a run directory: ask -> evaluate -> tell, with the run's callbacks.

``SearchRunner`` is the one loop around ``NATv2Engine``: it asks for candidates, has the
``Evaluator`` measure them, tells the engine, and after every iteration calls the callbacks in
order: supernet adaptation (then the archive is asked again, re-measured and told), the log line,
the per-iteration front (``sink.write_front``) and the saved state (``search_state.json``), so a
stopped run resumes from its last completed iteration. Latency predictors that offer
``held_out_error()`` have it logged per iteration (``latency_pred_mape@<profile>``,
``latency_pred_within10@<profile>`` in ``search_history.parquet``).

Evaluators only return results; the runner persists them. Each measured result becomes one row
of the sink, with its candidate's ``Provenance`` (true iteration, source, predicted top-1) and the
engine's status rule (an objective without a value makes the row ``failed``), written in batches
of ``rows_per_write`` as the evaluator finishes them, or once per iteration without it
(``pipeline.evaluate.recording``).

``run_search`` is what ``jobs/search.py`` and the search stage call: it refuses an impossible
budget and a run directory that already holds a search (unless resuming) before writing anything,
then runs the search with an in-process ``ArchiveStore`` unless a sink is given, and writes
``search_history.parquet``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, Protocol

import pandas as pd

from pipeline.atomic import write_parquet_atomic
from pipeline.errors import BudgetError, ConfigError
from pipeline.evaluate.interface import EvaluationResult, Evaluator, Objective, Provenance, ResultSink
from pipeline.evaluate.recording import ResultRecorder
from pipeline.search.archive_store import ArchiveStore
from pipeline.search.engine_state import load_state_dict, save_state
from pipeline.search.files import SearchFiles
from pipeline.search.natv2 import Candidate, LatencyPredictor, NATv2Engine, NATv2Settings, SearchResult
from pipeline.space.base import Architecture


class ArchiveSink(ResultSink, Protocol):
    """Where evaluated rows go, and the fronts: ``ArchiveStore`` or a client of the archive actor."""

    def write_front(self, iteration: int) -> Any: ...

    def frame(self) -> pd.DataFrame: ...


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


def log_line(entry: Mapping[str, Any], max_evaluations: int) -> str:
    """One line per iteration: evaluations, hypervolume and the surrogates chosen."""
    surrogate = ", ".join(f"{o}: {c['name']} tau {c['tau']:.3f}" for o, c in entry.get("surrogate", {}).items())
    return (f"iteration {entry['iteration']}: {entry['evaluations']}/{max_evaluations} evaluations, "
            f"hypervolume {entry['hypervolume']:.4f}" + (f", surrogate {surrogate}" if surrogate else ""))


class SearchRunner:
    """ask -> evaluate -> tell for one engine, evaluator and sink, persisting into ``run_dir``."""

    def __init__(
        self,
        engine: NATv2Engine,
        evaluator: Evaluator,
        sink: ArchiveSink,
        run_dir: str | Path,
        *,
        run_id: str = "search",
        adapt: Callable[[list[Architecture]], None] | None = None,
        log: Callable[[str], None] | None = None,
        rows_per_write: int | None = None,
    ):
        self.engine, self.evaluator, self.sink = engine, evaluator, sink
        self.run_dir, self.run_id = Path(run_dir), run_id
        self.rows_per_write = rows_per_write
        self.adapt = adapt
        self.log = log or (lambda message: None)

    def run(self, resume: bool = False, stop_after_iteration: int | None = None) -> SearchResult:
        """Run to the termination; ``resume`` continues the saved state; ``stop_after_iteration`` pauses."""
        engine = self.engine
        saved = load_state_dict(self.run_dir) if resume else None
        if saved is not None:
            engine.load_state_dict(saved)
            self.log(f"resuming after iteration {engine.iteration} ({engine.state.evaluations} evaluations)")
        while not engine.done:
            if engine.started and stop_after_iteration is not None and engine.iteration >= stop_after_iteration:
                break
            self.step()
        return engine.result()

    def step(self) -> dict[str, Any]:
        """One iteration (the first builds the initial archive); returns its log entry."""
        engine = self.engine
        candidates = engine.ask()
        if not candidates and engine.started:
            self.log(f"iteration {engine.iteration + 1}: no unevaluated architecture left in the space; stopping")
        self._tell(candidates)
        if self.adapt is not None and engine.adaptation_due:
            self.adapt(engine.adaptation_archs())
            self._tell(engine.ask_reevaluation())
        entry = engine.history[-1]
        entry.update(self._predictor_errors())
        self.log(log_line(entry, engine.settings.max_evaluations))
        self.sink.write_front(engine.iteration)
        save_state(self.run_dir, engine.state_dict())
        return entry

    def _predictor_errors(self) -> dict[str, float]:
        """Each latency predictor's held-out error on what has been measured so far (where it offers one)."""
        errors: dict[str, float] = {}
        for predictor in self.engine.latency_predictors.values():
            if hasattr(predictor, "held_out_error"):
                errors.update(predictor.held_out_error())
        return errors

    def _tell(self, candidates: list[Candidate]) -> None:
        self.engine.tell(self._evaluate(candidates))

    def _evaluate(self, candidates: list[Candidate]) -> list[EvaluationResult]:
        """The candidates' results; each measured one persisted into the sink with its provenance."""
        if not candidates:
            return []
        recorder = ResultRecorder(
            self.sink, run_id=self.run_id, space=self.engine.space, status=self.engine.status,
            provenance={c.arch_id: Provenance(c.iteration, c.source, c.predicted.get("top1")) for c in candidates},
            batch_size=self.rows_per_write,
        )
        results = self.evaluator.evaluate_streaming([c.arch for c in candidates], recorder)
        recorder.flush()
        return results


def check_search_inputs(settings: NATv2Settings, run_dir: Path, resume: bool) -> bool:
    """Refuse an impossible budget or a run dir that already holds a search; whether there is a state."""
    needed = settings.evaluations_for_initial()
    if needed > settings.max_evaluations:
        raise BudgetError(
            f"evaluation budget {settings.max_evaluations} is below the {needed} evaluations the initial archive "
            f"needs (initial archive {settings.initial_archive_size()} x pre-processing factor {settings.initial_factor})"
        )
    if settings.candidates() < 1:
        raise ConfigError("search.candidates_per_iteration must be at least 1")
    has_state = SearchFiles(run_dir).state.exists()
    if has_state and not resume:
        raise ConfigError(f"{run_dir} already holds a search; pass --resume to continue it or choose another --out")
    return has_state


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
    rows_per_write: int | None = None,
) -> SearchResult:
    """Check inputs, run (or resume) the search in ``run_dir``, write the history; return the result."""
    run_dir = Path(run_dir)
    has_state = check_search_inputs(settings, run_dir, resume)
    run_dir.mkdir(parents=True, exist_ok=True)
    if on_start is not None:  # e.g. write config.yaml, once the inputs are known to be good
        on_start()
    if sink is None:
        sink = ArchiveStore(run_dir, run_id=run_id, space=evaluator.space.name, objectives=objectives,
                            config=metadata or {})
    engine = NATv2Engine(
        evaluator.space, objectives, settings, seed, cheap_metrics=evaluator.cheap_metrics,
        cheap_metric_names=evaluator.cheap_metric_names, latency_predictors=latency_predictors,
    )
    runner = SearchRunner(engine, evaluator, sink, run_dir, run_id=run_id, adapt=adapt, log=log,
                          rows_per_write=rows_per_write)
    result = runner.run(resume=resume and has_state, stop_after_iteration=stop_after_iteration)
    write_parquet_atomic(history_frame(result.history), SearchFiles(run_dir).history, {"run_id": run_id})
    return result
