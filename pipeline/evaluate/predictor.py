"""A per-profile latency predictor learned from measured latencies (scikit-learn).

Summing per-operation lookup entries ignores operator fusion, so this predictor is learned per
architecture from measured pairs. Latency is close to a sum of per-block costs, so the default
model (``"linear"``) is a ridge regression on additive features: per stage the number of used
blocks, ``sum(kernel^2 * expand) * resolution^2`` (depthwise work) and ``sum(expand) *
resolution^2`` (pointwise work), the exit and the resolution (one-hot; the exit also scaled by
``resolution^2`` for its head), plus any cheap exact features the caller passes (``macs_m``, ``params_m``). It is fitted on relative error (sample weights
``1 / latency^2``), with the regularisation chosen by cross-validation. ``model="gbm"`` uses
gradient-boosted trees on log latency, with the genes added. The search uses ``predict`` to
screen candidates before measuring them; ``within_fraction`` reports the share of held-out
architectures predicted within ``tol`` (relative) of the measured latency. ``held_out_error``
scores the predictor on what it was not fitted on: K-fold over the measured set (each fold held
out once, the predictor refitted on the rest), giving the mean relative error and the share
within ``tol``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

import numpy as np
from sklearn.ensemble import HistGradientBoostingRegressor
from sklearn.linear_model import RidgeCV
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

from pipeline.space.base import Architecture, SearchSpace

Features = np.ndarray | Sequence[Mapping[str, float]] | None


def structural_features(space: SearchSpace, arch: Architecture) -> np.ndarray:
    """Additive compute counts (OFAv2): per stage the used blocks, ``sum(k^2 e) r^2`` and ``sum(e) r^2``.

    Other spaces fall back to their genes.
    """
    used_blocks = getattr(space, "used_blocks", None)
    if used_blocks is None:
        return space.encode(arch).astype(float)
    arch = space.validate(arch)
    used = np.asarray(used_blocks(arch), dtype=bool).reshape(5, -1)
    kernels = np.asarray(arch["kernels"], dtype=float).reshape(5, -1)
    expands = np.asarray(arch["expands"], dtype=float).reshape(5, -1)
    pixels = float(arch["resolution"]) ** 2 / 1e3
    per_stage_blocks = used.sum(axis=1).astype(float)
    per_stage_depthwise = (kernels**2 * expands * used).sum(axis=1) * pixels
    per_stage_pointwise = (expands * used).sum(axis=1) * pixels
    exit_one_hot = np.eye(5)[int(arch.get("exit", 5)) - 1]
    resolutions = getattr(space, "resolutions", (arch["resolution"],))
    resolution_one_hot = np.array([float(arch["resolution"] == r) for r in resolutions])
    return np.concatenate([per_stage_blocks, per_stage_depthwise, per_stage_pointwise,
                           exit_one_hot * pixels, exit_one_hot, resolution_one_hot])


def _extra_matrix(features: Features, count: int) -> np.ndarray:
    if features is None:
        return np.zeros((count, 0))
    if isinstance(features, np.ndarray):
        return features.reshape(count, -1).astype(float)
    names = sorted(features[0]) if count else []
    return np.array([[float(row[name]) for name in names] for row in features], dtype=float)


class LatencyPredictor:
    """Predicts the latency (ms) of an architecture for one hardware profile."""

    def __init__(self, space: SearchSpace, model: Literal["linear", "gbm"] = "linear") -> None:
        if model not in ("linear", "gbm"):
            raise ValueError(f"unknown latency model {model!r}; choose 'linear' or 'gbm'")
        self.space = space
        self.model_name = model
        if model == "linear":
            self.model = make_pipeline(StandardScaler(), RidgeCV(alphas=np.logspace(-4, 2, 13)))
        else:
            self.model = HistGradientBoostingRegressor(max_iter=300, learning_rate=0.05, random_state=0)
        self.fitted = False

    def _matrix(self, archs: Sequence[Architecture], features: Features) -> np.ndarray:
        structural = np.stack([structural_features(self.space, arch) for arch in archs])
        extra = _extra_matrix(features, len(archs))
        if self.model_name == "gbm":
            genes = np.stack([self.space.encode(arch) for arch in archs]).astype(float)
            return np.hstack([structural, genes, extra])
        return np.hstack([structural, extra])

    @classmethod
    def fit(
        cls,
        space: SearchSpace,
        archs: Sequence[Architecture],
        latencies: Sequence[float],
        features: Features = None,
        model: Literal["linear", "gbm"] = "linear",
    ) -> LatencyPredictor:
        """Learn from measured ``(arch, latency_ms)`` pairs (``features``: optional cheap extras)."""
        latencies = np.asarray(latencies, dtype=float)
        if len(archs) != len(latencies) or len(archs) < 3:
            raise ValueError("need at least 3 architectures, each with one measured latency")
        if not np.all(latencies > 0):
            raise ValueError("latencies must be positive")
        predictor = cls(space, model)
        matrix = predictor._matrix(archs, features)
        if model == "linear":  # least squares on relative error: weight 1 / latency^2
            predictor.model.fit(matrix, latencies, ridgecv__sample_weight=1.0 / latencies**2)
        else:
            predictor.model.fit(matrix, np.log(latencies))
        predictor.fitted = True
        return predictor

    def predict(self, archs: Sequence[Architecture], features: Features = None) -> np.ndarray:
        """Predicted latency in ms, one per architecture."""
        if not self.fitted:
            raise RuntimeError("LatencyPredictor.predict called before fit")
        if len(archs) == 0:
            return np.zeros(0)
        raw = self.model.predict(self._matrix(archs, features))
        return np.maximum(raw, 1e-6) if self.model_name == "linear" else np.exp(raw)

    def relative_errors(
        self, archs: Sequence[Architecture], latencies: Sequence[float], features: Features = None
    ) -> np.ndarray:
        """``|predicted - measured| / measured`` per architecture."""
        measured = np.asarray(latencies, dtype=float)
        return np.abs(self.predict(archs, features) - measured) / measured

    def within_fraction(
        self, archs: Sequence[Architecture], latencies: Sequence[float], tol: float = 0.10, features: Features = None
    ) -> float:
        """Share of ``archs`` whose predicted latency is within ``tol`` (relative) of the measured one."""
        return float(np.mean(self.relative_errors(archs, latencies, features) <= tol))


def held_out_error(
    space: SearchSpace,
    archs: Sequence[Architecture],
    latencies: Sequence[float],
    features: Features = None,
    model: Literal["linear", "gbm"] = "linear",
    folds: int = 5,
    tol: float = 0.10,
    seed: int = 0,
) -> tuple[float, float]:
    """K-fold held-out ``(mean relative error, share within tol)`` of ``LatencyPredictor.fit``.

    Every architecture is predicted once by a predictor fitted on the other folds. NaN for both
    when there are too few measurements (each training part needs at least 3).
    """
    latencies = np.asarray(latencies, dtype=float)
    count = len(archs)
    folds = min(folds, count)
    if folds < 2 or count - -(-count // folds) < 3:
        return float("nan"), float("nan")
    extra = _extra_matrix(features, count)

    def part(rows: np.ndarray) -> np.ndarray | None:
        return extra[rows] if extra.shape[1] else None

    order = np.random.default_rng(seed).permutation(count)
    errors = np.empty(count)
    for held in np.array_split(order, folds):
        train = np.setdiff1d(order, held)
        predictor = LatencyPredictor.fit(space, [archs[i] for i in train], latencies[train], part(train), model)
        errors[held] = predictor.relative_errors([archs[i] for i in held], latencies[held], part(held))
    return float(errors.mean()), float(np.mean(errors <= tol))
