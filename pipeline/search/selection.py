"""Subset selection: K candidates spread evenly along the objectives.

``spread_subset`` is greedy farthest-point selection in objective space normalised to [0, 1] per
axis: it starts from the extreme of each objective (or from given anchor points) and repeatedly
adds the candidate farthest from everything chosen so far, which spreads the picks along the
front. ``select_candidates`` fills K slots from the surrogate's non-dominated ranks in order and
spreads the rank that does not fit. NAT's own rule (``search.subset_selection: nat``) ranks the
candidates alone and spreads along the cheap objectives only. ``hypervolume_greedy``
(``search.subset_selection: hvi``) picks one at a time the candidate whose predicted point adds
the most hypervolume to the archive's front and the picks so far. Deterministic: ties go to the
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


def hypervolume_greedy(minimized: np.ndarray, k: int, archive: np.ndarray, reference: float = 1.1) -> np.ndarray:
    """Indices of ``k`` candidates picked one by one for the largest predicted hypervolume gain.

    Each pick maximises HV(archive front + picks + candidate) - HV(archive front + picks), with
    objectives normalised over archive and candidates together and the reference point at
    ``reference`` per axis. When no candidate is predicted to add hypervolume any more, the rest
    are filled by ``select_candidates`` (non-dominated ranks, spread).
    """
    from pymoo.indicators.hv import HV

    minimized = np.asarray(minimized, dtype=float)
    archive = np.asarray(archive, dtype=float).reshape(-1, minimized.shape[1])
    if k >= len(minimized):
        return np.arange(len(minimized))
    everything = np.vstack([archive, minimized])
    lower, upper = everything.min(axis=0), everything.max(axis=0)
    points = _normalise(minimized, lower, upper)
    base = _normalise(archive, lower, upper)
    base = base[nondominated_ranks(base) == 0] if len(base) else base
    indicator = HV(ref_point=np.full(minimized.shape[1], reference))
    chosen: list[int] = []
    current = float(indicator(base)) if len(base) else 0.0
    while len(chosen) < k:
        front = np.vstack([base, points[chosen]]) if chosen else base
        open_rows = np.setdiff1d(np.arange(len(points)), chosen)
        ranks = nondominated_ranks(np.vstack([front, points[open_rows]]))[len(front):]
        contenders = open_rows[ranks == 0]
        gains = np.array([float(indicator(np.vstack([front, points[i][None]]))) - current for i in contenders])
        if len(contenders) == 0 or gains.max() <= 1e-12:
            break
        best = int(contenders[int(np.argmax(gains))])
        chosen.append(best)
        current += float(gains.max())
    if len(chosen) < k:
        rest = np.setdiff1d(np.arange(len(points)), chosen)
        known = np.vstack([archive, minimized[chosen]]) if chosen else archive
        chosen.extend(rest[select_candidates(minimized[rest], k - len(chosen), known)].tolist())
    return np.sort(np.asarray(chosen, dtype=np.int64))
