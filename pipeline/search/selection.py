"""Subset selection: K candidates spread evenly along the objectives.

``spread_subset`` is greedy farthest-point selection in objective space normalised to [0, 1] per
axis: it starts from the extreme of each objective (or from given anchor points) and repeatedly
adds the candidate farthest from everything chosen so far, which spreads the picks along the
front. ``select_candidates`` fills K slots from the surrogate's non-dominated ranks in order and
spreads the rank that does not fit. NAT's own rule (``search.subset_selection: nat``) ranks the
candidates alone and spreads along the cheap objectives only. Deterministic: ties go to the
lowest index.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from pipeline.search.pareto import nondominated_ranks


def _normalise(points: np.ndarray, lower: np.ndarray, upper: np.ndarray) -> np.ndarray:
    span = np.where(upper - lower > 0, upper - lower, 1.0)
    return (points - lower) / span


def spread_subset(minimized: np.ndarray, k: int, anchors: np.ndarray | None = None) -> np.ndarray:
    """Indices of ``k`` rows of ``minimized`` spread evenly, far from ``anchors`` and each other."""
    minimized = np.asarray(minimized, dtype=float)
    n_rows = len(minimized)
    if k >= n_rows:
        return np.arange(n_rows)
    if k <= 0:
        return np.zeros(0, dtype=np.int64)
    everything = minimized if anchors is None or len(anchors) == 0 else np.vstack([minimized, anchors])
    lower, upper = everything.min(axis=0), everything.max(axis=0)
    points = _normalise(minimized, lower, upper)
    chosen: list[int] = []
    if anchors is not None and len(anchors):
        reference = _normalise(np.asarray(anchors, dtype=float), lower, upper)
        distance = np.linalg.norm(points[:, None, :] - reference[None, :, :], axis=2).min(axis=1)
    else:
        for column in range(points.shape[1]):
            extreme = int(np.argmin(points[:, column]))
            if extreme not in chosen and len(chosen) < k:
                chosen.append(extreme)
        distance = np.full(n_rows, np.inf)
        for index in chosen:
            distance = np.minimum(distance, np.linalg.norm(points - points[index], axis=1))
    while len(chosen) < k:
        masked = distance.copy()
        masked[chosen] = -np.inf
        index = int(np.argmax(masked))
        chosen.append(index)
        distance = np.minimum(distance, np.linalg.norm(points - points[index], axis=1))
    return np.sort(np.asarray(chosen, dtype=np.int64))


def select_candidates(
    minimized: np.ndarray, k: int, archive: np.ndarray | None = None, spread_columns: Sequence[int] | None = None
) -> np.ndarray:
    """Indices of ``k`` candidates: whole non-dominated ranks in order, the overflowing rank spread.

    With ``archive`` (the truly evaluated points), ranks are taken over archive and candidates
    together, so candidates predicted to improve the archive's front come first, and archive
    points of the same rank count as already chosen when spreading. ``spread_columns`` spreads
    along those objectives only (NAT's rule: the cheap ones, with ``archive=None``).
    """
    minimized = np.asarray(minimized, dtype=float)
    columns = list(range(minimized.shape[1])) if spread_columns is None else list(spread_columns)
    if k >= len(minimized):
        return np.arange(len(minimized))
    known = np.zeros((0, minimized.shape[1])) if archive is None else np.asarray(archive, dtype=float)
    ranks = nondominated_ranks(np.vstack([known, minimized]))
    known_ranks, ranks = ranks[: len(known)], ranks[len(known):]
    chosen: list[int] = []
    for rank in range(int(ranks.max()) + 1):
        members = np.flatnonzero(ranks == rank)
        room = k - len(chosen)
        if len(members) <= room:
            chosen.extend(members.tolist())
        else:
            anchors = np.vstack([known[known_ranks == rank], minimized[chosen]])[:, columns]
            picked = spread_subset(minimized[members][:, columns], room, anchors if len(anchors) else None)
            chosen.extend(members[picked].tolist())
        if len(chosen) >= k:
            break
    return np.sort(np.asarray(chosen, dtype=np.int64))
