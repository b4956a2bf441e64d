"""Fitting PNAG: the trainer and the two ways to fit, each producing one ``FittedGenerator``.

``PNAGTrainer`` owns what the generator learns from:

- ``known``: truly evaluated architectures (from an evaluator or a search archive) with their
  true ``top1`` and measured costs;
- the accuracy predictor, the confidence bound and the cost model fitted to them
  (``pipeline.generate.predictors``);
- the Pareto-aware ranker R trained on a pool of known, random and generated architectures
  labelled by true or predicted accuracy and exact, measured or predicted cost
  (``pipeline.generate.ranker``);
- the budget-conditioned LSTM policy trained by REINFORCE on R (``pipeline.generate.policy``);
- ``model``: the ``FittedGenerator`` over those parts, through which every prediction, cost and
  answer goes (so training and answering see one canonicalisation and one cost model);
- ``evaluations``: the true evaluations told so far, counted against a ``MaxEvaluations``.

*fit* (the requested budgets are not an input):

- ``fit_with_evaluator``: at most ``settings.evals`` true evaluations, on random architectures and
  on the policy's proposals for budgets drawn continuously over the whole cost range;
- ``fit_from_archive``: a finished search's archive (no true evaluation).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch

from pipeline.config import GenerateConfig
from pipeline.errors import BudgetError
from pipeline.evaluate.interface import EvaluationResult, Evaluator
from pipeline.generate.budget import BudgetScale, over_budget_excess
from pipeline.generate.fitted import Candidates, FittedGenerator, best_known_within
from pipeline.generate.policy import ArchGenerator, CloneFn, ReinforceTrainer
from pipeline.generate.predictors import (
    AccuracyPredictor,
    Canonicaliser,
    ConfidenceBound,
    CostModel,
    ExactCostFn,
    GeneFeatures,
    KnownArch,
    fit_cost_models,
)
from pipeline.generate.ranker import ParetoRanker
from pipeline.schema import LATENCY_PREFIX
from pipeline.search.termination import MaxEvaluations, Progress
from pipeline.space.base import Architecture, SearchSpace

#: cost columns an archive may carry besides ``latency_ms@<profile>``
ARCHIVE_COSTS = ("params_m", "macs_m", "flops_m")


def check_metrics(metrics: Sequence[str], available: Sequence[str]) -> None:
    """Unknown budget metric -> one ``BudgetError`` listing the known ones."""
    for name in metrics:
        if name not in available:
            raise BudgetError(f"unknown budget metric {name!r}; available: {', '.join(sorted(set(available)))}")


class PNAGTrainer:
    """State and models of one PNAG fit on ``space`` (deterministic given ``seed``)."""

    def __init__(self, space: SearchSpace, settings: GenerateConfig, seed: int,
                 exact_cost_fn: ExactCostFn | None = None, exact_names: Sequence[str] = (),
                 check_cost_fn: ExactCostFn | None = None):
        """``exact_cost_fn`` must be cheap (it is called on every sample); ``check_cost_fn`` is an
        expensive exact cost used only for the space's two ends and to check the final picks."""
        self.space = space
        self.check_cost_fn = check_cost_fn
        self.settings = settings
        self.metrics: tuple[str, ...] = tuple(settings.budget_metrics)
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.features = GeneFeatures(space)
        self.canonicalise = Canonicaliser(space)
        self.cost = CostModel(self.metrics, exact_cost_fn, tuple(exact_names))
        self.known: dict[bytes, KnownArch] = {}
        self.evaluations = 0  # true evaluations told through add_results
        self.predictor = AccuracyPredictor(seed, clip_quantile=settings.accuracy_clip_quantile)
        self.fit_bound = False  # the final fit: unmeasured accuracies are a GP's lower confidence bound
        self.bound: ConfidenceBound | None = None
        self.scale: BudgetScale | None = None
        self.ranker: ParetoRanker | None = None
        self.trainer: ReinforceTrainer | None = None
        self.model: FittedGenerator | None = None
        self._accuracy_center, self._accuracy_scale = 0.0, 1.0
        self._input_cache: dict[bytes, np.ndarray] = {}
        self._random_pool = self.canonicalise(np.stack([space.encode(space.sample(self.rng))
                                                        for _ in range(settings.pool_size)]))[1]

    # -- what it learns from ------------------------------------------------------------------
    def add_known(self, arch: Architecture, top1: float, metrics: dict[str, float]) -> bool:
        """Record a truly evaluated architecture; returns False if it was already known."""
        canonical = self.space.canonical(arch)
        genes = self.space.encode(canonical)
        key = genes.tobytes()
        if key in self.known or not np.isfinite(top1):
            return False
        self.known[key] = KnownArch(canonical, genes, float(top1), dict(metrics))
        return True

    def add_results(self, results: Sequence[EvaluationResult]) -> None:
        """Learn from true results (failed ones count as spent evaluations, but teach nothing)."""
        self.evaluations += len(results)
        for result in results:
            if result.status == "ok" and "top1" in result.metrics:
                self.add_known(result.arch, result.metrics["top1"], result.metrics)

    def _known_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        genes = np.stack([k.genes for k in self.known.values()])
        return genes, np.array([k.top1 for k in self.known.values()])

    # -- costs and accuracy -------------------------------------------------------------------
    def costs_of(self, genes: np.ndarray, archs: Sequence[Architecture]) -> np.ndarray:
        """Costs per budget metric: exact where computable, measured where known, else predicted."""
        return self.cost.costs(genes, archs, self.features(genes), self.known)

    def accuracy_of(self, genes: np.ndarray) -> np.ndarray:
        """True top1 where known, else the model's trusted estimate."""
        return self._fitted().accuracy(genes, self.known)[1]

    def checkable_metrics(self) -> tuple[str, ...]:
        """Budget metrics known without fitted cost models: exact ones and those ``check_cost_fn`` gives."""
        checked = set(self.check_cost_fn(self.space.smallest())) if self.check_cost_fn is not None else set()
        return tuple(m for m in self.metrics if m in self.cost.exact_metrics or m in checked)

    def checked_costs(self, arch: Architecture, genes: np.ndarray) -> np.ndarray:
        """One architecture's costs per budget metric, from ``check_cost_fn`` for the metrics it offers
        (exact and expensive), else from ``costs_of``."""
        costs = self.costs_of(np.asarray(genes)[None], [arch])[0]
        if self.check_cost_fn is None:
            return costs
        exact = self.check_cost_fn(arch)
        return np.array([float(exact.get(m, c)) for m, c in zip(self.metrics, costs)])

    def budget_scale(self) -> BudgetScale:
        """The scale between the smallest and the largest architecture's (checked) costs."""
        ends = [self.space.smallest(), self.space.largest()]
        genes = np.stack([self.space.encode(a) for a in ends])
        costs = np.stack([self.checked_costs(a, g) for a, g in zip(ends, genes)])
        return BudgetScale(self.metrics, costs[0], costs[1])

    def check_budgets_early(self, budgets: np.ndarray | None) -> None:
        """Reject impossible budgets before anything is spent, where the scale needs no fitted model."""
        if budgets is not None and len(self.checkable_metrics()) == len(self.metrics):
            self.budget_scale().check(budgets)

    # -- fitting ------------------------------------------------------------------------------
    def _fitted(self) -> FittedGenerator:
        if self.model is None:
            raise RuntimeError("PNAGTrainer used for predictions before its first refit")
        return self.model

    def _ranker_inputs(self, genes: np.ndarray, archs: Sequence[Architecture]) -> np.ndarray:
        """R's encoding of architectures, cached per architecture until the next ``refit`` (the
        policy's samples repeat a lot)."""
        genes = np.asarray(genes, dtype=np.int64)
        keys = [row.tobytes() for row in genes]
        missing = [i for i, key in enumerate(keys) if key not in self._input_cache]
        if missing:
            fresh_genes, fresh_archs = genes[missing], [archs[i] for i in missing]
            fresh = self._fitted().ranker_inputs(fresh_genes, self.costs_of(fresh_genes, fresh_archs),
                                                 self.accuracy_of(fresh_genes))
            for i, row in zip(missing, fresh):
                self._input_cache[keys[i]] = row
        return np.stack([self._input_cache[key] for key in keys])

    def _reward(self, genes: np.ndarray, budget_norm: np.ndarray) -> torch.Tensor:
        archs, canonical = self.canonicalise(genes)
        return self.ranker.score(self._ranker_inputs(canonical, archs), budget_norm)  # type: ignore[union-attr]

    def clone_targets(self) -> CloneFn:
        """The behaviour-cloning targets of the final fit: per normalised budget row, the best measured
        architecture whose cost meets it, and whether there is one (costs taken once, here)."""
        genes, top1 = self._known_arrays()
        costs = self.costs_of(genes, [k.arch for k in self.known.values()])
        scale = self.scale

        def targets(budget_norm: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
            budgets = scale.denormalise(np.asarray(budget_norm, dtype=float))  # type: ignore[union-attr]
            meets = np.all(costs[None] <= budgets[:, None] * (1 + 1e-9), axis=2)  # (budgets, known); 1e-9: round trip
            return genes[np.argmax(np.where(meets, top1[None], -np.inf), axis=1)], meets.any(axis=1)

        return targets

    def refit(self, first: bool = False, models: bool = True, full_steps: bool = False, clone: bool = False) -> None:
        """Fit predictors, then (``models``) R and the policy, from scratch when ``first``, else warm
        (with the first fit's step counts when ``full_steps``). With ``clone`` the policy also
        imitates, per drawn budget, the best measured architecture meeting it (``settings.clone_weight``)."""
        if len(self.known) < 5:
            raise BudgetError(f"PNAG needs at least 5 evaluated architectures to learn from, got {len(self.known)}")
        genes, top1 = self._known_arrays()
        features = self.features(genes)
        self.predictor.fit(features, top1)
        if self.fit_bound:
            self.bound = ConfidenceBound(self.seed).fit(features, top1)
        self._input_cache.clear()
        self._accuracy_center = float(np.median(top1))
        self._accuracy_scale = float(max(np.quantile(top1, 0.9) - np.quantile(top1, 0.5), 1e-6))
        measured = {m: np.array([k.metrics.get(m, np.nan) for k in self.known.values()]) for m in self.metrics}
        self.cost.regressors = fit_cost_models(features, measured, required=self.cost.predicted_metrics)
        created = first or self.scale is None
        if created:
            self.scale = self.budget_scale()
            width = self.features.width + len(self.scale.metrics) + 1
            self.ranker = ParetoRanker(width, self.scale, self.seed)
            policy = ArchGenerator(self.features.cardinalities, len(self.scale.metrics), self.settings.hidden_size)
            self.trainer = ReinforceTrainer(policy, len(self.scale.metrics), self.seed,
                                            entropy_weight=self.settings.entropy_weight)
        self.model = self.fitted({})
        if not (models or created):
            return
        pool = [genes, self._random_pool]
        if not first:
            budgets = (np.arange(10) + 0.5)[:, None] / 10 * np.ones((1, len(self.scale.metrics)))
            pool += [self.trainer.sample(b, 50) for b in budgets]  # type: ignore[union-attr]
        pool_archs, pool_genes = self.canonicalise(np.concatenate(pool))
        _, unique = np.unique(pool_genes, axis=0, return_index=True)
        pool_genes = pool_genes[np.sort(unique)]
        pool_archs = [pool_archs[i] for i in np.sort(unique)]
        steps = self.settings.evaluator_steps if first or full_steps else self.settings.evaluator_round_steps
        self.ranker.train(self._ranker_inputs(pool_genes, pool_archs), self.accuracy_of(pool_genes),  # type: ignore[union-attr]
                          self.costs_of(pool_genes, pool_archs), steps)
        steps = self.settings.training_steps if first or full_steps else self.settings.round_steps
        self.trainer.train(self._reward, steps, self.settings.batch_size,  # type: ignore[union-attr]
                           self.clone_targets() if clone else None, self.settings.clone_weight)

    def fitted(self, fit_info: dict) -> FittedGenerator:
        """The fitted parts as a ``FittedGenerator`` (it keeps no evaluated architecture); it shares
        the trainer's cost model (and its cache of exact costs)."""
        if self.scale is None or self.ranker is None or self.trainer is None:
            raise RuntimeError("PNAGTrainer.fitted called before its first refit")
        return FittedGenerator(
            space=self.space, settings=self.settings, scale=self.scale, policy=self.trainer.policy,
            ranker=self.ranker.model, predictor=self.predictor, bound=self.bound, cost_model=self.cost,
            accuracy_center=self._accuracy_center, accuracy_scale=self._accuracy_scale,
            fit_info=fit_info | {"known": len(self.known)}, check_cost_fn=self.check_cost_fn,
            canonicalise=self.canonicalise,
        )

    # -- proposals ----------------------------------------------------------------------------
    def candidates(self, budget: np.ndarray, include_known: bool = True) -> Candidates:
        """The policy's samples for ``budget`` at each configured temperature (from the training
        generator), mutations of the best known architectures meeting it and (``include_known``) the
        known ones, ranked by the model."""
        budget = np.asarray(budget, dtype=float).reshape(1, -1)
        scaled = self.scale.normalise(budget)[0]  # type: ignore[union-attr]
        count = self.settings.samples_per_budget
        sampled = [self.trainer.sample(scaled, count, temperature=float(t))  # type: ignore[union-attr]
                   for t in self.settings.temperatures]
        sampled.append(self._incumbent_mutations(budget))
        if include_known and self.known:
            sampled.append(np.stack([k.genes for k in self.known.values()]))
        return self._fitted().candidates(budget[0], np.concatenate([s for s in sampled if len(s)]), self.known)

    def _incumbent_mutations(self, budget: np.ndarray, incumbents: int = 5, per_incumbent: int = 20) -> np.ndarray:
        """Mutations of the best known architectures meeting ``budget`` (local moves around them)."""
        if not self.known:
            return np.empty((0, len(self.features.cardinalities)), dtype=np.int64)
        known = list(self.known.values())
        genes = np.stack([k.genes for k in known])
        costs = self.costs_of(genes, [k.arch for k in known])
        fits = np.flatnonzero(over_budget_excess(costs, np.repeat(budget, len(known), axis=0)) <= 0)
        best = fits[np.argsort([-known[i].top1 for i in fits], kind="stable")[:incumbents]]
        prob = 1.5 / len(self.features.cardinalities)
        out = [self.space.encode(self.space.mutate(known[i].arch, self.rng, prob)) for i in best for _ in range(per_incumbent)]
        return np.stack(out) if out else np.empty((0, len(self.features.cardinalities)), dtype=np.int64)

    def fresh_best(self, budget: np.ndarray, taken: set[bytes]) -> Architecture | None:
        """The best ranked architecture meeting ``budget`` that is neither evaluated nor ``taken``."""
        found = self.candidates(budget, include_known=False)
        for i in found.ranked:
            key = found.genes[i].tobytes()
            if key not in self.known and key not in taken:
                taken.add(key)
                return found.archs[i]
        return None

    def _best_known_within(self, budget: np.ndarray) -> KnownArch | None:
        """The most accurate known architecture whose measured costs meet ``budget``."""
        return best_known_within(self.known, self.metrics, budget)


# -- spending true evaluations --------------------------------------------------------------------
def spend(trainer: PNAGTrainer, evaluator: Evaluator, budget: MaxEvaluations, archs: Sequence[Architecture]) -> None:
    """Truly evaluate ``archs`` (as many as ``budget`` still allows) and teach ``trainer`` the results."""
    archs = list(archs)[: budget.evaluations_left(progress(trainer))]
    if archs:
        trainer.add_results(evaluator.evaluate(archs))


def progress(trainer: PNAGTrainer) -> Progress:
    return Progress(evaluations=trainer.evaluations)


def _initial_archs(space: SearchSpace, rng: np.random.Generator, count: int) -> list[Architecture]:
    archs = {space.arch_id(a): space.canonical(a) for a in (space.smallest(), space.largest())}
    for _ in range(50 * count):
        if len(archs) >= count:
            break
        arch = space.sample(rng)
        archs.setdefault(space.arch_id(arch), space.canonical(arch))
    return list(archs.values())[:count]


def explore(trainer: PNAGTrainer, evaluator: Evaluator, budget: MaxEvaluations, until: int, rounds: int = 0) -> int:
    """Spend evaluations up to ``until`` on the policy's best predicted, not yet evaluated
    proposals for budgets drawn continuously (stratified) over the whole range; returns the rounds."""
    metrics = len(trainer.metrics)
    while trainer.evaluations < until and not budget.done(progress(trainer)):
        count = min(10, until - trainer.evaluations)
        scaled = (np.stack([trainer.rng.permutation(count) for _ in range(metrics)], 1)
                  + trainer.rng.random((count, metrics))) / count
        taken: set[bytes] = set()
        picks = [trainer.fresh_best(b, taken) for b in trainer.scale.denormalise(scaled)]  # type: ignore[union-attr]
        picks = [p for p in picks if p is not None]
        if not picks:
            break
        spend(trainer, evaluator, budget, picks)
        rounds += 1
        trainer.refit(models=rounds % trainer.settings.refit_every == 0)
    return rounds


def start_with_evaluator(space: SearchSpace, evaluator: Evaluator, settings: GenerateConfig, seed: int,
                         budgets: np.ndarray | None, measured_metrics: Sequence[str], exact_cost_fn: ExactCostFn | None,
                         exact_names: Sequence[str] | None) -> tuple[PNAGTrainer, MaxEvaluations]:
    """Checks (before any evaluation), then the random initial evaluations and the first fit."""
    exact_names = tuple(evaluator.cheap_metric_names if exact_names is None else exact_names)
    check_metrics(settings.budget_metrics, list(exact_names) + list(measured_metrics))
    if settings.evals < 6:
        raise BudgetError(f"PNAG needs at least 6 true evaluations, got {settings.evals}")
    trainer = PNAGTrainer(space, settings, seed, exact_cost_fn or evaluator.cheap_metrics, exact_names)
    trainer.check_budgets_early(budgets)  # impossible budgets cost nothing
    budget = MaxEvaluations(settings.evals)
    n_init = max(5, int(round(settings.evals * settings.init_fraction)))
    spend(trainer, evaluator, budget, _initial_archs(space, trainer.rng, n_init))
    trainer.refit(first=True)
    if budgets is not None:
        trainer.scale.check(budgets)  # type: ignore[union-attr]
    return trainer, budget


def _budget_rows(budgets: np.ndarray | None, settings: GenerateConfig) -> np.ndarray | None:
    return None if budgets is None else np.asarray(budgets, float).reshape(-1, len(settings.budget_metrics))


def fit_with_evaluator(
    space: SearchSpace, evaluator: Evaluator, settings: GenerateConfig, seed: int,
    measured_metrics: Sequence[str] = (), exact_cost_fn: ExactCostFn | None = None,
    exact_names: Sequence[str] | None = None, check_budgets: np.ndarray | None = None,
) -> FittedGenerator:
    """*fit*: at most ``settings.evals`` true evaluations, none aimed at a requested budget.

    A share (``settings.init_fraction``) goes to random architectures (plus the smallest and the
    largest), the rest to the policy's best predicted proposals for budgets drawn continuously over
    the whole range, with refits in between; then a last, longer refit of every model in which
    unmeasured accuracies are a Gaussian process's lower confidence bound (``settings.pessimism``).
    ``check_budgets`` is only validated up front (so an impossible budget costs nothing); it does
    not steer the fit.
    """
    budgets = _budget_rows(check_budgets, settings)
    trainer, budget = start_with_evaluator(space, evaluator, settings, seed, budgets, measured_metrics,
                                           exact_cost_fn, exact_names)
    explore(trainer, evaluator, budget, settings.evals)
    trainer.fit_bound = settings.pessimism > 0  # the final fit: R and the policy learn to trust what was measured
    trainer.refit(models=True, full_steps=True, clone=True)
    generator = trainer.fitted({"seed": seed, "evaluations": trainer.evaluations, "source": "evaluator"})
    return generator.with_costs(trainer.cost.exact_fn if trainer.cost.exact_metrics else None)


def trainer_on_archive(space: SearchSpace, archive: pd.DataFrame, settings: GenerateConfig, seed: int,
                       exact_cost_fn: ExactCostFn | None, exact_names: Sequence[str], check_cost_fn: ExactCostFn | None,
                       budgets: np.ndarray | None, fit_bound: bool = False, clone: bool = False) -> PNAGTrainer:
    """A trainer fitted on an archive frame's ``ok`` rows (``budgets`` are only validated, first)."""
    if "arch" not in archive or "top1" not in archive:
        raise BudgetError("the archive lacks an 'arch' or 'top1' column; it is not a search archive")
    measured = [c for c in archive.columns if c in ARCHIVE_COSTS or c.startswith(LATENCY_PREFIX)]
    offered = tuple(check_cost_fn(space.smallest())) if check_cost_fn is not None else ()
    check_metrics(settings.budget_metrics, list(exact_names) + measured + list(offered))
    trainer = PNAGTrainer(space, settings, seed, exact_cost_fn, exact_names, check_cost_fn)
    trainer.fit_bound = fit_bound
    ok = archive[archive["status"] == "ok"] if "status" in archive else archive
    for record in ok.to_dict("records"):
        metrics = {k: float(v) for k, v in record.items() if k in measured and pd.notna(v)}
        trainer.add_known(space.from_text(str(record["arch"])), float(record["top1"]), metrics)
    trainer.check_budgets_early(budgets)  # fail fast, before fitting
    trainer.refit(first=True, clone=clone)
    if budgets is not None:
        trainer.scale.check(budgets)  # type: ignore[union-attr]
    return trainer


def fit_from_archive(
    space: SearchSpace, archive: pd.DataFrame, settings: GenerateConfig, seed: int,
    exact_cost_fn: ExactCostFn | None = None, exact_names: Sequence[str] = (),
    check_cost_fn: ExactCostFn | None = None, check_budgets: np.ndarray | None = None,
) -> FittedGenerator:
    """*fit* on a finished search's archive (``arch`` text, ``top1``, cost columns): no true evaluation."""
    trainer = trainer_on_archive(space, archive, settings, seed, exact_cost_fn, exact_names, check_cost_fn,
                                 _budget_rows(check_budgets, settings), fit_bound=settings.pessimism > 0, clone=True)
    info = {"seed": seed, "evaluations": 0, "source": "archive", "archive_rows": len(trainer.known)}
    return trainer.fitted(info).with_costs(exact_cost_fn, check_cost_fn)
