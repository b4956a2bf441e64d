"""Survival: which rows of a set of objective vectors are kept, using pymoo's survival operators.

Two objectives use rank-and-crowding survival (NSGA-II); three or more use reference-direction
survival (NSGA-III) with Das-Dennis reference directions. Both keep whole non-dominated fronts
first, so the non-dominated set survives whenever it fits. ``archive_survival`` is NATv2's
constant-size archive update: merge the archive with the new candidates, shrink back to the size,
always keeping the pinned rows (the space's smallest and largest architectures).
All inputs are in minimisation form (see ``pipeline.search.pareto.to_minimization``).
"""

from __future__ import annotations

from math import comb

import numpy as np
from pymoo.algorithms.moo.nsga3 import ReferenceDirectionSurvival
from pymoo.core.population import Population
from pymoo.core.problem import Problem
from pymoo.operators.survival.rank_and_crowding import RankAndCrowding
from pymoo.util.ref_dirs import get_reference_directions


def reference_directions(n_obj: int, n_points: int, at_most: bool = False) -> np.ndarray:
    """Das-Dennis reference directions: the fewest partitions giving at least ``n_points``
    (or, with ``at_most``, the most partitions giving no more than ``n_points``, as NSGA-III
    wants no more directions than its population)."""
    partitions = 1
    while comb(partitions + n_obj - 1, n_obj - 1) < n_points:
        partitions += 1
    if at_most and partitions > 1 and comb(partitions + n_obj - 1, n_obj - 1) > n_points:
        partitions -= 1
    return get_reference_directions("das-dennis", n_obj, n_partitions=partitions)


def survive(minimized: np.ndarray, n_survive: int, seed: int = 0, pinned: np.ndarray | None = None) -> np.ndarray:
    """Indices (sorted) of the ``n_survive`` rows kept by rank-and-crowding / reference directions.

    ``pinned`` (a boolean mask) marks rows that are always kept (NATv2's smallest and largest
    architectures); survival chooses the rest of the places among the other rows."""
    minimized = np.asarray(minimized, dtype=float)
    if pinned is not None and np.any(pinned):
        pinned = np.asarray(pinned, dtype=bool)
        others = np.flatnonzero(~pinned)
        rest = survive(minimized[others], n_survive - int(pinned.sum()), seed)
        return np.sort(np.concatenate([np.flatnonzero(pinned), others[rest]]))
    n_rows, n_obj = minimized.shape
    if n_survive >= n_rows:
        return np.arange(n_rows)
    if n_survive <= 0:
        return np.zeros(0, dtype=np.int64)
    pop = Population.new("F", minimized, "index", np.arange(n_rows))
    problem = Problem(n_var=1, n_obj=n_obj, xl=0.0, xu=1.0)
    if n_obj < 3:
        survival = RankAndCrowding()
    else:
        survival = ReferenceDirectionSurvival(reference_directions(n_obj, n_survive))
    survivors = survival.do(problem, pop, n_survive=n_survive, random_state=np.random.default_rng(seed))
    return np.sort(survivors.get("index").astype(np.int64))


def archive_survival(
    archive: np.ndarray, candidates: np.ndarray, size: int, seed: int = 0, pinned: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """NATv2's constant-size update: boolean masks of the archive rows and candidate rows kept
    (``pinned``: a mask over archive rows then candidate rows that always stay)."""
    archive, candidates = np.asarray(archive, dtype=float), np.asarray(candidates, dtype=float)
    if archive.ndim != 2 or candidates.ndim != 2 or archive.shape[1] != candidates.shape[1]:
        raise ValueError("archive and candidates must be 2-D arrays with one column per objective")
    kept = survive(np.vstack([archive, candidates]), size, seed, pinned)
    mask = np.zeros(len(archive) + len(candidates), dtype=bool)
    mask[kept] = True
    return mask[: len(archive)], mask[len(archive):]
