"""Survival keeps the size and the non-dominated set; subset selection spreads its picks."""

from __future__ import annotations

import numpy as np

from pipeline.search.pareto import pareto_mask
from pipeline.search.selection import hypervolume_greedy, select_candidates, spread_subset
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


def test_hypervolume_greedy_picks_by_hand_computed_gain_not_by_spread():
    """Archive (0, 10), (10, 0); candidates W (8, 3), U (-5, 30), V (5, 5), all non-dominated.

    Normalised by (-5, 0)-(10, 30) with the reference at 1.1, the areas each adds, by hand:
    U (0, 1) adds 1/3 x 0.1 = 0.033; V (2/3, 1/6) adds 1/3 x 1/6 = 0.056; W (0.8, 0.1) adds
    0.2 x 0.233 = 0.047, but only 0.2 x 0.067 = 0.013 once V is in. So the greedy order is V, U,
    W, while spreading (farthest from the archive) would take U first.
    """
    archive = np.array([[0.0, 10.0], [10.0, 0.0]])
    candidates = np.array([[8.0, 3.0], [-5.0, 30.0], [5.0, 5.0]])  # W 0, U 1, V 2
    assert hypervolume_greedy(candidates, 1, archive).tolist() == [2]
    assert select_candidates(candidates, 1, archive).tolist() == [1]
    assert hypervolume_greedy(candidates, 2, archive).tolist() == [1, 2]
    assert hypervolume_greedy(candidates, 3, archive).tolist() == [0, 1, 2]


def test_hypervolume_greedy_falls_back_to_rank_and_spread_without_gain():
    archive = np.array([[0.0, 0.0]])  # dominates every candidate: nothing adds hypervolume
    candidates = np.array([[1.0, 2.0], [2.0, 1.0], [3.0, 3.0], [1.5, 1.5]])
    assert hypervolume_greedy(candidates, 2, archive).tolist() == select_candidates(candidates, 2, archive).tolist()
