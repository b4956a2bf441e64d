"""PNAG's per-budget search mode: experimental, kept to compare with, rows labelled ``mode=search``.

Unlike *fit* then *generate*, it is told the requested budgets. It was measured worse than the
default generate mode on both benchmark tables (``jobs/bench_generate.py``, method ``search``), so
its own knobs are not in the product config: they are ``SearchModeOptions``, keyword-only, and the
benchmark's variants of them live in ``pipeline.bench.generation``.

- ``generate_with_evaluator``: spends its verification evaluations on the requested budgets and
  returns the best truly evaluated architecture within each;
- ``generate_from_archive``: the hybrid over an archive (samples, mutations of the archive's best
  and the archive itself; the best archived one within the budget as a fallback).

Both answer through the trainer's ``FittedGenerator`` (``choose``, the one pick rule), with the
evaluated architectures as extra candidates whose measured accuracy and costs replace predictions.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from pipeline.config import GenerateConfig
from pipeline.evaluate.interface import Evaluator
from pipeline.generate.predictors import ExactCostFn
from pipeline.generate.training import PNAGTrainer, explore, progress, spend, start_with_evaluator, trainer_on_archive
from pipeline.space.base import SearchSpace


@dataclass(frozen=True, kw_only=True)
class SearchModeOptions:
    """Experimental knobs of the search mode (measured no better than the defaults).

    ``verify``: truly evaluate, per requested budget, the best predicted unevaluated architecture
    (counts against ``evals``) and answer with the best verified one; ``explore_fraction``: share
    of ``evals`` spent on continuous-budget proposals before verifying.
    """

    verify: bool = True
    explore_fraction: float = 0.1

    def __post_init__(self) -> None:
        if not 0.0 <= self.explore_fraction < 1.0:
            raise ValueError("explore_fraction must be in [0, 1)")


def answer_budgets(trainer: PNAGTrainer, budgets: np.ndarray, *, run_id: str, verified_only: bool,
                   evaluations: int) -> pd.DataFrame:
    """One ``mode=search`` row per budget, picked by the trainer's fitted generator among the
    policy's samples, mutations of the best known architectures and the known ones."""
    model = trainer.fitted({})
    choices = [model.choose(budget, trainer.candidates(budget), trainer.known, verified_only) for budget in budgets]
    return model.rows(budgets, choices, run_id=run_id, mode="search", evaluations=evaluations)


def generate_with_evaluator(
    space: SearchSpace, evaluator: Evaluator, budgets: np.ndarray, settings: GenerateConfig, seed: int,
    run_id: str = "generate", measured_metrics: Sequence[str] = (),
    exact_cost_fn: ExactCostFn | None = None, exact_names: Sequence[str] | None = None,
    *, options: SearchModeOptions = SearchModeOptions(),
) -> tuple[pd.DataFrame, PNAGTrainer]:
    """The per-budget search: after the random start and a share of continuous-budget proposals,
    the rest of ``settings.evals`` verifies, for each REQUESTED budget, the policy's best predicted
    unevaluated architecture meeting it; the answer is the best verified one."""
    budgets = np.asarray(budgets, dtype=float).reshape(-1, len(settings.budget_metrics))
    trainer, budget = start_with_evaluator(space, evaluator, settings, seed, budgets, measured_metrics,
                                           exact_cost_fn, exact_names)
    n_init = trainer.evaluations
    n_explore = int(round(settings.evals * options.explore_fraction)) if options.verify else settings.evals - n_init
    rounds = explore(trainer, evaluator, budget, n_init + n_explore)
    while options.verify and not budget.done(progress(trainer)):
        taken: set[bytes] = set()
        picks = [p for p in (trainer.fresh_best(b, taken) for b in budgets) if p is not None]
        if not picks:
            break
        spend(trainer, evaluator, budget, picks)
        rounds += 1
        trainer.refit(models=rounds % settings.refit_every == 0)
    frame = answer_budgets(trainer, budgets, run_id=run_id, verified_only=options.verify,
                           evaluations=trainer.evaluations)
    return frame, trainer


def generate_from_archive(
    space: SearchSpace, archive: pd.DataFrame, budgets: np.ndarray, settings: GenerateConfig, seed: int,
    run_id: str = "generate", exact_cost_fn: ExactCostFn | None = None, exact_names: Sequence[str] = (),
    check_cost_fn: ExactCostFn | None = None,
) -> tuple[pd.DataFrame, PNAGTrainer]:
    """The search mode over an archive (the hybrid): learn from the archive, spend no evaluations,
    and return per budget the best predicted architecture among samples, mutations of the
    archive's best and the archive itself (falling back to the best archived one within the budget).

    Costs come from ``exact_cost_fn`` for ``exact_names`` (must be cheap), else from regressors on
    the archive's measured columns; ``check_cost_fn`` (expensive, exact) fixes the budget range and
    checks the picks, so ``meets_budget`` is exact even when the search used predicted costs.
    """
    budgets = np.asarray(budgets, dtype=float).reshape(-1, len(settings.budget_metrics))
    trainer = trainer_on_archive(space, archive, settings, seed, exact_cost_fn, exact_names, check_cost_fn, budgets)
    return answer_budgets(trainer, budgets, run_id=run_id, verified_only=False, evaluations=0), trainer
