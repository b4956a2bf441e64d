"""Where PNAG's training data comes from, and how true evaluations are spent.

*fit* (the generator as the paper claims it; the requested budgets are not an input):

- ``fit_with_evaluator``: at most ``settings.evals`` true evaluations, on random architectures and
  on the generator's proposals for budgets drawn continuously over the whole cost range;
- ``fit_from_archive``: a finished search's archive (no true evaluation).

Both return a ``FittedGenerator`` (``pipeline.generate.generator``), which answers any budget
with zero true evaluations and saves as a ``generator/`` directory (``pipeline.generate.store``).

*search* mode (a per-budget search, kept to compare with; rows are labelled ``mode=search``):

- ``generate_with_evaluator``: told the requested budgets, it spends its verification
  evaluations on them and returns the best truly evaluated architecture within each;
- ``generate_from_archive``: the hybrid over an archive (samples, mutations of the archive's best
  and the archive itself; the best archived one within the budget as a fallback).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from pipeline.config import GenerateConfig
from pipeline.errors import BudgetError
from pipeline.evaluate.interface import Evaluator
from pipeline.generate.engine import PNAG
from pipeline.generate.generator import FittedGenerator, fit_cost_models
from pipeline.generate.predictors import ExactCostFn
from pipeline.search.termination import MaxEvaluations, Progress
from pipeline.space.base import Architecture, SearchSpace


def check_metrics(metrics: Sequence[str], available: Sequence[str]) -> None:
    """Unknown budget metric -> one ``BudgetError`` listing the known ones."""
    for name in metrics:
        if name not in available:
            raise BudgetError(f"unknown budget metric {name!r}; available: {', '.join(sorted(set(available)))}")


def _spend(pnag: PNAG, evaluator: Evaluator, budget: MaxEvaluations, archs: Sequence[Architecture]) -> None:
    """Truly evaluate ``archs`` (as many as ``budget`` still allows) and teach ``pnag`` the results."""
    archs = list(archs)[: budget.evaluations_left(_progress(pnag))]
    if archs:
        pnag.add_results(evaluator.evaluate(archs))


def _progress(pnag: PNAG) -> Progress:
    return Progress(evaluations=pnag.evaluations)


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


def _explore(pnag: PNAG, evaluator: Evaluator, budget: MaxEvaluations, until: int, rounds: int = 0) -> int:
    """Spend evaluations up to ``until`` on the generator's best predicted, not yet evaluated
    proposals for budgets drawn continuously (stratified) over the whole range; returns the rounds."""
    metrics = len(pnag.metrics)
    while pnag.evaluations < until and not budget.done(_progress(pnag)):
        count = min(10, until - pnag.evaluations)
        scaled = (np.stack([pnag.rng.permutation(count) for _ in range(metrics)], 1)
                  + pnag.rng.random((count, metrics))) / count
        taken: set[bytes] = set()
        picks = [_fresh_best(pnag, b, taken) for b in pnag.scale.denormalise(scaled)]  # type: ignore[union-attr]
        picks = [p for p in picks if p is not None]
        if not picks:
            break
        _spend(pnag, evaluator, budget, picks)
        rounds += 1
        pnag.refit(models=rounds % pnag.settings.refit_every == 0)
    return rounds


def _start(space: SearchSpace, evaluator: Evaluator, settings: GenerateConfig, seed: int,
           budgets: np.ndarray | None, measured_metrics: Sequence[str], exact_cost_fn: ExactCostFn | None,
           exact_names: Sequence[str] | None) -> tuple[PNAG, MaxEvaluations]:
    """Checks (before any evaluation), then the random initial evaluations and the first fit."""
    exact_names = tuple(evaluator.cheap_metric_names if exact_names is None else exact_names)
    check_metrics(settings.budget_metrics, list(exact_names) + list(measured_metrics))
    if settings.evals < 6:
        raise BudgetError(f"PNAG needs at least 6 true evaluations, got {settings.evals}")
    pnag = PNAG(space, settings, seed, exact_cost_fn or evaluator.cheap_metrics, exact_names)
    if budgets is not None and pnag.cost.all_exact:  # reject impossible budgets before spending anything
        pnag._setup_scale().check(budgets)  # noqa: SLF001 - same package
    budget = MaxEvaluations(settings.evals)
    n_init = max(5, int(round(settings.evals * settings.init_fraction)))
    _spend(pnag, evaluator, budget, _initial_archs(space, pnag.rng, n_init))
    pnag.refit(first=True)
    if budgets is not None:
        pnag.scale.check(budgets)  # type: ignore[union-attr]
    return pnag, budget


def fit_with_evaluator(
    space: SearchSpace, evaluator: Evaluator, settings: GenerateConfig, seed: int,
    measured_metrics: Sequence[str] = (), exact_cost_fn: ExactCostFn | None = None,
    exact_names: Sequence[str] | None = None, check_budgets: np.ndarray | None = None,
) -> FittedGenerator:
    """*fit*: at most ``settings.evals`` true evaluations, none aimed at a requested budget.

    A third go to random architectures (plus the smallest and the largest), the rest to the
    generator's best predicted proposals for budgets drawn continuously over the whole range, with
    refits in between; then a last, longer refit of every model in which unmeasured accuracies are
    a Gaussian process's lower confidence bound (``settings.pessimism``). ``check_budgets`` is only validated up
    front (so an impossible budget costs nothing); it does not steer the fit.
    """
    budgets = None if check_budgets is None else np.asarray(check_budgets, float).reshape(-1, len(settings.budget_metrics))
    pnag, budget = _start(space, evaluator, settings, seed, budgets, measured_metrics, exact_cost_fn, exact_names)
    _explore(pnag, evaluator, budget, settings.evals)
    pnag.pessimism = settings.pessimism  # the final fit: R and the policy learn to trust what was measured
    pnag.refit(models=True, full_steps=True, clone=True)
    return to_fitted(pnag, {"seed": seed, "evaluations": pnag.evaluations, "source": "evaluator"})


def generate_with_evaluator(
    space: SearchSpace, evaluator: Evaluator, budgets: np.ndarray, settings: GenerateConfig, seed: int,
    run_id: str = "generate", measured_metrics: Sequence[str] = (),
    exact_cost_fn: ExactCostFn | None = None, exact_names: Sequence[str] | None = None,
) -> tuple[pd.DataFrame, PNAG]:
    """*search* mode, the per-budget search: after the random start and a share of continuous-budget
    proposals, the rest of ``settings.evals`` verifies, for each REQUESTED budget, the generator's
    best predicted unevaluated architecture meeting it; the answer is the best verified one."""
    budgets = np.asarray(budgets, dtype=float).reshape(-1, len(settings.budget_metrics))
    pnag, budget = _start(space, evaluator, settings, seed, budgets, measured_metrics, exact_cost_fn, exact_names)
    n_init = pnag.evaluations
    n_explore = int(round(settings.evals * settings.explore_fraction)) if settings.verify else settings.evals - n_init
    rounds = _explore(pnag, evaluator, budget, n_init + n_explore)
    while settings.verify and not budget.done(_progress(pnag)):
        taken: set[bytes] = set()
        picks = [p for p in (_fresh_best(pnag, b, taken) for b in budgets) if p is not None]
        if not picks:
            break
        _spend(pnag, evaluator, budget, picks)
        rounds += 1
        pnag.refit(models=rounds % settings.refit_every == 0)
    frame = pnag.generated_rows(budgets, run_id=run_id, verified_only=settings.verify)
    frame["evaluations"] = pnag.evaluations
    frame["mode"] = "search"
    return frame, pnag


def _archive_pnag(space: SearchSpace, archive: pd.DataFrame, settings: GenerateConfig, seed: int,
                  exact_cost_fn: ExactCostFn | None, exact_names: Sequence[str], check_cost_fn: ExactCostFn | None,
                  budgets: np.ndarray | None, pessimism: float = 0.0, clone: bool = False) -> PNAG:
    """A PNAG fitted on an archive frame's ``ok`` rows (``budgets`` are only validated, first)."""
    if "arch" not in archive or "top1" not in archive:
        raise BudgetError("the archive lacks an 'arch' or 'top1' column; it is not a search archive")
    measured = [c for c in archive.columns if c in ("params_m", "macs_m", "flops_m") or c.startswith("latency_ms@")]
    check_metrics(settings.budget_metrics, list(exact_names) + measured + list(_offered(check_cost_fn, space)))
    pnag = PNAG(space, settings, seed, exact_cost_fn, exact_names, check_cost_fn)
    pnag.pessimism = pessimism
    ok = archive[archive["status"] == "ok"] if "status" in archive else archive
    for record in ok.to_dict("records"):
        metrics = {k: float(v) for k, v in record.items() if k in measured and pd.notna(v)}
        pnag.add_known(space.from_text(str(record["arch"])), float(record["top1"]), metrics)
    if budgets is not None and len(pnag.checkable_metrics()) == len(pnag.metrics):  # fail fast, before fitting
        pnag._setup_scale().check(budgets)  # noqa: SLF001 - same package
    pnag.refit(first=True, clone=clone)
    if budgets is not None:
        pnag.scale.check(budgets)  # type: ignore[union-attr]
    return pnag


