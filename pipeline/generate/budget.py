"""Budgets for PNAG: parsing, validation and the continuous normalisation the generator sees.

A budget is a vector with one value per budget metric (``params_m``, ``macs_m``/``flops_m``,
``latency_ms@<profile>``...). ``BudgetScale`` maps raw budgets to ``[0, 1]`` per metric on a log
scale between the smallest and the largest architecture's cost, so the generator is conditioned on
a continuous value instead of one of a few discrete budgets. ``over_budget_excess`` is the
Pareto-aware evaluator's notion of "how far over budget": the largest log ratio cost / budget over
the metrics (<= 0 means within budget).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from pipeline.errors import BudgetError


def parse_metrics(text: str | Sequence[str]) -> tuple[str, ...]:
    """``"params_m"`` or ``"params_m,flops_m"`` (or a list) as a tuple of metric names."""
    names = [n.strip() for n in (text.split(",") if isinstance(text, str) else text)]
    names = [n for n in names if n]
    if not names:
        raise BudgetError("no budget metric given; name one, e.g. --budget-metric params_m")
    if len(set(names)) != len(names):
        raise BudgetError(f"budget metrics repeat a name: {','.join(names)}")
    return tuple(names)


def parse_budgets(text: str | Sequence[float] | Sequence[Sequence[float]], num_metrics: int) -> np.ndarray:
    """Budgets as an ``(n, num_metrics)`` array.

    Text form: comma-separated budgets; with several metrics each budget is ``a:b`` (one value
    per metric, in the metrics' order). Empty, non-numeric, non-finite or non-positive budgets
    are a ``BudgetError``.
    """
    if isinstance(text, str):
        items = [item.strip() for item in text.split(",") if item.strip()]
        rows = [item.split(":") for item in items]
    else:
        rows = [[v] if np.isscalar(v) else list(v) for v in text]
    if not rows:
        raise BudgetError("the budget list is empty; give at least one budget, e.g. --budgets 0.2,0.5")
    values = []
    for row in rows:
        if len(row) != num_metrics:
            raise BudgetError(
                f"budget {':'.join(map(str, row))!r} has {len(row)} value(s); {num_metrics} metric(s) need "
                f"{num_metrics} value(s) joined by ':'"
            )
        try:
            vector = [float(v) for v in row]
        except (TypeError, ValueError):
            raise BudgetError(f"budget {':'.join(map(str, row))!r} is not a number") from None
        if not all(np.isfinite(vector)) or min(vector) <= 0:
            raise BudgetError(f"budget {':'.join(map(str, row))!r} must be positive and finite")
        values.append(vector)
    return np.asarray(values, dtype=float)


@dataclass(frozen=True)
class BudgetScale:
    """Log-scale normalisation of budgets between the smallest (0) and largest (1) costs."""

    metrics: tuple[str, ...]
    low: np.ndarray
    high: np.ndarray

    def __post_init__(self) -> None:
        low, high = np.asarray(self.low, dtype=float), np.asarray(self.high, dtype=float)
        if low.shape != (len(self.metrics),) or high.shape != low.shape:
            raise ValueError("low/high need one value per metric")
        if not (np.all(low > 0) and np.all(high > low)):
            raise BudgetError(
                f"cannot scale budgets: costs of the smallest/largest architecture ({low.tolist()}, "
                f"{high.tolist()}) must be positive and increasing"
            )
        object.__setattr__(self, "low", low)
        object.__setattr__(self, "high", high)

    def normalise(self, values: np.ndarray) -> np.ndarray:
        """Raw budgets or costs ``(n, m)`` -> ``[0, 1]`` (clipped) on a log scale."""
        values = np.asarray(values, dtype=float).reshape(-1, len(self.metrics))
        scaled = (np.log(values) - np.log(self.low)) / (np.log(self.high) - np.log(self.low))
        return np.clip(scaled, 0.0, 1.0)

    def denormalise(self, scaled: np.ndarray) -> np.ndarray:
        """``[0, 1]`` values ``(n, m)`` -> raw budgets."""
        scaled = np.asarray(scaled, dtype=float).reshape(-1, len(self.metrics))
        return np.exp(np.log(self.low) + scaled * (np.log(self.high) - np.log(self.low)))

    def check(self, budgets: np.ndarray) -> None:
        """Reject budgets below the smallest architecture's cost (one line naming the budget)."""
        budgets = np.asarray(budgets, dtype=float).reshape(-1, len(self.metrics))
        for row in budgets:
            below = np.flatnonzero(row < self.low * (1 - 1e-9))
            if below.size:
                i = int(below[0])
                raise BudgetError(
                    f"budget {row[i]:g} on {self.metrics[i]} is below the smallest architecture's cost "
                    f"({self.low[i]:g}); no architecture can meet it"
                )


def over_budget_excess(costs: np.ndarray, budgets: np.ndarray) -> np.ndarray:
    """Largest log(cost / budget) over metrics, row-wise; ``<= 0`` means within budget."""
    costs = np.asarray(costs, dtype=float)
    budgets = np.asarray(budgets, dtype=float)
    return np.max(np.log(costs) - np.log(budgets), axis=-1)
