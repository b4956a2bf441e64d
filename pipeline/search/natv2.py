"""The NATv2 search engine, ask/tell in pymoo's manner: it proposes and learns, it never evaluates.

The engine sees a ``SearchSpace``, the objectives, the exact cheap metrics (``cheap_metrics``:
params, MACs, a table's costs) and optional latency predictors. It never sees an evaluator, a
table, a supernet or a file. One search, as a caller drives it (``driver.py`` does exactly this):

1. ``ask()`` first returns the initial archive: smallest + largest + ``space.sample_initial``
   draws, ``initial_factor`` x the initial size (pre-processing); ``tell(results)`` keeps the
   initial size by survival (``survival.py``; the smallest and the largest always stay) and fixes
   the hypervolume normalisation;
2. each later ``ask()`` refits one adaptive surrogate per predicted objective on every evaluated
   architecture whose metrics are current, runs NSGA-II/III on the surrogate
   (``surrogate_search.py``) seeded with the archive, and returns K new candidates by subset
   selection (``selection.py``) with their predicted objectives; ``tell`` runs NATv2's
   constant-size archive survival and logs the archive's hypervolume;
3. after a supernet adaptation, ``ask_reevaluation()`` returns the archive to re-measure and
   ``tell`` marks every other record stale (it leaves the surrogates' training set).

``done`` asks the termination (``termination.py``; default: the evaluation budget, an optional
iteration cap, or an exhausted space). ``state_dict()`` / ``load_state_dict()`` hold everything,
the random generator and an untold ask included, so a restored engine continues the same run.
Budget = number of distinct architectures truly evaluated; re-evaluations are counted apart.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Protocol

import numpy as np

from pipeline.errors import BudgetError, ConfigError
from pipeline.evaluate.interface import EvaluationResult, Objective
from pipeline.search.engine_state import EngineState, EvaluatedRecord
from pipeline.search.pareto import nondominated_ranks, normalized_hypervolume, to_minimization
from pipeline.search.selection import hypervolume_greedy, select_candidates
from pipeline.search.settings import NATv2Settings
from pipeline.search.surrogate_search import search_surrogate
from pipeline.search.surrogates import AdaptiveSurrogate
from pipeline.search.survival import archive_survival, survive
from pipeline.search.termination import Progress, Termination, default_termination
from pipeline.space.base import Architecture, SearchSpace

__all__ = ["Candidate", "LatencyPredictor", "NATv2Engine", "NATv2Settings", "SearchResult"]

INIT, SEARCH, REEVALUATE = "init", "search", "reevaluate"


class LatencyPredictor(Protocol):
    def predict(self, archs: Sequence[Architecture]) -> np.ndarray: ...


@dataclass(frozen=True)
class Candidate:
    """One architecture to evaluate, with its provenance and the surrogates' predictions."""

    arch: Architecture
    arch_id: str
    iteration: int
    source: str  # "init" or "search": where the architecture came from
    predicted: dict[str, float] = field(default_factory=dict)


@dataclass
class SearchResult:
    """What a finished (or stopped) run leaves: all records, the archive, the log."""

    records: list[EvaluatedRecord]
    archive_ids: list[str]
    history: list[dict[str, Any]]
    evaluations: int
    finished: bool


