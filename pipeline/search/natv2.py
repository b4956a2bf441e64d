"""The NATv2 search engine: archive, pre-processing, surrogates, surrogate search, subset selection.

The engine sees a ``SearchSpace``, an ``Evaluator`` and an archive sink (``upsert(rows)``,
``write_front(iteration)``, ``frame()``: ``ArchiveStore`` in-process, or a client of the archive
actor). It never sees a table or a supernet. One run:

1. initial archive: smallest + largest + ``space.sample_initial`` draws; pre-processing evaluates
   ``initial_factor`` x the initial size and keeps the initial size by survival (``survival.py``);
2. per iteration: refit one adaptive surrogate per predicted objective on every evaluated
   architecture whose metrics are current; cheap objectives come exactly from
   ``evaluator.cheap_metrics`` and latency objectives from ``latency_predictors``;
3. NSGA-II/III on the surrogate (``surrogate_search.py``), seeded with the archive;
4. K new candidates by subset selection (``selection.py``), truly evaluated;
5. NATv2 constant-size archive survival;
6. optional supernet adaptation hook ``adapt(archs)``, then re-evaluation of the archive (the
   other records become stale and leave the surrogates' training set);
7. hypervolume of the archive (normalised by the initial archive's ideal/nadir) is logged, the
   sink writes ``fronts/iter_NNN.parquet``, and the state is saved for ``resume``.

It stops at ``max_evaluations`` true evaluations or after ``iterations`` iterations. Budget =
number of distinct architectures truly evaluated; adaptation re-evaluations are counted apart.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pipeline.errors import BudgetError, ConfigError
from pipeline.evaluate.interface import EvaluationResult, Evaluator, Objective
from pipeline.schema import result_row
from pipeline.search.engine_state import EngineState, EvaluatedRecord, load_state, save_state
from pipeline.search.pareto import nondominated_ranks, normalized_hypervolume, to_minimization
from pipeline.search.selection import select_candidates
from pipeline.search.surrogate_search import search_surrogate
from pipeline.search.surrogates import AdaptiveSurrogate
from pipeline.search.survival import archive_survival, survive
from pipeline.space.base import Architecture, SearchSpace


class ArchiveSink(Protocol):
    """Where evaluated rows go: ``ArchiveStore`` or a client of the archive actor."""

    def upsert(self, rows: Sequence[dict[str, Any]]) -> Any: ...

    def write_front(self, iteration: int) -> Any: ...

    def frame(self) -> pd.DataFrame: ...


class LatencyPredictor(Protocol):
    def predict(self, archs: Sequence[Architecture]) -> np.ndarray: ...


@dataclass(frozen=True)
class NATv2Settings:
    """The engine's knobs; the defaults are the tuned ones (``jobs/bench_search.py``)."""

    max_evaluations: int = 300
    iterations: int | None = None  # None: run until the evaluation budget is spent
    archive_size: int = 300
    initial_size: int | None = None  # None: scaled with the budget (see ``initial_archive_size``)
    initial_fraction: float = 0.2
    min_initial_size: int = 10
    initial_factor: float = 1.0  # pre-processing: evaluate factor x initial size, keep initial size
    candidates_per_iteration: int | None = None  # None: max_evaluations / target_iterations in [5, 25]
    target_iterations: int = 30
    surrogates: tuple[str, ...] = ("lgbm", "gp", "ridge")
    ensemble_size: int = 0
    cv_folds: int = 5
    surrogate_population: int = 100
    surrogate_generations: int = 20
    adaptation_enabled: bool = False
    adaptation_archs: int = 150

    @classmethod
    def from_mapping(cls, values: Mapping[str, Any]) -> NATv2Settings:
        """Settings from a mapping (e.g. the ``search`` config section); unknown keys are ignored."""
        values = dict(values)
        adaptation = values.pop("adaptation", None) or {}
        if adaptation:
            values.setdefault("adaptation_enabled", adaptation.get("enabled", False))
            values.setdefault("adaptation_archs", adaptation.get("archs_sampled", cls.adaptation_archs))
        known = {f.name for f in fields(cls)}
        picked = {k: (tuple(v) if k == "surrogates" else v) for k, v in values.items() if k in known}
        return cls(**picked)

    def initial_archive_size(self) -> int:
        """Initial archive size: explicit, or ``initial_fraction`` x budget within [min, archive]."""
        if self.initial_size is not None:
            return self.initial_size
        scaled = round(self.initial_fraction * self.max_evaluations)
        return int(min(self.archive_size, max(self.min_initial_size, scaled)))

    def candidates(self) -> int:
        """K: explicit, or about ``target_iterations`` iterations' worth of the budget, within [5, 25]."""
        if self.candidates_per_iteration is not None:
            return self.candidates_per_iteration
        return int(min(25, max(5, round(self.max_evaluations / self.target_iterations))))

    def evaluations_for_initial(self) -> int:
        return int(math.ceil(self.initial_factor * self.initial_archive_size()))


