"""``NATv2Search``: NATv2 as a Ray Tune search algorithm, built on the engine's ask/tell.

For Ray Tune users who already have a trainable that measures an architecture::

    from ray import tune
    from pipeline.search.tune import NATv2Search

    searcher = NATv2Search("natsbench", objectives=["top1:max", "params_m:min"],
                           cheap_metrics=exact_costs, max_evaluations=100, seed=0)
    tuner = tune.Tuner(trainable, tune_config=tune.TuneConfig(search_alg=searcher, num_samples=100))
    # light trainables (a table look-up): tune.with_resources(trainable, {"cpu": 0.25}) and
    # reuse_actors=True, or every trial pays for a new worker process
    tuner.fit()

Each trial's config is ``{"arch": <architecture dict>}`` (plus any fixed ``param_space`` keys);
the trainable reports the objectives it measures (``tune.report({"top1": ...})``), which are the
searcher's ``metric``. Exact costs come from ``cheap_metrics(arch) -> dict`` and are never asked
of the trainable, nor predicted.

How it maps onto the engine: ``suggest`` hands out the candidates of one ``ask`` one trial at a
time and returns ``None`` (Tune asks again later) while a batch is still running;
``on_trial_complete`` collects results and, once the batch is whole, ``tell``s it (an errored
trial, or one that reported no value for an objective, is told as failed and still counts
against the budget). ``save``/``restore`` pickle the engine's ``state_dict`` with the batch in
progress; after a restore, candidates that were running are handed out again.
"""

from __future__ import annotations

import pickle
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import Any

from pydantic import ValidationError
from ray.tune.search import Searcher

from pipeline.atomic import atomic_path
from pipeline.config import ObjectiveSpec
from pipeline.errors import ConfigError
from pipeline.evaluate.interface import EvaluationResult, Objective
from pipeline.search.natv2 import Candidate, NATv2Engine
from pipeline.search.settings import NATv2Settings
from pipeline.space import get_space
from pipeline.space.base import Architecture, SearchSpace


def parse_objectives(objectives: Sequence[str | Objective]) -> list[Objective]:
    """``"top1:max"`` strings (or ``Objective``) into ``Objective``, validated like the config's."""
    parsed = []
    for item in objectives:
        if isinstance(item, Objective):
            parsed.append(item)
            continue
        name, _, direction = str(item).rpartition(":")
        try:
            spec = ObjectiveSpec(name=name, direction=direction)
        except ValidationError:
            raise ConfigError(f"objective {item!r} must look like 'name:min' or 'name:max'") from None
        parsed.append(Objective(spec.name, spec.direction))
    return parsed


class NATv2Search(Searcher):
    """A multi-objective ``ray.tune.search.Searcher`` running NATv2 (like ``OptunaSearch``)."""

    def __init__(
        self,
        space: SearchSpace | str,
        objectives: Sequence[str | Objective] = ("top1:max", "params_m:min"),
        *,
        cheap_metrics: Callable[[Architecture], Mapping[str, float]] | None = None,
        max_evaluations: int = 100,
        seed: int = 0,
        settings: NATv2Settings | None = None,
    ):
        self.space = get_space(space) if isinstance(space, str) else space
        self.objectives = parse_objectives(objectives)
        self.cheap_metrics = cheap_metrics
        names = set(cheap_metrics(self.space.smallest())) if cheap_metrics is not None else set()
        self.cheap_names = tuple(o.name for o in self.objectives if o.name in names)
        measured = [o for o in self.objectives if o.name not in self.cheap_names]  # what trials must report
        super().__init__(metric=[o.name for o in measured], mode=[o.direction for o in measured])
        base = settings or NATv2Settings()
        self.settings = replace(base, max_evaluations=max_evaluations)
        self.seed = seed
        self.engine = self._new_engine()
        self.fixed_config: dict[str, Any] = {}
        self.queue: list[Candidate] = []  # asked, not yet handed out
        self.running: dict[str, Candidate] = {}  # trial id -> candidate
        self.batch: dict[str, EvaluationResult] = {}  # results of the current ask, by arch_id
        self.batch_size = 0

    def _new_engine(self) -> NATv2Engine:
        return NATv2Engine(self.space, self.objectives, self.settings, self.seed,
                           cheap_metrics=self.cheap_metrics, cheap_metric_names=self.cheap_names)

    # -- Tune's side -------------------------------------------------------------------------
    def set_search_properties(self, metric: Any, mode: Any, config: dict, **spec: Any) -> bool:
        """Fixed ``param_space`` keys are passed through to every trial's config."""
        self.fixed_config = {k: v for k, v in (config or {}).items() if k != "arch"}
        return True

    def suggest(self, trial_id: str) -> dict[str, Any] | str | None:
        while not self.queue:
            if self.running or self.batch_size:
                return None  # the batch in flight must be told before the next ask
            if self.engine.done:
                return Searcher.FINISHED
            self.queue = self.engine.ask()
            self.batch_size = len(self.queue)
            if not self.queue:  # the space is exhausted: tell the empty batch and look again
                self.engine.tell([])
                self.batch_size = 0
        candidate = self.queue.pop(0)
        self.running[trial_id] = candidate
        return {**self.fixed_config, "arch": candidate.arch}

    def on_trial_complete(self, trial_id: str, result: dict | None = None, error: bool = False) -> None:
        candidate = self.running.pop(trial_id, None)
        if candidate is None:  # a trial from before a restore, already handed out again
            return
        self.batch[candidate.arch_id] = self._result(candidate, result, error)
        if len(self.batch) == self.batch_size:
            self.engine.tell(list(self.batch.values()))
            self.batch, self.batch_size = {}, 0

    def _result(self, candidate: Candidate, reported: dict | None, error: bool) -> EvaluationResult:
        metrics = dict(self.cheap_metrics(candidate.arch)) if self.cheap_metrics is not None else {}
        for objective in self.objectives:
            value = (reported or {}).get(objective.name)
            if isinstance(value, (int, float)) and objective.name not in self.cheap_names:
                metrics[objective.name] = float(value)
        missing = [o.name for o in self.objectives if o.name not in metrics]
        if error or missing:
            why = "the trial failed" if error else f"the trial reported no {', '.join(missing)}"
            return EvaluationResult(candidate.arch, candidate.arch_id, metrics, status="failed", error=why)
        return EvaluationResult(candidate.arch, candidate.arch_id, metrics)

    # -- state -------------------------------------------------------------------------------
    def get_state(self) -> dict[str, Any]:
        """The engine's state_dict and the batch in progress (running candidates go back to the queue)."""
        return {"engine": self.engine.state_dict(), "queue": [*self.running.values(), *self.queue],
                "batch": self.batch, "batch_size": self.batch_size, "fixed_config": self.fixed_config}

    def set_state(self, state: dict[str, Any]) -> None:
        self.engine = self._new_engine()
        self.engine.load_state_dict(state["engine"])
        self.queue, self.running = list(state["queue"]), {}
        self.batch, self.batch_size = dict(state["batch"]), state["batch_size"]
        self.fixed_config = dict(state["fixed_config"])

    def save(self, checkpoint_path: str) -> None:
        with atomic_path(checkpoint_path) as temporary:
            temporary.write_bytes(pickle.dumps(self.get_state()))

    def restore(self, checkpoint_path: str) -> None:
        with open(checkpoint_path, "rb") as handle:
            self.set_state(pickle.load(handle))  # noqa: S301 - our own checkpoint file

    def evaluated(self) -> list[dict[str, float]]:
        """The metrics of every architecture told as ``ok`` so far."""
        return [dict(r.metrics) for r in self.engine.result().records if r.status == "ok"]
