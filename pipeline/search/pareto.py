"""Pareto utilities on top of pymoo: orientation, non-dominated ranks, normalised hypervolume.

Everything is computed in minimisation form: maximised objectives are negated by
``to_minimization``. Ranks come from pymoo's non-dominated sorting and hypervolume from
``pymoo.indicators.hv.HV``, high-tradeoff points from ``pymoo.mcdm.high_tradeoff``; nothing here
re-implements them. ``current_round_mask`` says which archive rows were measured under the newest
supernet weights.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from pymoo.indicators.hv import HV
from pymoo.util.nds.non_dominated_sorting import NonDominatedSorting

from pipeline.evaluate.interface import Objective


def to_minimization(values: np.ndarray, objectives: Sequence[Objective]) -> np.ndarray:
    """Columns of ``values`` (one per objective) turned into minimisation form."""
    values = np.asarray(values, dtype=float).reshape(-1, len(objectives))
    signs = np.array([-1.0 if o.direction == "max" else 1.0 for o in objectives])
    return values * signs


def nondominated_ranks(minimized: np.ndarray) -> np.ndarray:
    """Rank of each row (0 = non-dominated) under pymoo's non-dominated sorting."""
    minimized = np.asarray(minimized, dtype=float)
    ranks = np.zeros(len(minimized), dtype=np.int64)
    if len(minimized) == 0:
        return ranks
    fronts = NonDominatedSorting().do(minimized)
    for rank, front in enumerate(fronts):
        ranks[front] = rank
    return ranks


def pareto_mask(minimized: np.ndarray) -> np.ndarray:
    """True for rows that no other row dominates."""
    return nondominated_ranks(minimized) == 0


def normalized_hypervolume(
    minimized: np.ndarray, ideal: np.ndarray, nadir: np.ndarray, reference: float = 1.1
) -> float:
    """Hypervolume of points normalised by ``ideal``/``nadir``, against ``reference`` per axis."""
    minimized = np.asarray(minimized, dtype=float)
    if len(minimized) == 0:
        return 0.0
    scale = np.where(np.asarray(nadir) - np.asarray(ideal) > 0, np.asarray(nadir) - np.asarray(ideal), 1.0)
    normalized = (minimized - ideal) / scale
    indicator = HV(ref_point=np.full(minimized.shape[1], reference))
    return float(indicator(normalized))


def hypervolume_ratio(result: np.ndarray, true_front: np.ndarray, reference: float = 1.1) -> float:
    """HV(result) / HV(true front), both normalised by the true front's ideal and nadir points."""
    true_front = np.asarray(true_front, dtype=float)
    ideal, nadir = true_front.min(axis=0), true_front.max(axis=0)
    best = normalized_hypervolume(true_front, ideal, nadir, reference)
    return normalized_hypervolume(result, ideal, nadir, reference) / best


def high_tradeoff_mask(minimized: np.ndarray) -> np.ndarray:
    """True for the front's high-tradeoff points (``pymoo.mcdm.high_tradeoff``), as NAT picks them.

    The points are first normalised to [0, 1] per objective by their own ideal and nadir (as NAT's
    code does before calling pymoo), so that the trade-off compares objectives on one scale. A front
    of fewer than three points, or one without an outlier trade-off, marks nothing.
    """
    from pymoo.mcdm.high_tradeoff import HighTradeoffPoints

    minimized = np.asarray(minimized, dtype=float)
    mask = np.zeros(len(minimized), dtype=bool)
    if len(minimized) < 3:
        return mask
    lower, upper = minimized.min(axis=0), minimized.max(axis=0)
    normalised = (minimized - lower) / np.where(upper > lower, upper - lower, 1.0)
    picked = HighTradeoffPoints().do(normalised)
    if picked is not None:
        mask[np.atleast_1d(picked).astype(int)] = True
    return mask


def current_round_mask(frame: pd.DataFrame) -> np.ndarray:
    """Rows measured under the newest supernet weights (``supernet_round``), the only ones that may rank.

    After a search-time adaptation, accuracies of older rounds are stale; rows without the column
    (tables, runs without adaptation) are all current."""
    if "supernet_round" not in frame.columns or frame["supernet_round"].isna().all():
        return np.ones(len(frame), dtype=bool)
    rounds = frame["supernet_round"].to_numpy(dtype=float, na_value=np.nan)
    return rounds == np.nanmax(rounds)