@dataclass
class SearchResult:
    """What a finished (or stopped) run leaves: all records, the archive, the log."""

    records: list[EvaluatedRecord]
    archive_ids: list[str]
    history: list[dict[str, Any]]
    evaluations: int
    finished: bool


class NATv2Engine:
    """NATv2 on any space/evaluator pair; resumable from ``run_dir``."""

    def __init__(
        self,
        space: SearchSpace,
        evaluator: Evaluator,
        objectives: Sequence[Objective],
        sink: ArchiveSink,
        run_dir: str | Path,
        settings: NATv2Settings = NATv2Settings(),
        seed: int = 0,
        *,
        run_id: str = "search",
        latency_predictors: Mapping[str, LatencyPredictor] | None = None,
        adapt: Callable[[list[Architecture]], None] | None = None,
        log: Callable[[str], None] | None = None,
    ):
        if len(objectives) < 2:
            raise ConfigError("search needs at least two objectives")
        self.space, self.evaluator, self.sink = space, evaluator, sink
        self.objectives = list(objectives)
        self.run_dir = Path(run_dir)
        self.settings = settings
        self.seed = seed
        self.run_id = run_id
        self.latency_predictors = dict(latency_predictors or {})
        self.adapt = adapt
        self.log = log or (lambda message: None)
        self.upper = np.asarray(space.gene_upper_bounds(), dtype=np.int64)
        cheap = set(evaluator.cheap_metric_names)
        self.predicted = [o.name for o in self.objectives if o.name not in cheap and o.name not in self.latency_predictors]
        self.surrogates = {
            name: AdaptiveSurrogate(settings.surrogates, self.upper, settings.cv_folds, settings.ensemble_size)
            for name in self.predicted
        }
        self._cheap_cache: dict[str, dict[str, float]] = {}
        self.state = EngineState(seed=seed)
        self.rng = np.random.default_rng(seed)

    # -- public ------------------------------------------------------------------------------
    def run(self, resume: bool = False, stop_after_iteration: int | None = None) -> SearchResult:
        """Run to the budget; ``resume`` continues a saved state; ``stop_after_iteration`` pauses."""
        saved = load_state(self.run_dir) if resume else None
        if saved is not None:
            if saved.seed != self.seed:
                raise ConfigError(f"cannot resume: run dir was started with seed {saved.seed}, not {self.seed}")
            self.state = saved
            self.rng.bit_generator.state = saved.rng_state
            self.log(f"resuming after iteration {saved.iteration} ({saved.evaluations} evaluations)")
        else:
            self._initialise()
        while not self.state.finished:
            if stop_after_iteration is not None and self.state.iteration >= stop_after_iteration:
                break
            self._iterate()
        return SearchResult(
            records=list(self.state.records.values()), archive_ids=list(self.state.archive_ids),
            history=list(self.state.history), evaluations=self.state.evaluations, finished=self.state.finished,
        )

    def archive_archs(self) -> list[Architecture]:
        return [self.state.records[i].arch for i in self.state.archive_ids]

    # -- steps -------------------------------------------------------------------------------
    def _initialise(self) -> None:
        settings = self.settings
        size, needed = settings.initial_archive_size(), settings.evaluations_for_initial()
        if needed > settings.max_evaluations:
            raise BudgetError(
                f"evaluation budget {settings.max_evaluations} is below the {needed} evaluations the initial archive needs"
            )
        archs = self._unique([self.space.smallest(), self.space.largest()], needed, self.space.sample_initial)
        self._evaluate(archs, iteration=0, source="init")
        ok = [i for i in self.state.records if self.state.records[i].status == "ok"]
        kept = survive(self._minimized(ok), size, seed=int(self.rng.integers(2**31 - 1)))
        self.state.archive_ids = [ok[i] for i in kept]
        values = self._minimized(self.state.archive_ids)
        values = values[nondominated_ranks(values) == 0]  # normalise by the initial front, as DESIGN.md does
        self.state.hv_ideal, self.state.hv_nadir = values.min(axis=0).tolist(), values.max(axis=0).tolist()
        self._finish_iteration({"surrogate": {}})

    def _iterate(self) -> None:
        state, settings = self.state, self.settings
        state.iteration += 1
        k = min(settings.candidates(), settings.max_evaluations - state.evaluations)
        choices = self._fit_surrogates()
        archs, predicted = self._propose(k)
        if not archs:  # every architecture the space can give has been evaluated: nothing left to search
            self.log(f"iteration {state.iteration}: no unevaluated architecture left in the space; stopping")
            self._finish_iteration({"surrogate": choices}, exhausted=True)
            return
        self._evaluate(archs, iteration=state.iteration, source="search", predicted=predicted)
        new_ok = [self.space.arch_id(a) for a in archs if state.records[self.space.arch_id(a)].status == "ok"]
        keep_old, keep_new = archive_survival(
            self._minimized(state.archive_ids), self._minimized(new_ok), settings.archive_size,
            seed=int(self.rng.integers(2**31 - 1)),
        )
        state.archive_ids = [i for i, keep in zip(state.archive_ids, keep_old) if keep] + [
            i for i, keep in zip(new_ok, keep_new) if keep
        ]
        if settings.adaptation_enabled and self.adapt is not None:
            self._adapt()
        self._finish_iteration({"surrogate": choices})

    def _finish_iteration(self, extra: dict[str, Any], exhausted: bool = False) -> None:
        state, settings = self.state, self.settings
        hv = normalized_hypervolume(
            self._minimized(state.archive_ids), np.array(state.hv_ideal), np.array(state.hv_nadir)
        )
        entry = {"iteration": state.iteration, "evaluations": state.evaluations, "hypervolume": hv,
                 "archive_size": len(state.archive_ids), **extra}
        state.history.append(entry)
        surrogate = ", ".join(f"{o}: {c['name']} tau {c['tau']:.3f}" for o, c in extra["surrogate"].items())
        self.log(f"iteration {state.iteration}: {state.evaluations}/{settings.max_evaluations} evaluations, "
                 f"hypervolume {hv:.4f}" + (f", surrogate {surrogate}" if surrogate else ""))
        self.sink.write_front(state.iteration)
        budget_spent = state.evaluations >= settings.max_evaluations
        out_of_iterations = settings.iterations is not None and state.iteration >= settings.iterations
        state.finished = budget_spent or out_of_iterations or exhausted
        state.rng_state = self.rng.bit_generator.state
        save_state(self.run_dir, state)

    # -- surrogates and proposals ------------------------------------------------------------
    def _fit_surrogates(self) -> dict[str, dict[str, Any]]:
        usable = [r for r in self.state.records.values() if r.status == "ok" and r.current]
        genes = np.array([self.space.encode(r.arch) for r in usable])
        choices = {}
        for name, surrogate in self.surrogates.items():
            targets = np.array([r.metrics[name] for r in usable], dtype=float)
            choice = surrogate.fit(genes, targets, seed=int(self.rng.integers(2**31 - 1)))
            choices[name] = {"name": choice.name, "tau": choice.taus[choice.name]}
        return choices

    def _objective_values(self, archs: Sequence[Architecture], genes: np.ndarray) -> np.ndarray:
        """Objective values (natural orientation) from surrogates, exact cheap metrics, predictors."""
        columns = []
        for objective in self.objectives:
            if objective.name in self.surrogates:
                columns.append(self.surrogates[objective.name].predict(genes))
            elif objective.name in self.latency_predictors:
                columns.append(np.asarray(self.latency_predictors[objective.name].predict(list(archs)), dtype=float))
            else:
                columns.append(np.array([self._cheap(a)[objective.name] for a in archs], dtype=float))
        return np.column_stack(columns)

    def _cheap(self, arch: Architecture) -> dict[str, float]:
        key = self.space.arch_id(arch)
        if key not in self._cheap_cache:
            self._cheap_cache[key] = self.evaluator.cheap_metrics(arch)
        return self._cheap_cache[key]

    def _surrogate_fn(self, genes: np.ndarray) -> np.ndarray:
        archs = [self.space.decode(g) for g in genes]
        canonical = np.array([self.space.encode(a) for a in archs])
        return to_minimization(self._objective_values(archs, canonical), self.objectives)

    def _propose(self, k: int) -> tuple[list[Architecture], list[dict[str, float]]]:
        state, settings = self.state, self.settings
        order = np.argsort(nondominated_ranks(self._minimized(state.archive_ids)), kind="stable")
        seeds = np.array([self.space.encode(state.records[state.archive_ids[i]].arch) for i in order])
        exclude = {tuple(int(g) for g in self.space.encode(r.arch)) for r in state.records.values()}
        genes, _ = search_surrogate(
            self._surrogate_fn, self.upper, len(self.objectives), seeds, exclude,
            settings.surrogate_population, settings.surrogate_generations, self.rng,
        )
        archs = self._unique([], 0, None, [self.space.decode(g) for g in genes])
        if len(archs) < k:  # the surrogate search found too few new architectures: top up at random
            archs = self._unique(archs, k, self.space.sample, [])
        if not archs:
            return [], []
        genes = np.array([self.space.encode(a) for a in archs])
        values = self._objective_values(archs, genes)
        chosen = select_candidates(to_minimization(values, self.objectives), k, self._minimized(self._current_ok()))
        names = [o.name for o in self.objectives]
        predicted = [{n: float(values[i, j]) for j, n in enumerate(names) if n in self.surrogates} for i in chosen]
        return [archs[i] for i in chosen], predicted

    def _unique(
        self,
        archs: list[Architecture],
        target: int,
        sampler: Callable[[np.random.Generator], Architecture] | None,
        extra: Sequence[Architecture] = (),
    ) -> list[Architecture]:
        """``archs`` + ``extra`` + sampled architectures, unique and not yet evaluated, up to ``target``."""
        seen = set(self.state.records)
        result: list[Architecture] = []
        for arch in [*archs, *extra]:
            key = self.space.arch_id(arch)
            if key not in seen:
                seen.add(key)
                result.append(self.space.canonical(arch))
        attempts = 0
        while sampler is not None and len(result) < target and attempts < 100 * max(target, 1):
            attempts += 1
            arch = sampler(self.rng)
            key = self.space.arch_id(arch)
            if key not in seen:
                seen.add(key)
                result.append(self.space.canonical(arch))
        return result

    # -- evaluation, adaptation --------------------------------------------------------------
    def _evaluate(
        self, archs: list[Architecture], iteration: int, source: str, predicted: Sequence[dict[str, float]] = ()
    ) -> None:
        if not archs:
            return
        results = self.evaluator.evaluate(archs)
        self.state.evaluations += len(results)
        predicted = list(predicted) or [{} for _ in results]
        for result, guess in zip(results, predicted):
            self.state.records[result.arch_id] = EvaluatedRecord(
                arch_id=result.arch_id, arch=result.arch, metrics=dict(result.metrics), iteration=iteration,
                source=source, status=self._status(result), predicted=guess,
            )
        self.sink.upsert([self._row(r) for r in results])

    def _status(self, result: EvaluationResult) -> str:
        missing = [o.name for o in self.objectives if o.name not in result.metrics]
        return "failed" if result.status != "ok" or missing else "ok"

    def _row(self, result: EvaluationResult) -> dict[str, Any]:
        record = self.state.records[result.arch_id]
        row = result_row(
            result, run_id=self.run_id, space=self.space.name, arch_text=self.space.to_text(result.arch),
            iteration=record.iteration, source=record.source, predicted_top1=record.predicted.get("top1"),
        )
        if record.status == "failed" and result.status == "ok":
            row.update(status="failed", error="evaluator returned no value for an objective")
        return row

    def _adapt(self) -> None:
        """Adaptation hook, then re-evaluation of the archive; other records become stale."""
        state = self.state
        order = np.argsort(nondominated_ranks(self._minimized(state.archive_ids)), kind="stable")
        best = [state.records[state.archive_ids[i]].arch for i in order[: self.settings.adaptation_archs]]
        self.adapt(best)
        archive = [state.records[i] for i in state.archive_ids]
        results = self.evaluator.evaluate([r.arch for r in archive])
        state.reevaluations += len(results)
        for record in state.records.values():
            record.current = False
        for record, result in zip(archive, results):
            record.metrics, record.status, record.current = dict(result.metrics), self._status(result), True
        self.sink.upsert([self._row(r) for r in results])
        state.archive_ids = [i for i in state.archive_ids if state.records[i].status == "ok"]

    def _current_ok(self) -> list[str]:
        return [i for i, r in self.state.records.items() if r.status == "ok" and r.current]

    def _minimized(self, ids: Sequence[str]) -> np.ndarray:
        names = [o.name for o in self.objectives]
        values = np.array([[self.state.records[i].metrics[n] for n in names] for i in ids], dtype=float)
        return to_minimization(values.reshape(len(ids), len(names)), self.objectives)
