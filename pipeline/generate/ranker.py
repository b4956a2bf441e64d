"""PNAG's Pareto-aware evaluator R(arch, budget) and its dominance labelling.

``dominance_labels`` labels a pair (a, b) under a budget, following the paper (docs/methods.md, "Generation: PNAG"):

- both over budget: the lower-cost one wins (with several metrics: the smaller largest log
  ratio cost / budget);
- both within budget: the higher-accuracy one wins;
- only one within budget: that one wins.

Label 1 means a wins, 0 means b wins, 0.5 is a tie (ties are not trained on).
``ParetoRanker`` is an MLP on (one-hot genes, normalised budget) trained with the pairwise
logistic ranking loss ``BCE(sigmoid(R(a) - R(b)), label)`` on pairs drawn from a pool of
architectures whose accuracy comes from true evaluations or the accuracy predictor and whose cost
is exact or predicted. Budgets are drawn continuously over the normalised range.
"""

from __future__ import annotations

import math

import numpy as np
import torch
from torch import nn

from pipeline.generate.budget import BudgetScale, over_budget_excess


def dominance_labels(
    acc_a: np.ndarray, cost_a: np.ndarray, acc_b: np.ndarray, cost_b: np.ndarray, budget: np.ndarray
) -> np.ndarray:
    """Pair labels under ``budget``; costs and budgets are ``(n, m)`` (or ``(n,)`` for one metric)."""
    acc_a, acc_b = np.asarray(acc_a, dtype=float), np.asarray(acc_b, dtype=float)
    cost_a = np.asarray(cost_a, dtype=float).reshape(len(acc_a), -1)
    cost_b = np.asarray(cost_b, dtype=float).reshape(len(acc_b), -1)
    budget = np.asarray(budget, dtype=float).reshape(len(acc_a), -1)
    excess_a, excess_b = over_budget_excess(cost_a, budget), over_budget_excess(cost_b, budget)
    within_a, within_b = excess_a <= 0, excess_b <= 0
    by_accuracy = np.where(acc_a > acc_b, 1.0, np.where(acc_a < acc_b, 0.0, 0.5))
    by_cost = np.where(excess_a < excess_b, 1.0, np.where(excess_a > excess_b, 0.0, 0.5))
    return np.where(
        within_a & within_b, by_accuracy,
        np.where(~within_a & ~within_b, by_cost, np.where(within_a, 1.0, 0.0)),
    )


def seeded_init(module: nn.Module, generator: torch.Generator) -> nn.Module:
    """Re-initialise every parameter from ``generator`` (uniform +-1/sqrt(fan_in); the global RNG is untouched)."""
    with torch.no_grad():
        for param in module.parameters():
            fan_in = param.shape[1] if param.dim() > 1 else param.shape[0]
            bound = 1.0 / math.sqrt(max(1, fan_in))
            param.copy_(torch.rand(param.shape, generator=generator) * 2 * bound - bound)
    return module


class RankingMLP(nn.Module):
    """R(arch, budget): an MLP on one-hot genes concatenated with the normalised budget."""

    def __init__(self, feature_width: int, budget_dim: int, hidden: int = 128):
        super().__init__()
        self.net = nn.Sequential(
            nn.Linear(feature_width + budget_dim, hidden), nn.ReLU(),
            nn.Linear(hidden, hidden), nn.ReLU(),
            nn.Linear(hidden, 1),
        )

    def forward(self, features: torch.Tensor, budget_norm: torch.Tensor) -> torch.Tensor:
        return self.net(torch.cat([features, budget_norm], dim=1)).squeeze(1)


class ParetoRanker:
    """Trains and queries the ranking MLP R; deterministic given its ``torch.Generator`` seed."""

    def __init__(self, feature_width: int, scale: BudgetScale, seed: int, hidden: int = 128, lr: float = 2e-3):
        self.scale = scale
        self.generator = torch.Generator().manual_seed(seed)
        self.model = seeded_init(RankingMLP(feature_width, len(scale.metrics), hidden), self.generator)
        self.optimizer = torch.optim.Adam(self.model.parameters(), lr=lr)

    def train(self, features: np.ndarray, accuracy: np.ndarray, costs: np.ndarray, steps: int,
              batch_size: int = 256) -> float:
        """Fit R on random pairs of the pool under continuously sampled budgets; mean last loss."""
        pool = torch.as_tensor(features, dtype=torch.float32)
        n, m = len(pool), len(self.scale.metrics)
        cost_norm = self.scale.normalise(costs)
        losses = []
        self.model.train()
        for _ in range(steps):
            idx = torch.randint(0, n, (2, batch_size), generator=self.generator).numpy()
            # half the budgets uniform over the range, half near the first architecture's cost, so
            # many pairs are decided inside the budget (by accuracy) rather than by the easy cost rules
            budget_norm = torch.rand(batch_size, m, generator=self.generator).numpy()
            near = cost_norm[idx[0]] + 0.05 * torch.randn(batch_size, m, generator=self.generator).numpy()
            half = batch_size // 2
            budget_norm[:half] = np.clip(near[:half], 0.0, 1.0)
            budget = self.scale.denormalise(budget_norm)
            labels = dominance_labels(accuracy[idx[0]], costs[idx[0]], accuracy[idx[1]], costs[idx[1]], budget)
            keep = labels != 0.5
            if not keep.any():
                continue
            b = torch.as_tensor(budget_norm[keep], dtype=torch.float32)
            a_idx, b_idx = torch.as_tensor(idx[0][keep]), torch.as_tensor(idx[1][keep])
            margin = self.model(pool[a_idx], b) - self.model(pool[b_idx], b)
            loss = nn.functional.binary_cross_entropy_with_logits(
                margin, torch.as_tensor(labels[keep], dtype=torch.float32)
            )
            self.optimizer.zero_grad()
            loss.backward()
            self.optimizer.step()
            losses.append(float(loss.detach()))
        tail = losses[-max(1, len(losses) // 10):]
        return float(np.mean(tail)) if tail else float("nan")

    @torch.no_grad()
    def score(self, features: torch.Tensor | np.ndarray, budget_norm: torch.Tensor | np.ndarray) -> torch.Tensor:
        """R for each (architecture, budget) row."""
        self.model.eval()
        return self.model(torch.as_tensor(features, dtype=torch.float32), torch.as_tensor(budget_norm, dtype=torch.float32))
