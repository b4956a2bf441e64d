"""PNAG engine: the model state (known archs, predictors, R, generator) and budget-wise generation.

``PNAG`` owns what the generator learns from:

- ``known``: truly evaluated architectures (from an evaluator or a NATv2 archive) with their true
  ``top1`` and measured costs;
- the accuracy predictor and cost oracle fitted to them (``pipeline.generate.predictors``);
- the Pareto-aware ranker R trained on a pool of known, random and generated architectures
  labelled by true or predicted accuracy and exact or predicted cost (``pipeline.generate.ranker``);
- the budget-conditioned LSTM generator trained by REINFORCE on R (``pipeline.generate.policy``);
- ``evaluations``: the true evaluations told so far, which ``runs`` counts against a
  ``MaxEvaluations`` (``pipeline.search.termination``).

``refit`` re-fits everything (warm-starting R and the generator), ``candidates`` samples the
generator for one budget and ranks the architectures that meet it, ``generated_rows`` builds the
``generated.parquet`` rows. The two entry points that decide where training data comes from live
in ``pipeline.generate.runs``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch

from pipeline.config import GenerateConfig
from pipeline.errors import BudgetError
from pipeline.evaluate.interface import EvaluationResult
from pipeline.generate.budget import BudgetScale, over_budget_excess
from pipeline.generate.policy import ArchGenerator, CloneFn, ReinforceTrainer
from pipeline.generate.predictors import AccuracyPredictor, ConfidenceBound, CostOracle, ExactCostFn, GeneFeatures
from pipeline.generate.ranker import ParetoRanker
from pipeline.schema import result_row
from pipeline.space.base import Architecture, SearchSpace

PNAGSettings = GenerateConfig
"""PNAG's knobs are the validated ``generate`` config section itself (one source of truth)."""


@dataclass
class KnownArch:
    arch: Architecture
    genes: np.ndarray
    top1: float
    metrics: dict[str, float] = field(default_factory=dict)


@dataclass
class Candidates:
    """Architectures proposed for one budget that meet it, best first."""

    archs: list[Architecture]
    genes: np.ndarray
    predicted: np.ndarray  # true top1 where known, else predicted
    costs: np.ndarray
    known: np.ndarray  # bool: truly evaluated
    closest: Architecture | None = None  # when none meets the budget: the least over-budget one


