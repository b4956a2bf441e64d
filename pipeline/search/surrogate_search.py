"""Search on the surrogate: pymoo NSGA-II (2 objectives) or NSGA-III (3+) over integer genes.

The problem's objective function is a callable from integer genes to minimisation-form objective
values (surrogate predictions, exact cheap metrics, latency predictions); it never touches a true
evaluator. Operators follow NAT: integer random sampling, two-point crossover, polynomial mutation
with rounding repair, duplicate elimination. The initial population can be seeded with archive
members. Every gene vector the algorithm visits is recorded, and the candidate pool returned is
all visited vectors minus the excluded ones (already truly evaluated), with their predicted values.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable

import numpy as np
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.algorithms.moo.nsga3 import NSGA3
from pymoo.core.problem import Problem
from pymoo.operators.crossover.pntx import TwoPointCrossover
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.optimize import minimize

from pipeline.search.survival import reference_directions

ObjectiveFunction = Callable[[np.ndarray], np.ndarray]


class RecordingProblem(Problem):
    """Integer-gene problem that evaluates ``objective_fn`` and remembers every vector it saw."""

    def __init__(self, objective_fn: ObjectiveFunction, upper: np.ndarray, n_obj: int):
        super().__init__(n_var=len(upper), n_obj=n_obj, xl=np.zeros(len(upper)), xu=np.asarray(upper, dtype=float), vtype=int)
        self.objective_fn = objective_fn
        self.seen: dict[tuple[int, ...], np.ndarray] = {}

    def _evaluate(self, x, out, *args, **kwargs):
        genes = np.clip(np.rint(x), 0, self.xu).astype(np.int64)
        values = np.asarray(self.objective_fn(genes), dtype=float).reshape(len(genes), self.n_obj)
        for row, value in zip(genes, values):
            self.seen.setdefault(tuple(int(g) for g in row), value)
        out["F"] = values


def _algorithm(n_obj: int, population: int, initial: np.ndarray, seed: int):
    common = dict(
        pop_size=population,
        sampling=initial,
        crossover=TwoPointCrossover(prob=0.9, repair=RoundingRepair()),
        mutation=PM(prob=1.0, eta=3.0, repair=RoundingRepair()),
        eliminate_duplicates=True,
    )
    if n_obj < 3:
        return NSGA2(**common)
    return NSGA3(ref_dirs=reference_directions(n_obj, population, at_most=True), **common)


def search_surrogate(
    objective_fn: ObjectiveFunction,
    upper: np.ndarray,
    n_obj: int,
    seeds: np.ndarray,
    exclude: Iterable[tuple[int, ...]],
    population: int,
    generations: int,
    rng: np.random.Generator,
) -> tuple[np.ndarray, np.ndarray]:
    """Run the surrogate search; return (genes, predicted minimisation values) of new candidates.

    ``seeds`` (gene rows, best first) start the population, topped up with uniform random genes.
    """
    upper = np.asarray(upper, dtype=np.int64)
    seeds = np.asarray(seeds, dtype=np.int64).reshape(-1, len(upper))[:population]
    unique_seeds = np.unique(seeds, axis=0) if len(seeds) else seeds
    fill = rng.integers(0, upper + 1, size=(population - len(unique_seeds), len(upper)))
    initial = np.vstack([unique_seeds, fill]).astype(float)
    problem = RecordingProblem(objective_fn, upper, n_obj)
    minimize(
        problem,
        _algorithm(n_obj, population, initial, int(rng.integers(2**31 - 1))),
        ("n_gen", generations),
        seed=int(rng.integers(2**31 - 1)),
        verbose=False,
    )
    excluded = set(exclude)
    keys = [key for key in problem.seen if key not in excluded]
    if not keys:
        return np.zeros((0, len(upper)), dtype=np.int64), np.zeros((0, n_obj))
    return np.array(keys, dtype=np.int64), np.array([problem.seen[key] for key in keys])