class NATv2Engine:
    """NATv2 on any space, driven by ``ask`` / ``tell``.

    ``settings`` come from the ``search`` section (``NATv2Settings.from_config``); their
    keyword-only ``experiments`` are the benchmark's experimental options, off by default.
    """

    def __init__(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        settings: NATv2Settings | None = None,
        seed: int = 0,
        *,
        cheap_metrics: Callable[[Architecture], Mapping[str, float]] | None = None,
        cheap_metric_names: Sequence[str] = (),
        latency_predictors: Mapping[str, LatencyPredictor] | None = None,
        termination: Termination | None = None,
    ):
        if len(objectives) < 2:
            raise ConfigError("search needs at least two objectives")
        settings = settings or NATv2Settings()
        self.space, self.objectives, self.settings, self.seed = space, list(objectives), settings, seed
        self.cheap_metrics = cheap_metrics or (lambda arch: {})
        self.latency_predictors = dict(latency_predictors or {})
        self.termination = termination or default_termination(settings.max_evaluations, settings.iterations)
        self.upper = np.asarray(space.gene_upper_bounds(), dtype=np.int64)
        cheap = set(cheap_metric_names)
        self.predicted = [o.name for o in self.objectives if o.name not in cheap and o.name not in self.latency_predictors]
        self.surrogates = self._surrogate_bank_of(settings.surrogates)
        # experimental small-archive phase (``settings.experiments.early_rows``): a second bank, only when asked
        self.early_surrogates = (self._surrogate_bank_of(settings.experiments.early_surrogates)
                                 if settings.experiments.early_rows > 0 else {})
        self._cheap_cache: dict[str, dict[str, float]] = {}
        self._ends = {space.arch_id(space.smallest()), space.arch_id(space.largest())}
        self.state = EngineState(seed=seed)
        self.rng = np.random.default_rng(seed)

    # -- progress ----------------------------------------------------------------------------
    @property
    def progress(self) -> Progress:
        return Progress(self.state.evaluations, self.state.iteration, self.state.exhausted)

    @property
    def started(self) -> bool:
        """Whether the initial archive has been told."""
        return bool(self.state.history)

    @property
    def done(self) -> bool:
        return self.started and not self.state.pending and self.termination.done(self.progress)

    @property
    def iteration(self) -> int:
        """The last completed iteration (0: the initial archive)."""
        return self.state.iteration

    @property
    def history(self) -> list[dict[str, Any]]:
        return self.state.history

    def record(self, arch_id: str) -> EvaluatedRecord:
        return self.state.records[arch_id]

    def result(self) -> SearchResult:
        state = self.state
        return SearchResult(records=list(state.records.values()), archive_ids=list(state.archive_ids),
                            history=list(state.history), evaluations=state.evaluations, finished=self.done)

    # -- ask ---------------------------------------------------------------------------------
    def ask(self) -> list[Candidate]:
        """The next candidates to evaluate truly: the initial archive first, then K per iteration.

        An empty list means the space has nothing unevaluated left; ``tell([])`` records that."""
        if self.state.pending:
            raise RuntimeError("tell the results of the last ask before asking again")
        if self.done:
            raise RuntimeError("the search is finished")
        if not self.started:
            return self._pend(INIT, self._initial_candidates())
        left = self.termination.evaluations_left(self.progress)
        k = self.settings.candidates() if left is None else min(self.settings.candidates(), left)
        choices = self._fit_surrogates()
        archs, predicted = self._propose(k)
        candidates = [Candidate(a, self.space.arch_id(a), self.iteration + 1, SEARCH, p) for a, p in zip(archs, predicted)]
        return self._pend(SEARCH, candidates, surrogate=choices)

    def adaptation_archs(self) -> list[Architecture]:
        """The archive's best (by non-dominated rank), ``adaptation_archs`` of them, to adapt on."""
        order = np.argsort(nondominated_ranks(self._minimized(self.state.archive_ids)), kind="stable")
        return [self.state.records[self.state.archive_ids[i]].arch for i in order[: self.settings.adaptation_archs]]

    @property
    def adaptation_due(self) -> bool:
        """After a search iteration with candidates, until its archive has been re-evaluated."""
        last = self.state.history[-1] if self.state.history else {}
        return (self.settings.adaptation_enabled and last.get("iteration", 0) > 0 and not self.state.exhausted
                and "reevaluations" not in last and not self.state.pending)

    def ask_reevaluation(self) -> list[Candidate]:
        """The archive, to re-measure once the supernet's weights changed (each with its provenance)."""
        if self.state.pending:
            raise RuntimeError("tell the results of the last ask before asking again")
        records = [self.state.records[i] for i in self.state.archive_ids]
        return self._pend(REEVALUATE, [Candidate(r.arch, r.arch_id, r.iteration, r.source, dict(r.predicted))
                                       for r in records])

    def _pend(self, phase: str, candidates: list[Candidate], **extra: Any) -> list[Candidate]:
        self.state.pending = {"phase": phase, "candidates": [asdict(c) for c in candidates], **extra}
        return candidates

    def _initial_candidates(self) -> list[Candidate]:
        settings = self.settings
        needed = settings.evaluations_for_initial()
        left = self.termination.evaluations_left(self.progress)
        if left is not None and needed > left:
            raise BudgetError(f"evaluation budget {left} is below the {needed} evaluations the initial archive needs")
        archs = self._unique([self.space.smallest(), self.space.largest()], needed, self.space.sample_initial)
        return [Candidate(a, self.space.arch_id(a), 0, INIT) for a in archs]

    # -- tell --------------------------------------------------------------------------------
    def tell(self, results: Sequence[EvaluationResult]) -> dict[str, Any]:
        """Take the true results of the last ask (one per candidate); returns the iteration's log entry."""
        pending, state = self.state.pending, self.state
        if not pending:
            raise RuntimeError("tell without an ask")
        candidates = [Candidate(**c) for c in pending["candidates"]]
        by_id = {r.arch_id: r for r in results}
        if set(by_id) != {c.arch_id for c in candidates} or len(results) != len(candidates):
            raise ValueError(f"tell expects one result per asked candidate ({len(candidates)}), got {len(results)}")
        state.pending = {}
        if pending["phase"] == REEVALUATE:
            return self._tell_reevaluation([by_id[c.arch_id] for c in candidates])
        for c in candidates:
            result = by_id[c.arch_id]
            state.records[c.arch_id] = EvaluatedRecord(
                arch_id=c.arch_id, arch=result.arch, metrics=dict(result.metrics), iteration=c.iteration,
                source=c.source, status=self.status(result), predicted=dict(c.predicted),
            )
        state.evaluations += len(candidates)
        if pending["phase"] == INIT:
            self._survive_initial()
            return self._close_iteration({"surrogate": {}})
        state.iteration += 1
        if not candidates:
            state.exhausted = True
        else:
            self._survive([c.arch_id for c in candidates if state.records[c.arch_id].status == "ok"])
        return self._close_iteration({"surrogate": pending["surrogate"]})

    def status(self, result: EvaluationResult) -> str:
        """``ok`` only when the evaluator succeeded and gave a value for every objective."""
        missing = [o.name for o in self.objectives if o.name not in result.metrics]
        return "failed" if result.status != "ok" or missing else "ok"

    def _survive_initial(self) -> None:
        state = self.state
        ok = [i for i in state.records if state.records[i].status == "ok"]
        kept = survive(self._minimized(ok), self.settings.initial_archive_size(), seed=int(self.rng.integers(2**31 - 1)),
                       pinned=self._pinned(ok))
        state.archive_ids = [ok[i] for i in kept]
        values = self._minimized(state.archive_ids)
        values = values[nondominated_ranks(values) == 0]  # normalise by the initial front (docs/methods.md, "Budget and hypervolume")
        state.hv_ideal, state.hv_nadir = values.min(axis=0).tolist(), values.max(axis=0).tolist()

    def _survive(self, new_ok: list[str]) -> None:
        state = self.state
        keep_old, keep_new = archive_survival(
            self._minimized(state.archive_ids), self._minimized(new_ok), self.settings.archive_size,
            seed=int(self.rng.integers(2**31 - 1)), pinned=self._pinned([*state.archive_ids, *new_ok]),
        )
        state.archive_ids = [i for i, keep in zip(state.archive_ids, keep_old) if keep] + [
            i for i, keep in zip(new_ok, keep_new) if keep
        ]

    def _pinned(self, ids: Sequence[str]) -> np.ndarray:
        """The smallest and the largest architectures never leave the archive (NATv2 adds them)."""
        return np.array([i in self._ends for i in ids], dtype=bool)

    def _tell_reevaluation(self, results: list[EvaluationResult]) -> dict[str, Any]:
        state = self.state
        state.reevaluations += len(results)
        for record in state.records.values():
            record.current = False
        for result in results:
            record = state.records[result.arch_id]
            record.metrics, record.status, record.current = dict(result.metrics), self.status(result), True
        state.archive_ids = [i for i in state.archive_ids if state.records[i].status == "ok"]
        entry = state.history[-1]
        entry.update(hypervolume=self._hypervolume(), archive_size=len(state.archive_ids), reevaluations=len(results))
        return entry

    def _close_iteration(self, extra: dict[str, Any]) -> dict[str, Any]:
        state = self.state
        entry = {"iteration": state.iteration, "evaluations": state.evaluations, "hypervolume": self._hypervolume(),
                 "archive_size": len(state.archive_ids), **extra}
        state.history.append(entry)
        state.finished = self.done
        return entry

    def _hypervolume(self) -> float:
        state = self.state
        return normalized_hypervolume(self._minimized(state.archive_ids), np.array(state.hv_ideal), np.array(state.hv_nadir))

    # -- state -------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue this search exactly (JSON types only)."""
        self.state.rng_state = self.rng.bit_generator.state
        return self.state.to_dict()

    def load_state_dict(self, payload: Mapping[str, Any]) -> None:
        state = EngineState.from_dict(dict(payload))
        if state.seed != self.seed:
            raise ConfigError(f"cannot resume: the search was started with seed {state.seed}, not {self.seed}")
        self.state = state
        self.rng.bit_generator.state = state.rng_state

    # -- surrogates and proposals ------------------------------------------------------------
    def _surrogate_bank_of(self, names: Sequence[str]) -> dict[str, AdaptiveSurrogate]:
        """One adaptive surrogate per predicted objective, switching among ``names``."""
        ensemble_size = self.settings.experiments.ensemble_size
        return {name: AdaptiveSurrogate(names, self.upper, self.settings.cv_folds, ensemble_size=ensemble_size)
                for name in self.predicted}

    @property
    def early(self) -> bool:
        """Whether the experimental small-archive phase is on: fewer than ``experiments.early_rows``
        current architectures are measured, so the engine fits ``experiments.early_surrogates`` and
        selects by ``experiments.early_subset_selection``."""
        early_rows = self.settings.experiments.early_rows
        return early_rows > 0 and len(self._current_ok()) < early_rows

    def _surrogate_bank(self) -> dict[str, AdaptiveSurrogate]:
        return self.early_surrogates if self.early else self.surrogates

    def _fit_surrogates(self) -> dict[str, dict[str, Any]]:
        usable = [r for r in self.state.records.values() if r.status == "ok" and r.current]
        genes = np.array([self.space.encode(r.arch) for r in usable])
        choices = {}
        for name, surrogate in self._surrogate_bank().items():
            targets = np.array([r.metrics[name] for r in usable], dtype=float)
            choice = surrogate.fit(genes, targets, seed=int(self.rng.integers(2**31 - 1)))
            choices[name] = {"name": choice.name, "tau": choice.taus[choice.name]}
        return choices

    def _objective_values(self, archs: Sequence[Architecture], genes: np.ndarray) -> np.ndarray:
        """Objective values (natural orientation) from surrogates, exact cheap metrics, predictors."""
        columns = []
        for objective in self.objectives:
            if objective.name in self.surrogates:
                columns.append(self._surrogate_bank()[objective.name].predict(genes))
            elif objective.name in self.latency_predictors:
                columns.append(np.asarray(self.latency_predictors[objective.name].predict(list(archs)), dtype=float))
            else:
                columns.append(np.array([self._cheap(a)[objective.name] for a in archs], dtype=float))
        return np.column_stack(columns)

    def _cheap(self, arch: Architecture) -> dict[str, float]:
        key = self.space.arch_id(arch)
        if key not in self._cheap_cache:
            self._cheap_cache[key] = dict(self.cheap_metrics(arch))
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
        chosen = self._select(to_minimization(values, self.objectives), k)
        names = [o.name for o in self.objectives]
        predicted = [{n: float(values[i, j]) for j, n in enumerate(names) if n in self.surrogates} for i in chosen]
        return [archs[i] for i in chosen], predicted

    def _select(self, minimized: np.ndarray, k: int) -> np.ndarray:
        """K of the surrogate search's candidates, by ``settings.subset_selection`` (in the
        experimental small-archive phase: ``experiments.early_subset_selection``)."""
        rule = self.settings.experiments.early_subset_selection if self.early else self.settings.subset_selection
        if rule == "nat":  # NAT: the surrogate front, spread along the cheap objectives
            cheap = [j for j, o in enumerate(self.objectives) if o.name not in self.surrogates]
            return select_candidates(minimized, k, None, spread_columns=cheap or None)
        pick = hypervolume_greedy if rule == "hvi" else select_candidates
        return pick(minimized, k, self._minimized(self._current_ok()))

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

    def _current_ok(self) -> list[str]:
        return [i for i, r in self.state.records.items() if r.status == "ok" and r.current]

    def _minimized(self, ids: Sequence[str]) -> np.ndarray:
        names = [o.name for o in self.objectives]
        values = np.array([[self.state.records[i].metrics[n] for n in names] for i in ids], dtype=float)
        return to_minimization(values.reshape(len(ids), len(names)), self.objectives)