class PNAG:
    """State and models of one PNAG run on ``space`` (deterministic given ``seed``)."""

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
        self.cost = CostOracle(space, self.metrics, exact_cost_fn, exact_names, seed)
        self.known: dict[bytes, KnownArch] = {}
        self.evaluations = 0  # true evaluations told through add_results
        self.predictor = AccuracyPredictor(seed, clip_quantile=settings.accuracy_clip_quantile)
        self.pessimism = 0.0  # > 0: unmeasured accuracies are the lower bound mean - pessimism * sd
        self.bound: ConfidenceBound | None = None
        self.scale: BudgetScale | None = None
        self.ranker: ParetoRanker | None = None
        self.trainer: ReinforceTrainer | None = None
        self._acc_center, self._acc_scale = 0.0, 1.0
        self._input_cache: dict[bytes, np.ndarray] = {}
        self._canonical: dict[bytes, tuple[Architecture, np.ndarray]] = {}
        self._random_pool = self._canonicalise(np.stack([space.encode(space.sample(self.rng))
                                                         for _ in range(settings.pool_size)]))[1]

    # -- architectures ------------------------------------------------------------------------
    def _canonicalise(self, genes: np.ndarray) -> tuple[list[Architecture], np.ndarray]:
        """Decode gene rows to canonical architectures and their canonical genes (cached)."""
        archs, out = [], []
        for row in np.asarray(genes, dtype=np.int64):
            key = row.tobytes()
            if key not in self._canonical:
                arch = self.space.decode(row)
                self._canonical[key] = (arch, self.space.encode(arch))
            arch, canon = self._canonical[key]
            archs.append(arch)
            out.append(canon)
        return archs, np.asarray(out, dtype=np.int64).reshape(-1, len(self.features.cardinalities))

    def add_known(self, arch: Architecture, top1: float, metrics: dict[str, float]) -> bool:
        """Record a truly evaluated architecture; returns False if it was already known."""
        genes = self.space.encode(arch)
        key = genes.tobytes()
        if key in self.known or not np.isfinite(top1):
            return False
        self.known[key] = KnownArch(self.space.canonical(arch), genes, float(top1), dict(metrics))
        return True

    def add_results(self, results: Sequence[EvaluationResult]) -> None:
        """Learn from true results (failed ones count as spent evaluations, but teach nothing)."""
        self.evaluations += len(results)
        for result in results:
            if result.status == "ok" and "top1" in result.metrics:
                self.add_known(result.arch, result.metrics["top1"], result.metrics)

    def is_known(self, genes: np.ndarray) -> bool:
        return np.asarray(genes, dtype=np.int64).tobytes() in self.known

    # -- fitting ------------------------------------------------------------------------------
    def _known_arrays(self) -> tuple[np.ndarray, np.ndarray]:
        genes = np.stack([k.genes for k in self.known.values()])
        return genes, np.array([k.top1 for k in self.known.values()])

    def _setup_scale(self) -> BudgetScale:
        ends = [self.space.smallest(), self.space.largest()]
        genes = np.stack([self.space.encode(a) for a in ends])
        costs = np.stack([self.checked_costs(a, g) for a, g in zip(ends, genes)])
        return BudgetScale(self.metrics, costs[0], costs[1])

    def accuracy_of(self, genes: np.ndarray) -> np.ndarray:
        """True top1 where known, else the predictor's estimate (its lower bound when pessimistic)."""
        genes = np.asarray(genes, dtype=np.int64)
        if self.pessimism > 0 and self.bound is not None:
            values = self.bound.lower(self.features(genes), self.pessimism)
        else:
            values = self.predictor.predict(self.features(genes))
        for i, row in enumerate(genes):
            known = self.known.get(row.tobytes())
            if known is not None:
                values[i] = known.top1
        return values

    def costs_of(self, genes: np.ndarray, archs: Sequence[Architecture]) -> np.ndarray:
        """Costs per budget metric: exact where computable, measured where known, else predicted."""
        costs = self.cost.costs(genes, archs, self.features(genes))
        predicted = [(col, name) for col, name in enumerate(self.cost.metrics) if name in self.cost.predicted]
        if predicted:
            for row, gene_row in enumerate(np.asarray(genes, dtype=np.int64)):
                known = self.known.get(gene_row.tobytes())
                if known is not None:
                    for col, name in predicted:
                        if name in known.metrics:
                            costs[row, col] = known.metrics[name]
        return costs

    def checkable_metrics(self) -> tuple[str, ...]:
        """Budget metrics known without fitted cost models: exact ones and those ``check_cost_fn`` gives."""
        checked = set(self.check_cost_fn(self.space.smallest())) if self.check_cost_fn is not None else set()
        return tuple(m for m in self.metrics if m in self.cost.exact or m in checked)

    def checked_costs(self, arch: Architecture, genes: np.ndarray) -> np.ndarray:
        """One architecture's costs per budget metric, from ``check_cost_fn`` for the metrics it offers
        (exact and expensive), else from ``costs_of``."""
        costs = self.costs_of(np.asarray(genes)[None], [arch])[0]
        if self.check_cost_fn is None:
            return costs
        exact = self.check_cost_fn(arch)
        return np.array([float(exact.get(m, c)) for m, c in zip(self.metrics, costs)])

    def ranker_inputs(self, genes: np.ndarray, archs: Sequence[Architecture]) -> np.ndarray:
        """R's architecture encoding: one-hot genes, normalised cost per metric, standardised accuracy.

        Cached per architecture until the next ``refit`` (the generator samples repeat a lot).
        """
        genes = np.asarray(genes, dtype=np.int64)
        keys = [row.tobytes() for row in genes]
        missing = [i for i, key in enumerate(keys) if key not in self._input_cache]
        if missing:
            fresh = self._compute_inputs(genes[missing], [archs[i] for i in missing])
            for i, row in zip(missing, fresh):
                self._input_cache[keys[i]] = row
        return np.stack([self._input_cache[key] for key in keys])

    def _compute_inputs(self, genes: np.ndarray, archs: Sequence[Architecture]) -> np.ndarray:
        accuracy = (self.accuracy_of(genes) - self._acc_center) / self._acc_scale
        cost = self.scale.normalise(self.costs_of(genes, archs))  # type: ignore[union-attr]
        return np.concatenate([self.features(genes), cost, np.clip(accuracy, -3, 3)[:, None]], axis=1)

    def _reward(self, genes: np.ndarray, budget_norm: np.ndarray) -> torch.Tensor:
        archs, canon = self._canonicalise(genes)
        return self.ranker.score(self.ranker_inputs(canon, archs), budget_norm)  # type: ignore[union-attr]

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
        """Fit predictors, then (``models``) R and the generator, from scratch when ``first``, else warm
        (with the first fit's step counts when ``full_steps``). With ``clone`` the generator also
        imitates, per drawn budget, the best measured architecture meeting it (``settings.clone_weight``)."""
        if len(self.known) < 5:
            raise BudgetError(f"PNAG needs at least 5 evaluated architectures to learn from, got {len(self.known)}")
        genes, top1 = self._known_arrays()
        self.predictor.fit(self.features(genes), top1)
        if self.pessimism > 0:
            self.bound = ConfidenceBound(self.seed).fit(self.features(genes), top1)
        self._input_cache.clear()
        self._acc_center = float(np.median(top1))
        self._acc_scale = float(max(np.quantile(top1, 0.9) - np.quantile(top1, 0.5), 1e-6))
        if self.cost.predicted:
            measured = {m: np.array([k.metrics.get(m, np.nan) for k in self.known.values()])
                        for m in self.cost.predicted}
            self.cost.fit(self.features(genes), measured)
        if not (models or first or self.scale is None):
            return
        if first or self.scale is None:
            self.scale = self._setup_scale()
            width = self.features.width + len(self.scale.metrics) + 1
            self.ranker = ParetoRanker(width, self.scale, self.seed)
            policy = ArchGenerator(self.features.cardinalities, len(self.scale.metrics), self.settings.hidden_size)
            self.trainer = ReinforceTrainer(policy, len(self.scale.metrics), self.seed,
                                            entropy_weight=self.settings.entropy_weight)
        pool = [genes, self._random_pool]
        if not first:
            budgets = (np.arange(10) + 0.5)[:, None] / 10 * np.ones((1, len(self.scale.metrics)))
            pool += [self.trainer.sample(b, 50) for b in budgets]  # type: ignore[union-attr]
        pool_archs, pool_genes = self._canonicalise(np.concatenate(pool))
        _, unique = np.unique(pool_genes, axis=0, return_index=True)
        pool_genes = pool_genes[np.sort(unique)]
        pool_archs = [pool_archs[i] for i in np.sort(unique)]
        steps = self.settings.evaluator_steps if first or full_steps else self.settings.evaluator_round_steps
        self.ranker.train(self.ranker_inputs(pool_genes, pool_archs), self.accuracy_of(pool_genes),  # type: ignore[union-attr]
                          self.costs_of(pool_genes, pool_archs), steps)
        steps = self.settings.training_steps if first or full_steps else self.settings.round_steps
        self.trainer.train(self._reward, steps, self.settings.batch_size,  # type: ignore[union-attr]
                           self.clone_targets() if clone else None, self.settings.clone_weight)

    # -- generation ---------------------------------------------------------------------------
    def candidates(self, budget: np.ndarray, include_known: bool = True) -> Candidates:
        """Generator samples for ``budget`` (plus known archs), those meeting it ranked best first."""
        budget = np.asarray(budget, dtype=float).reshape(1, -1)
        scaled = self.scale.normalise(budget)[0]  # type: ignore[union-attr]
        count = self.settings.samples_per_budget
        sampled = [self.trainer.sample(scaled, count), self.trainer.sample(scaled, count, temperature=2.0)]  # type: ignore[union-attr]
        sampled.append(self._incumbent_mutations(budget))
        archs, genes = self._canonicalise(np.concatenate([s for s in sampled if len(s)]))
        if include_known and self.known:
            known_genes = np.stack([k.genes for k in self.known.values()])
            archs = archs + [k.arch for k in self.known.values()]
            genes = np.concatenate([genes, known_genes])
        _, unique = np.unique(genes, axis=0, return_index=True)
        order = np.sort(unique)
        archs, genes = [archs[i] for i in order], genes[order]
        costs = self.costs_of(genes, archs)
        excess = over_budget_excess(costs, np.repeat(budget, len(genes), axis=0))
        fits = excess <= 0
        if not fits.any():
            return Candidates([], genes[:0], np.empty(0), costs[:0], np.empty(0, bool), archs[int(np.argmin(excess))])
        idx = np.flatnonzero(fits)
        predicted = self.accuracy_of(genes[idx])
        order = np.argsort(-predicted, kind="stable")
        ranked, predicted = idx[order], predicted[order]
        known = np.array([self.is_known(g) for g in genes[ranked]], dtype=bool)
        return Candidates([archs[i] for i in ranked], genes[ranked], predicted, costs[ranked], known)

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

    def pick(self, budget: np.ndarray, verified_only: bool, max_checks: int = 10) -> tuple[Architecture | None, float, bool, str]:
        """The generated architecture for ``budget``: (arch, predicted top1, meets budget, note)."""
        found = self.candidates(budget)
        exactness = "exact cost" if self.cost.all_exact else "predicted cost"
        if not found.archs:
            fallback = self._best_known_within(budget)
            if fallback is not None:
                return fallback.arch, fallback.top1, True, (
                    f"no sampled architecture meets the budget ({exactness}); best evaluated architecture within it")
            return found.closest, float("nan"), False, f"no sampled architecture meets the budget ({exactness}); closest shown"
        if verified_only and found.known.any():
            i = int(np.flatnonzero(found.known)[0])
            return found.archs[i], float(found.predicted[i]), True, f"best verified, {exactness}"
        if self.check_cost_fn is not None and not self.cost.all_exact:
            for i, arch in enumerate(found.archs[:max_checks]):  # best predicted whose exact cost fits
                if bool((self.checked_costs(arch, found.genes[i]) <= budget).all()):
                    return arch, float(found.predicted[i]), True, "best predicted, exact cost checked"
            fallback = self._best_known_within(budget)
            if fallback is not None:
                return fallback.arch, fallback.top1, True, (
                    f"none of the {min(max_checks, len(found.archs))} best predicted meets the budget under exact "
                    "cost; best evaluated architecture within it")
            return found.archs[0], float(found.predicted[0]), False, (
                f"none of the {min(max_checks, len(found.archs))} best predicted meets the budget under exact cost")
        return found.archs[0], float(found.predicted[0]), True, f"best predicted, {exactness}"

    def _best_known_within(self, budget: np.ndarray) -> KnownArch | None:
        """The most accurate truly evaluated architecture whose measured costs meet ``budget``."""
        metrics = self.metrics
        within = [k for k in self.known.values()
                  if all(m in k.metrics and k.metrics[m] <= b for m, b in zip(metrics, budget))]
        return max(within, key=lambda k: k.top1, default=None)

    def generated_rows(self, budgets: np.ndarray, *, run_id: str, verified_only: bool) -> pd.DataFrame:
        """One ``generated.parquet`` row per budget (``top1`` is the true accuracy when known)."""
        rows = []
        metrics = self.metrics
        for budget in np.asarray(budgets, dtype=float).reshape(-1, len(metrics)):
            arch, predicted, meets, note = self.pick(budget, verified_only)
            genes = self.space.encode(arch)
            known = self.known.get(genes.tobytes())
            values = dict(known.metrics) if known else {}
            values.update(self.cost.exact_of(arch))
            if self.check_cost_fn is not None:
                values.update({k: float(v) for k, v in self.check_cost_fn(arch).items()})
            costs = self.costs_of(genes[None], [arch])[0]
            for name, value in zip(metrics, costs):
                values.setdefault(name, float(value))
            values["top1"] = known.top1 if known else float("nan")
            result = EvaluationResult(arch=arch, arch_id=self.space.arch_id(arch), metrics=values)
            row = result_row(result, run_id=run_id, space=self.space.name, arch_text=self.space.to_text(arch),
                             iteration=0, source="generator", predicted_top1=predicted)
            row.update(budget=float(budget[0]), budget_metric=",".join(metrics), meets_budget=bool(meets),
                       verified=known is not None, note=note)
            if len(metrics) > 1:
                row.update({f"budget@{m}": float(v) for m, v in zip(metrics, budget)})
            rows.append(row)
        return pd.DataFrame.from_records(rows)
