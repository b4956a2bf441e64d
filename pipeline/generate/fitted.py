"""The fitted generator: what fitting PNAG produces, and the one place a budget is answered.

``FittedGenerator`` holds the budget-conditioned policy, the Pareto-aware ranker R, the accuracy
predictor (and, with ``generate.pessimism``, a Gaussian process's lower confidence bound), the
cost model for every budget metric, the budget scale and the space. It knows no archive:
``generate`` samples several architectures per budget from the policy, orders those whose cost
meets the budget by their trusted predicted accuracy, and keeps the best one whose exact cost,
where the caller can compute it, meets the budget (``choose``, the one pick rule). It never calls
an evaluator, so every answer costs zero true evaluations.

The labelled search mode (``pipeline.generate.search_mode``) answers through the same object: it
passes extra candidates and the architectures it truly evaluated (``known``), whose measured
accuracy and costs then replace the predictions.

Costs come from ``exact_cost_fn`` (cheap and exact, e.g. a table's params) for the metrics it
offers, else from the regressors; ``check_cost_fn`` (exact but slow, e.g. counting a supernet's
subnet) checks only the best few picks. Answers are deterministic in (seed, budget): each budget
draws from its own seeded ``torch.Generator``, so a budget gets the same answer alone or in a list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
import torch

from pipeline.config import GenerateConfig
from pipeline.errors import BudgetError
from pipeline.evaluate.interface import EvaluationResult
from pipeline.generate.budget import BudgetScale, over_budget_excess
from pipeline.generate.policy import ArchGenerator
from pipeline.generate.predictors import Canonicaliser, CostModel, GeneFeatures
from pipeline.generate.ranker import RankingMLP
from pipeline.schema import result_row
from pipeline.space.base import Architecture, SearchSpace

if TYPE_CHECKING:
    from pipeline.generate.predictors import AccuracyPredictor, ConfidenceBound, ExactCostFn, Known, KnownArch

RANKER_HIDDEN = 128
MAX_CHECKS = 10  # best picks checked with ``check_cost_fn`` before giving up on a budget


def budget_seed(seed: int, budget: np.ndarray) -> int:
    """A 63-bit seed from the user's seed and the budget's values (per-budget determinism)."""
    digest = hashlib.sha256(np.int64(seed).tobytes() + np.asarray(budget, dtype=np.float64).tobytes()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


@dataclass
class Candidates:
    """Distinct candidate architectures for one budget with the model's view of them."""

    archs: list[Architecture]
    genes: np.ndarray
    costs: np.ndarray  # (n, metrics): exact, measured or predicted
    excess: np.ndarray  # largest log(cost / budget); <= 0 meets the budget
    predicted: np.ndarray  # predicted top1 (true where known)
    ranked: np.ndarray  # indices of those meeting the budget, best trusted accuracy first


@dataclass
class Choice:
    """The answer for one budget."""

    arch: Architecture
    predicted_top1: float
    costs: dict[str, float]  # every cost known for the pick (measured or exact where available)
    meets: bool
    note: str
    predicted_costs: dict[str, float] = field(default_factory=dict)  # the model's view of the metrics
    known: KnownArch | None = None  # the pick was truly evaluated (search mode)


