"""Survival keeps the size and the non-dominated set; subset selection spreads its picks."""

from __future__ import annotations

import numpy as np

from pipeline.search.pareto import pareto_mask
from pipeline.search.selection import select_candidates, spread_subset
from pipeline.search.survival import archive_survival, survive


def _points(n: int, m: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).random((n, m))


def test_rank_and_crowding_keeps_size_and_front():
    points = _points(80, 2, 0)
    kept = survive(points, 30)
    assert len(kept) == 30 and len(set(kept.tolist())) == 30
    front = set(np.flatnonzero(pareto_mask(points)).tolist())
    assert front <= set(kept.tolist())


def test_reference_direction_survival_for_three_objectives():
    points = _points(120, 3, 1)
    kept = survive(points, 40, seed=3)
    assert len(kept) == 40
    front = np.flatnonzero(pareto_mask(points))
    assert len(front) <= 40 and set(front.tolist()) <= set(kept.tolist())


def test_archive_survival_is_constant_size_and_keeps_dominating_candidates():
    archive = _points(30, 2, 2) + 0.5
    candidates = _points(10, 2, 3) * 0.1  # dominate the whole archive
    keep_old, keep_new = archive_survival(archive, candidates, 30)
    assert keep_old.sum() + keep_new.sum() == 30
    assert keep_new.all()


def test_survival_returns_everything_when_it_fits():
    points = _points(5, 2, 4)
    assert survive(points, 10).tolist() == [0, 1, 2, 3, 4]


def _min_gap(points: np.ndarray) -> float:
    distances = np.linalg.norm(points[:, None] - points[None], axis=2)
    return distances[np.triu_indices(len(points), 1)].min()


def test_spread_subset_spreads_more_than_random_choice():
    rng = np.random.default_rng(5)
    x = np.sort(rng.random(200))
    front = np.column_stack([x, 1 - x ** 0.5])  # a dense front
    picked = spread_subset(front, 10)
    assert len(picked) == 10
    random_gaps = [_min_gap(front[rng.choice(200, 10, replace=False)]) for _ in range(50)]
    assert _min_gap(front[picked]) > np.median(random_gaps)
    assert _min_gap(front[picked]) > max(random_gaps)
    assert {int(np.argmin(front[:, 0])), int(np.argmin(front[:, 1]))} <= set(picked.tolist())


def test_select_candidates_fills_by_rank_and_prefers_improvements_over_the_archive():
    candidates = np.array([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [2.0, 2.0], [3.0, 3.0]])
    assert select_candidates(candidates, 3).tolist() == [0, 1, 2]
    archive = np.array([[0.1, 0.1]])  # dominates candidate 1 and the two dominated ones
    picked = select_candidates(candidates, 2, archive=archive)
    assert picked.tolist() == [0, 2]