def _offered(cost_fn: ExactCostFn | None, space: SearchSpace) -> tuple[str, ...]:
    return tuple(cost_fn(space.smallest())) if cost_fn is not None else ()


def fit_from_archive(
    space: SearchSpace, archive: pd.DataFrame, settings: GenerateConfig, seed: int,
    exact_cost_fn: ExactCostFn | None = None, exact_names: Sequence[str] = (),
    check_cost_fn: ExactCostFn | None = None, check_budgets: np.ndarray | None = None,
) -> FittedGenerator:
    """*fit* on a finished search's archive (``arch`` text, ``top1``, cost columns): no true evaluation."""
    budgets = None if check_budgets is None else np.asarray(check_budgets, float).reshape(-1, len(settings.budget_metrics))
    pnag = _archive_pnag(space, archive, settings, seed, exact_cost_fn, exact_names, check_cost_fn, budgets,
                         pessimism=settings.pessimism, clone=True)
    info = {"seed": seed, "evaluations": 0, "source": "archive", "archive_rows": len(pnag.known)}
    return to_fitted(pnag, info).with_costs(exact_cost_fn, check_cost_fn)


def generate_from_archive(
    space: SearchSpace, archive: pd.DataFrame, budgets: np.ndarray, settings: GenerateConfig, seed: int,
    run_id: str = "generate", exact_cost_fn: ExactCostFn | None = None, exact_names: Sequence[str] = (),
    check_cost_fn: ExactCostFn | None = None,
) -> tuple[pd.DataFrame, PNAG]:
    """*search* mode over an archive (the hybrid): learn from the archive, spend no evaluations, and
    return per budget the best predicted architecture among samples, mutations of the archive's
    best and the archive itself (falling back to the best archived one within the budget).

    Costs come from ``exact_cost_fn`` for ``exact_names`` (must be cheap), else from regressors on
    the archive's measured columns; ``check_cost_fn`` (expensive, exact) fixes the budget range and
    checks the picks, so ``meets_budget`` is exact even when the search used predicted costs.
    """
    budgets = np.asarray(budgets, dtype=float).reshape(-1, len(settings.budget_metrics))
    pnag = _archive_pnag(space, archive, settings, seed, exact_cost_fn, exact_names, check_cost_fn, budgets)
    frame = pnag.generated_rows(budgets, run_id=run_id, verified_only=False)
    frame["evaluations"] = 0
    frame["mode"] = "search"
    return frame, pnag


