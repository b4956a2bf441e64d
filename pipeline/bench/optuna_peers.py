"""Optuna's samplers as search peers: what a Ray/Optuna user would run instead of NATv2.

Each gene of the space (for NATS-Bench, the operation on each of the six edges) is an Optuna
categorical parameter; the study has two directions (maximise ``top1``, minimise ``params_m``)
and is driven through Optuna's ask/tell interface. The budget counts distinct true evaluations,
as for every method in ``pipeline.bench.search``: a trial that repeats an evaluated architecture
is told its known values without spending an evaluation (Optuna samplers do repeat themselves on
a small categorical space), with a cap on trials so that a sampler stuck on repeats still ends.

Samplers: ``optuna_tpe`` (multivariate TPE), ``optuna_gp`` (``GPSampler``, Bayesian
optimisation), ``optuna_nsga2`` (``NSGAIISampler``, population 30), ``optuna_random``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from pipeline.evaluate.interface import Evaluator
from pipeline.space.base import SearchSpace

OPTUNA_METHODS = ("optuna_tpe", "optuna_gp", "optuna_nsga2", "optuna_random")
TRIALS_PER_EVALUATION = 20  # cap on trials (repeats included) per distinct evaluation


def _sampler(method: str, seed: int):  # noqa: ANN202 - optuna's sampler types
    import optuna

    makers: dict[str, Callable[[], object]] = {
        "optuna_tpe": lambda: optuna.samplers.TPESampler(multivariate=True, seed=seed),
        "optuna_gp": lambda: optuna.samplers.GPSampler(seed=seed),
        "optuna_nsga2": lambda: optuna.samplers.NSGAIISampler(population_size=30, seed=seed),
        "optuna_random": lambda: optuna.samplers.RandomSampler(seed=seed),
    }
    if method not in makers:
        raise ValueError(f"unknown Optuna method {method!r}; known: {', '.join(OPTUNA_METHODS)}")
    return makers[method]()


def run_optuna(evaluator: Evaluator, space: SearchSpace, budget: int, seed: int, method: str) -> list[dict[str, float]]:
    """The metrics of ``budget`` distinct architectures, in the order ``method``'s study chose them."""
    import optuna
    from optuna.distributions import CategoricalDistribution

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    upper = np.asarray(space.gene_upper_bounds(), dtype=int)
    distributions = {f"gene_{i}": CategoricalDistribution(list(range(int(u) + 1))) for i, u in enumerate(upper)}
    study = optuna.create_study(directions=["maximize", "minimize"], sampler=_sampler(method, seed))
    seen: dict[str, dict[str, float]] = {}
    for _ in range(TRIALS_PER_EVALUATION * budget):
        if len(seen) >= budget:
            break
        trial = study.ask(distributions)
        arch = space.decode(np.array([trial.params[f"gene_{i}"] for i in range(len(upper))]))
        key = space.arch_id(arch)
        if key not in seen:
            seen[key] = dict(evaluator.evaluate([arch])[0].metrics)
        study.tell(trial, [seen[key]["top1"], seen[key]["params_m"]])
    return list(seen.values())
