"""The fitted generator: what *fit* produces and *generate* answers budgets with, by inference alone.

``FittedGenerator`` holds the budget-conditioned policy, the Pareto-aware ranker R, the accuracy
predictor, log-cost regressors for every budget metric, the budget scale and the space. It knows
no evaluated architecture and no archive: ``generate`` samples several architectures per budget
from the policy, orders those whose cost meets the budget by R (or by predicted accuracy,
``rank_by``; with ``pessimism`` both see a Gaussian process's lower confidence bound, so an
architecture far from every measured one is not trusted on an optimistic guess), and keeps the best one whose exact cost, where the caller can compute it, meets
the budget. It never calls an evaluator, so every answer costs zero true evaluations.

Costs come from ``exact_cost_fn`` (cheap and exact, e.g. a table's params) for the metrics it
offers, else from the regressors; ``check_cost_fn`` (exact but slow, e.g. counting a supernet's
subnet) checks only the best few picks. Answers are deterministic in (seed, budget): each budget
draws from its own seeded ``torch.Generator``, so a budget gets the same answer alone or in a list.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
import torch
from sklearn.linear_model import Ridge

from pipeline.config import GenerateConfig
from pipeline.errors import BudgetError
from pipeline.evaluate.interface import EvaluationResult
from pipeline.generate.budget import BudgetScale, over_budget_excess
from pipeline.generate.policy import ArchGenerator
from pipeline.generate.predictors import AccuracyPredictor, ConfidenceBound, ExactCostFn, GeneFeatures
from pipeline.generate.ranker import RankingMLP
from pipeline.schema import result_row
from pipeline.space.base import Architecture, SearchSpace

RANKER_HIDDEN = 128
MAX_CHECKS = 10  # best picks checked with ``check_cost_fn`` before giving up on a budget


def budget_seed(seed: int, budget: np.ndarray) -> int:
    """A 63-bit seed from the user's seed and the budget's values (per-budget determinism)."""
    digest = hashlib.sha256(np.int64(seed).tobytes() + np.asarray(budget, dtype=np.float64).tobytes()).digest()
    return int.from_bytes(digest[:8], "little") & (2**63 - 1)


def fit_cost_models(features: np.ndarray, measured: dict[str, np.ndarray]) -> dict[str, Ridge]:
    """Ridge on log cost (one-hot genes) per metric with at least 5 usable measurements."""
    models = {}
    for name, values in measured.items():
        values = np.asarray(values, dtype=float)
        usable = np.isfinite(values) & (values > 0)
        if usable.sum() >= 5:
            models[name] = Ridge(alpha=0.1).fit(features[usable], np.log(values[usable]))
    return models


@dataclass
class Choice:
    """The answer for one budget."""

    arch: Architecture
    predicted_top1: float
    costs: dict[str, float]  # every cost known for the pick (exact where computable)
    meets: bool
    note: str
    predicted_costs: dict[str, float] = field(default_factory=dict)  # the generator's view of the metrics


@dataclass
class FittedGenerator:
    """A fitted PNAG generator; see the module docstring."""

    space: SearchSpace
    settings: GenerateConfig
    scale: BudgetScale
    policy: ArchGenerator
    ranker: RankingMLP
    predictor: AccuracyPredictor
    cost_models: dict[str, Ridge]
    accuracy_center: float
    accuracy_scale: float
    fit_info: dict[str, Any] = field(default_factory=dict)
    bound: ConfidenceBound | None = None  # with ``settings.pessimism`` > 0: rank by its lower bound
    exact_cost_fn: ExactCostFn | None = None
    check_cost_fn: ExactCostFn | None = None

    def __post_init__(self) -> None:
        self.features = GeneFeatures(self.space)
        self._canonical: dict[bytes, tuple[Architecture, np.ndarray]] = {}
        self._exact: dict[bytes, dict[str, float]] = {}
        offered = set(self.exact_cost_fn(self.space.smallest())) if self.exact_cost_fn else set()
        self.exact_metrics = tuple(m for m in self.metrics if m in offered)
        missing = [m for m in self.metrics if m not in offered and m not in self.cost_models]
        if missing:
            raise BudgetError(f"budget metric(s) {', '.join(missing)} have neither an exact cost nor a fitted "
                              "cost model in this generator")

    @property
    def metrics(self) -> tuple[str, ...]:
        return tuple(self.scale.metrics)

    @property
    def predicted_metrics(self) -> tuple[str, ...]:
        return tuple(m for m in self.metrics if m not in self.exact_metrics)

    def with_costs(self, exact_cost_fn: ExactCostFn | None, check_cost_fn: ExactCostFn | None = None) -> FittedGenerator:
        """The same fitted models with other cost functions (e.g. a table's after loading)."""
        fields = {name: getattr(self, name) for name in self.__dataclass_fields__}
        return FittedGenerator(**(fields | {"exact_cost_fn": exact_cost_fn, "check_cost_fn": check_cost_fn}))

    # -- architectures and costs --------------------------------------------------------------
    def canonicalise(self, genes: np.ndarray) -> tuple[list[Architecture], np.ndarray]:
        archs, out = [], []
        for row in np.asarray(genes, dtype=np.int64):
            key = row.tobytes()
            if key not in self._canonical:
                arch = self.space.decode(row)
                self._canonical[key] = (arch, self.space.encode(arch))
            archs.append(self._canonical[key][0])
            out.append(self._canonical[key][1])
        return archs, np.asarray(out, dtype=np.int64).reshape(-1, len(self.features.cardinalities))

    def exact_of(self, arch: Architecture, genes: np.ndarray) -> dict[str, float]:
        key = np.asarray(genes, dtype=np.int64).tobytes()
        if key not in self._exact:
            values = self.exact_cost_fn(arch) if self.exact_cost_fn else {}
            self._exact[key] = {k: float(v) for k, v in values.items()}
        return self._exact[key]

    def costs(self, genes: np.ndarray, archs: Sequence[Architecture]) -> np.ndarray:
        """``(n, m)`` costs per budget metric: exact where the cost function offers it, else predicted."""
        features = self.features(genes)
        out = np.empty((len(archs), len(self.metrics)))
        for col, name in enumerate(self.metrics):
            if name in self.exact_metrics:
                out[:, col] = [self.exact_of(a, g)[name] for a, g in zip(archs, genes)]
            else:
                out[:, col] = np.exp(self.cost_models[name].predict(features))
        return out

    def ranker_inputs(self, genes: np.ndarray, costs: np.ndarray, predicted: np.ndarray) -> np.ndarray:
        accuracy = np.clip((predicted - self.accuracy_center) / self.accuracy_scale, -3, 3)
        return np.concatenate([self.features(genes), self.scale.normalise(costs), accuracy[:, None]], axis=1)

    def accuracy(self, genes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(predicted top1, the value ranked by): the GP mean and its lower bound when pessimistic,
        else the LightGBM prediction twice."""
        features = self.features(genes)
        if self.bound is not None and self.settings.pessimism > 0:
            mean, sd = self.bound.mean_and_sd(features)
            return mean, mean - self.settings.pessimism * sd
        predicted = self.predictor.predict(features)
        return predicted, predicted

    # -- generation ---------------------------------------------------------------------------
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

    def answer(self, budget: np.ndarray, seed: int) -> Choice:
        """The generated architecture for one raw budget vector (no true evaluation)."""
        budget = np.asarray(budget, dtype=float).reshape(-1)
        archs, genes = self.canonicalise(self.sample(budget, seed))
        _, first = np.unique(genes, axis=0, return_index=True)
        keep = np.sort(first)
        archs, genes = [archs[i] for i in keep], genes[keep]
        costs = self.costs(genes, archs)
        excess = over_budget_excess(costs, np.repeat(budget[None], len(genes), axis=0))
        predicted, trusted = self.accuracy(genes)
        if self.settings.rank_by == "ranker":
            scaled = np.repeat(self.scale.normalise(budget), len(genes), axis=0)
            key = self.ranker(torch.as_tensor(self.ranker_inputs(genes, costs, trusted), dtype=torch.float32),
                              torch.as_tensor(scaled, dtype=torch.float32)).detach().numpy()
        else:
            key = trusted
        fits = np.flatnonzero(excess <= 0)
        basis = "exact cost" if not self.predicted_metrics else f"predicted {', '.join(self.predicted_metrics)}"
        if not fits.size:
            i = int(np.argmin(excess))
            choice = Choice(archs[i], float(predicted[i]), self._row_costs(archs[i], genes[i], costs[i]), False,
                            f"no sampled architecture meets the budget ({basis}); least over budget shown")
        elif self.check_cost_fn is None:
            i = int(fits[np.argmax(key[fits])])
            choice = Choice(archs[i], float(predicted[i]), self._row_costs(archs[i], genes[i], costs[i]), True,
                            f"best ranked sample, {basis}")
        else:
            ranked = fits[np.argsort(-key[fits], kind="stable")]
            i, choice = self._checked_choice(budget, ranked, archs, genes, costs, predicted)
        choice.predicted_costs = dict(zip(self.metrics, map(float, costs[i])))
        choice.meets = all(choice.costs[m] <= b for m, b in zip(self.metrics, budget))  # on the costs the row shows
        return choice

    def _checked_choice(self, budget: np.ndarray, ranked: np.ndarray, archs: list[Architecture], genes: np.ndarray,
                        costs: np.ndarray, predicted: np.ndarray) -> tuple[int, Choice]:
        """The best ranked sample whose exact (checked) cost meets the budget."""
        for i in ranked[:MAX_CHECKS]:
            row = self._row_costs(archs[i], genes[i], costs[i])
            if all(row[m] <= b for m, b in zip(self.metrics, budget)):
                checked = [m for m in self.metrics if m in self._checked(archs[i])]
                unchecked = [m for m in self.metrics if m not in checked and m not in self.exact_metrics]
                rest = f", predicted {', '.join(unchecked)}" if unchecked else ""
                return int(i), Choice(archs[i], float(predicted[i]), row, True,
                                      f"best ranked sample, exact cost checked ({', '.join(checked) or 'none'}){rest}")
        i = int(ranked[0])
        return i, Choice(archs[i], float(predicted[i]), self._row_costs(archs[i], genes[i], costs[i]), False,
                         f"none of the {min(MAX_CHECKS, len(ranked))} best ranked samples meets the budget under "
                         "the exact cost")

    def _checked(self, arch: Architecture) -> dict[str, float]:
        return {k: float(v) for k, v in (self.check_cost_fn(arch) if self.check_cost_fn else {}).items()}

    def _row_costs(self, arch: Architecture, genes: np.ndarray, costs: np.ndarray) -> dict[str, float]:
        """Every cost known for a pick: exact ones, checked ones, then the metric costs used."""
        values = dict(self.exact_of(arch, genes)) | self._checked(arch)
        for name, value in zip(self.metrics, costs):
            values.setdefault(name, float(value))
        return values

    def generate(self, budgets: np.ndarray, seed: int, run_id: str = "generate") -> pd.DataFrame:
        """One ``generated.parquet`` row per budget, with zero true evaluations."""
        budgets = np.asarray(budgets, dtype=float).reshape(-1, len(self.metrics))
        self.scale.check(budgets)
        rows = []
        for budget in budgets:
            choice = self.answer(budget, seed)
            result = EvaluationResult(choice.arch, self.space.arch_id(choice.arch), choice.costs | {"top1": float("nan")})
            row = result_row(result, run_id=run_id, space=self.space.name, arch_text=self.space.to_text(choice.arch),
                             iteration=0, source="generator", predicted_top1=choice.predicted_top1)
            row.update(budget=float(budget[0]), budget_metric=",".join(self.metrics), meets_budget=choice.meets,
                       verified=False, mode="generate", evaluations=0, note=choice.note)
            row.update({f"predicted_{m}": choice.predicted_costs[m] for m in self.predicted_metrics})
            if len(self.metrics) > 1:
                row.update({f"budget@{m}": float(v) for m, v in zip(self.metrics, budget)})
            rows.append(row)
        return pd.DataFrame.from_records(rows)