@dataclass
class FittedGenerator:
    """A fitted PNAG generator; see the module docstring."""

    space: SearchSpace
    settings: GenerateConfig
    scale: BudgetScale
    policy: ArchGenerator
    ranker: RankingMLP
    predictor: AccuracyPredictor
    cost_model: CostModel
    accuracy_center: float
    accuracy_scale: float
    fit_info: dict[str, Any] = field(default_factory=dict)
    bound: ConfidenceBound | None = None  # with ``settings.pessimism`` > 0: rank by its lower bound
    check_cost_fn: ExactCostFn | None = None
    canonicalise: Canonicaliser = None  # type: ignore[assignment]  # gene rows -> canonical (shared cache)

    def __post_init__(self) -> None:
        self.features = GeneFeatures(self.space)
        if self.canonicalise is None:
            self.canonicalise = Canonicaliser(self.space)
        missing = [m for m in self.metrics
                   if m not in self.cost_model.exact_metrics and m not in self.cost_model.regressors]
        if missing:
            raise BudgetError(f"budget metric(s) {', '.join(missing)} have neither an exact cost nor a fitted "
                              "cost model in this generator")

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.scale.metrics)

    @property
    def exact_metrics(self) -> tuple[str, ...]:
        return self.cost_model.exact_metrics

    @property
    def predicted_metrics(self) -> tuple[str, ...]:
        return tuple(m for m in self.metrics if m not in self.exact_metrics)

    def with_costs(self, exact_cost_fn: ExactCostFn | None, check_cost_fn: ExactCostFn | None = None) -> FittedGenerator:
        """The same fitted models with other cost functions (e.g. a table's after loading)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        costs = CostModel.offered_by(self.space, self.metrics, exact_cost_fn, self.cost_model.regressors)
        return FittedGenerator(**(fields | {"cost_model": costs, "check_cost_fn": check_cost_fn}))

    # -- the model's view of architectures ----------------------------------------------------
    def costs(self, genes: np.ndarray, archs: Sequence[Architecture], known: Known | None = None) -> np.ndarray:
        """``(n, m)`` costs per budget metric: exact where offered, measured where known, else predicted."""
        return self.cost_model.costs(genes, archs, self.features(genes), known)

    def accuracy(self, genes: np.ndarray, known: Known | None = None) -> tuple[np.ndarray, np.ndarray]:
        """(predicted top1, the value ranked by): the GP mean and its lower bound when pessimistic,
        else the LightGBM prediction twice; a known architecture's true top1 replaces both."""
        genes = np.asarray(genes, dtype=np.int64)
        features = self.features(genes)
        if self.bound is not None and self.settings.pessimism > 0:
            mean, sd = self.bound.mean_and_sd(features)
            predicted, trusted = mean, mean - self.settings.pessimism * sd
        else:
            predicted = self.predictor.predict(features)
            trusted = predicted
        if known:
            predicted, trusted = predicted.copy(), trusted.copy()
            for i, row in enumerate(genes):
                measured = known.get(row.tobytes())
                if measured is not None:
                    predicted[i] = trusted[i] = measured.top1
        return predicted, trusted

    def ranker_inputs(self, genes: np.ndarray, costs: np.ndarray, accuracy: np.ndarray) -> np.ndarray:
        """R's architecture encoding: one-hot genes, normalised cost per metric, standardised accuracy."""
        standardised = np.clip((accuracy - self.accuracy_center) / self.accuracy_scale, -3, 3)
        return np.concatenate([self.features(genes), self.scale.normalise(costs), standardised[:, None]], axis=1)

    # -- answering ----------------------------------------------------------------------------
    @torch.no_grad()
    def sample(self, budget: np.ndarray, seed: int) -> np.ndarray:
        """Policy samples for one raw budget: the greedy one, then each configured temperature."""
        self.policy.eval()
        generator = torch.Generator().manual_seed(budget_seed(seed, budget))
        scaled = torch.as_tensor(self.scale.normalise(budget), dtype=torch.float32)
        batch = scaled.expand(self.settings.samples_per_budget, -1)
        samples = [self.policy(scaled, greedy=True)[0]]
        samples += [self.policy(batch, generator, temperature=float(t))[0] for t in self.settings.temperatures]
        return torch.cat(samples).numpy()

    def candidates(self, budget: np.ndarray, genes: np.ndarray, known: Known | None = None) -> Candidates:
        """The distinct canonical architectures among ``genes`` (first occurrence kept), with their
        costs and predicted accuracy, and those meeting ``budget`` ranked best first."""
        budget = np.asarray(budget, dtype=float).reshape(-1)
        archs, genes = self.canonicalise(genes)
        _, first = np.unique(genes, axis=0, return_index=True)
        keep = np.sort(first)
        archs, genes = [archs[i] for i in keep], genes[keep]
        costs = self.costs(genes, archs, known)
        excess = over_budget_excess(costs, np.repeat(budget[None], len(genes), axis=0))
        predicted, trusted = self.accuracy(genes, known)
        fits = np.flatnonzero(excess <= 0)
        ranked = fits[np.argsort(-trusted[fits], kind="stable")]
        return Candidates(archs, genes, costs, excess, predicted, ranked)

    def answer(self, budget: np.ndarray, seed: int) -> Choice:
        """The generated architecture for one raw budget vector (no true evaluation)."""
        budget = np.asarray(budget, dtype=float).reshape(-1)
        return self.choose(budget, self.candidates(budget, self.sample(budget, seed)))

    def choose(self, budget: np.ndarray, found: Candidates, known: Known | None = None,
               verified_only: bool = False) -> Choice:
        """The one pick rule: the best ranked candidate meeting the budget; with ``check_cost_fn``,
        the best of the first ``MAX_CHECKS`` whose exact cost meets it. Where none does, the most
        accurate ``known`` architecture within the budget, else the best (or least over-budget)
        candidate, marked as not meeting it. ``verified_only``: the best ranked known candidate."""
        basis = "exact cost" if not self.predicted_metrics else f"predicted {', '.join(self.predicted_metrics)}"
        ranked = found.ranked
        verified = [int(i) for i in ranked if found.genes[i].tobytes() in (known or {})] if verified_only else []
        if not ranked.size:
            choice = self._known_within(budget, known, f"no sampled architecture meets the budget ({basis})")
            if choice is None:
                choice = self._choice(found, int(np.argmin(found.excess)), known, False,
                                      f"no sampled architecture meets the budget ({basis}); least over budget shown")
        elif verified:
            choice = self._choice(found, verified[0], known, True, f"best verified, {basis}")
        elif self.check_cost_fn is None:
            choice = self._choice(found, int(ranked[0]), known, True, f"best ranked sample, {basis}")
        else:
            choice = self._checked_choice(budget, found, known)
        choice.meets = all(choice.costs[m] <= b for m, b in zip(self.metrics, budget))  # on the costs the row shows
        return choice

    def _checked_choice(self, budget: np.ndarray, found: Candidates, known: Known | None) -> Choice:
        """The best ranked candidate whose exact (checked) cost meets the budget."""
        for i in found.ranked[:MAX_CHECKS]:
            choice = self._choice(found, int(i), known, True, "")
            if all(choice.costs[m] <= b for m, b in zip(self.metrics, budget)):
                checked = [m for m in self.metrics if m in self._checked(found.archs[i])]
                unchecked = [m for m in self.metrics if m not in checked and m not in self.exact_metrics]
                rest = f", predicted {', '.join(unchecked)}" if unchecked else ""
                choice.note = f"best ranked sample, exact cost checked ({', '.join(checked) or 'none'}){rest}"
                return choice
        failed = f"none of the {min(MAX_CHECKS, len(found.ranked))} best ranked samples meets the budget under the exact cost"
        fallback = self._known_within(budget, known, failed)
        return fallback or self._choice(found, int(found.ranked[0]), known, False, failed)

    def _known_within(self, budget: np.ndarray, known: Known | None, why: str) -> Choice | None:
        """The most accurate known architecture whose measured costs meet ``budget``, as a choice."""
        best = best_known_within(known or {}, self.metrics, budget)
        if best is None:
            return None
        found = self.candidates(budget, best.genes[None], known)
        return self._choice(found, 0, known, True, f"{why}; best evaluated architecture within it")

    def _choice(self, found: Candidates, i: int, known: Known | None, meets: bool, note: str) -> Choice:
        arch, genes = found.archs[i], found.genes[i]
        measured = (known or {}).get(genes.tobytes())
        values = (dict(measured.metrics) if measured else {}) | self.cost_model.exact_of(arch, genes) | self._checked(arch)
        for name, value in zip(self.metrics, found.costs[i]):
            values.setdefault(name, float(value))
        return Choice(arch, float(found.predicted[i]), values, meets, note,
                      dict(zip(self.metrics, map(float, found.costs[i]))), measured)

    def _checked(self, arch: Architecture) -> dict[str, float]:
        return {k: float(v) for k, v in (self.check_cost_fn(arch) if self.check_cost_fn else {}).items()}

    def generate(self, budgets: np.ndarray, seed: int, run_id: str = "generate") -> pd.DataFrame:
        """One ``generated.parquet`` row per budget, with zero true evaluations."""
        budgets = np.asarray(budgets, dtype=float).reshape(-1, len(self.metrics))
        self.scale.check(budgets)
        return self.rows(budgets, [self.answer(budget, seed) for budget in budgets], run_id=run_id,
                         mode="generate", evaluations=0)

    def rows(self, budgets: np.ndarray, choices: Sequence[Choice], *, run_id: str, mode: str,
             evaluations: int) -> pd.DataFrame:
        """``generated.parquet`` rows: ``top1`` is the true accuracy where the pick was evaluated."""
        rows = []
        for budget, choice in zip(budgets, choices):
            top1 = choice.known.top1 if choice.known is not None else float("nan")
            result = EvaluationResult(choice.arch, self.space.arch_id(choice.arch), choice.costs | {"top1": top1})
            row = result_row(result, run_id=run_id, space=self.space.name, arch_text=self.space.to_text(choice.arch),
                             iteration=0, source="generator", predicted_top1=choice.predicted_top1)
            row.update(budget=float(budget[0]), budget_metric=",".join(self.metrics), meets_budget=choice.meets,
                       verified=choice.known is not None, mode=mode, evaluations=evaluations, note=choice.note)
            row.update({f"predicted_{m}": choice.predicted_costs[m] for m in self.predicted_metrics})
            if len(self.metrics) > 1:
                row.update({f"budget@{m}": float(v) for m, v in zip(self.metrics, budget)})
            rows.append(row)
        return pd.DataFrame.from_records(rows)


def best_known_within(known: Known, metrics: Sequence[str], budget: np.ndarray) -> KnownArch | None:
    """The most accurate truly evaluated architecture whose measured costs meet ``budget``."""
    within = [k for k in known.values() if all(m in k.metrics and k.metrics[m] <= b for m, b in zip(metrics, budget))]
    return max(within, key=lambda k: k.top1, default=None)
