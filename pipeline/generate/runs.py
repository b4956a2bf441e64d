"""PNAG's two entry points: where the training data comes from and how evaluations are spent.

- ``generate_with_evaluator`` (the within-budget path): at most ``settings.evals`` true
  evaluations in total. A third go to random architectures (plus the smallest and the largest), a
  share to the generator's best predicted proposals for budgets drawn continuously over the range
  (training data), and the rest to verification: for each requested budget, the generator's best
  predicted, not yet evaluated architecture that meets the budget is truly evaluated, the models
  are refitted, and so on until the evaluations are spent. The result per budget is the best
  verified architecture meeting it.
- ``generate_from_archive``: learn from a finished search's archive (e.g. NATv2's
  ``archive.parquet``), spend no evaluations, and return the best predicted architecture per budget.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.errors import BudgetError
from pipeline.evaluate.interface import Evaluator
from pipeline.generate.engine import PNAG, PNAGSettings
from pipeline.generate.predictors import ExactCostFn
from pipeline.space.base import Architecture, SearchSpace


def check_metrics(metrics: Sequence[str], available: Sequence[str]) -> None:
    """Unknown budget metric -> one ``BudgetError`` listing the known ones."""
    for name in metrics:
        if name not in available:
            raise BudgetError(f"unknown budget metric {name!r}; available: {', '.join(sorted(set(available)))}")


class _CountedEvaluator:
    """Evaluates through ``evaluator`` and refuses to go past ``limit`` true evaluations."""

    def __init__(self, evaluator: Evaluator, pnag: PNAG, limit: int):
        self.evaluator, self.pnag, self.limit = evaluator, pnag, limit
        self.start = evaluator.evaluations

    @property
    def used(self) -> int:
        return self.evaluator.evaluations - self.start

    @property
    def left(self) -> int:
        return self.limit - self.used

    def __call__(self, archs: Sequence[Architecture]) -> None:
        archs = list(archs)[: max(0, self.left)]
        if archs:
            self.pnag.add_results(self.evaluator.evaluate(archs))
        if self.used > self.limit:
            raise RuntimeError(f"PNAG used {self.used} evaluations, more than its {self.limit}")


def _fresh_best(pnag: PNAG, budget: np.ndarray, taken: set[bytes]) -> Architecture | None:
    """The best predicted architecture meeting ``budget`` that is neither evaluated nor taken."""
    found = pnag.candidates(budget, include_known=False)
    for arch, genes, known in zip(found.archs, found.genes, found.known):
        if not known and genes.tobytes() not in taken:
            taken.add(genes.tobytes())
            return arch
    return None


def _initial_archs(space: SearchSpace, rng: np.random.Generator, count: int) -> list[Architecture]:
    archs = {space.arch_id(a): space.canonical(a) for a in (space.smallest(), space.largest())}
    for _ in range(50 * count):
        if len(archs) >= count:
            break
        arch = space.sample(rng)
        archs.setdefault(space.arch_id(arch), space.canonical(arch))
    return list(archs.values())[:count]


def generate_with_evaluator(
    space: SearchSpace, evaluator: Evaluator, budgets: np.ndarray, settings: PNAGSettings, seed: int,
    run_id: str = "generate", measured_metrics: Sequence[str] = (),
    exact_cost_fn: ExactCostFn | None = None, exact_names: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, PNAG]:
    """The within-budget path; returns the generated rows and the fitted PNAG."""
    exact_names = tuple(evaluator.cheap_metric_names if exact_names is None else exact_names)
    check_metrics(settings.budget_metrics, list(exact_names) + list(measured_metrics))
    if settings.evals < 6:
        raise BudgetError(f"PNAG needs at least 6 true evaluations, got {settings.evals}")
    pnag = PNAG(space, settings, seed, exact_cost_fn or evaluator.cheap_metrics, exact_names)
    budgets = np.asarray(budgets, dtype=float).reshape(-1, len(settings.budget_metrics))
    if pnag.cost.all_exact:  # reject impossible budgets before spending anything
        pnag._setup_scale().check(budgets)  # noqa: SLF001 - same package
    evaluate = _CountedEvaluator(evaluator, pnag, settings.evals)
    n_init = max(5, int(round(settings.evals * settings.init_fraction)))
    n_explore = int(round(settings.evals * settings.explore_fraction))
    if not settings.verify:
        n_explore = settings.evals - n_init
    evaluate(_initial_archs(space, pnag.rng, n_init))
    pnag.refit(first=True)
    pnag.scale.check(budgets)  # type: ignore[union-attr]
    metrics, rounds = len(settings.budget_metrics), 0
    while evaluate.used < n_init + n_explore and evaluate.left > 0:
        count = min(10, n_init + n_explore - evaluate.used)
        scaled = (np.stack([pnag.rng.permutation(count) for _ in range(metrics)], 1)
                  + pnag.rng.random((count, metrics))) / count
        taken: set[bytes] = set()
        picks = [_fresh_best(pnag, b, taken) for b in pnag.scale.denormalise(scaled)]  # type: ignore[union-attr]
        picks = [p for p in picks if p is not None]
        if not picks:
            break
        evaluate(picks)
        rounds += 1
        pnag.refit(models=rounds % settings.refit_every == 0)
    while settings.verify and evaluate.left > 0:
        taken = set()
        picks = [p for p in (_fresh_best(pnag, b, taken) for b in budgets) if p is not None]
        if not picks:
            break
        evaluate(picks)
        rounds += 1
        pnag.refit(models=rounds % settings.refit_every == 0)
    frame = pnag.generated_rows(budgets, run_id=run_id, verified_only=settings.verify)
    frame["evaluations"] = evaluate.used
    return frame, pnag


def generate_from_archive(
    space: SearchSpace, archive: pd.DataFrame, budgets: np.ndarray, settings: PNAGSettings, seed: int,
    run_id: str = "generate", exact_cost_fn: ExactCostFn | None = None, exact_names: Sequence[str] = (),
    check_cost_fn: ExactCostFn | None = None,
) -> tuple[pd.DataFrame, PNAG]:
    """Learn from an archive frame (``arch`` text, ``top1``, cost columns); no true evaluations.

    Costs come from ``exact_cost_fn`` for ``exact_names`` (must be cheap), else from regressors on
    the archive's measured columns; ``check_cost_fn`` (expensive, exact) fixes the budget range and
    checks the picks, so ``meets_budget`` is exact even when the search used predicted costs.
    """
    if "arch" not in archive or "top1" not in archive:
        raise BudgetError("the archive lacks an 'arch' or 'top1' column; it is not a search archive")
    measured = [c for c in archive.columns if c in ("params_m", "macs_m", "flops_m") or c.startswith("latency_ms@")]
    check_metrics(settings.budget_metrics, list(exact_names) + measured)
    pnag = PNAG(space, settings, seed, exact_cost_fn, exact_names, check_cost_fn)
    ok = archive[archive["status"] == "ok"] if "status" in archive else archive
    for record in ok.to_dict("records"):
        metrics = {k: float(v) for k, v in record.items() if k in measured and pd.notna(v)}
        pnag.add_known(space.from_text(str(record["arch"])), float(record["top1"]), metrics)
    budgets = np.asarray(budgets, dtype=float).reshape(-1, len(settings.budget_metrics))
    if len(pnag.checkable_metrics()) == len(settings.budget_metrics):  # fail fast, before any fitting
        pnag._setup_scale().check(budgets)  # noqa: SLF001 - same package
    pnag.refit(first=True)
    pnag.scale.check(budgets)  # type: ignore[union-attr]
    frame = pnag.generated_rows(budgets, run_id=run_id, verified_only=False)
    frame["evaluations"] = 0
    return frame, pnag


def settings_from_config(values: dict) -> PNAGSettings:
    """``PNAGSettings`` from the ``generate`` config section's fields (unknown keys are ignored)."""
    fields = PNAGSettings.__dataclass_fields__
    kept = {k: v for k, v in values.items() if k in fields}
    if "budget_metrics" in kept:
        kept["budget_metrics"] = tuple(kept["budget_metrics"])
    return PNAGSettings(**kept)