def to_fitted(pnag: PNAG, fit_info: dict) -> FittedGenerator:
    """The fitted parts of ``pnag`` as a ``FittedGenerator`` (it keeps no evaluated architecture)."""
    genes, _ = pnag._known_arrays()  # noqa: SLF001 - same package
    known = list(pnag.known.values())
    measured = {m: np.array([k.metrics.get(m, np.nan) for k in known]) for m in pnag.metrics}
    return FittedGenerator(
        space=pnag.space, settings=pnag.settings, scale=pnag.scale, policy=pnag.trainer.policy,  # type: ignore[union-attr]
        ranker=pnag.ranker.model, predictor=pnag.predictor, bound=pnag.bound,  # type: ignore[union-attr]
        cost_models=fit_cost_models(pnag.features(genes), measured),
        accuracy_center=pnag._acc_center, accuracy_scale=pnag._acc_scale,  # noqa: SLF001
        fit_info=fit_info | {"known": len(known)},
        exact_cost_fn=pnag.cost.exact_fn if pnag.cost.exact else None,
    )


def settings_from_config(values: dict) -> GenerateConfig:
    """The ``generate`` section from a mapping of its fields (unknown keys are ignored)."""
    return GenerateConfig(**{k: v for k, v in values.items() if k in GenerateConfig.model_fields})
