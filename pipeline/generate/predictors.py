"""Predictors PNAG stands on: gene features, an accuracy predictor and the cost oracle.

- ``GeneFeatures``: one-hot encoding of a space's gene vector (generic over spaces).
- ``AccuracyPredictor``: a small seeded ensemble of LightGBM regressors (scikit-learn API) fitted
  to truly evaluated architectures. Targets are clipped from below at a low quantile, so a few
  broken architectures (e.g. 10 % accuracy) do not dominate the fit of the good region; the
  ensemble's mean is the prediction. Architectures with a known true accuracy keep it.
- ``ConfidenceBound``: a Gaussian process giving a lower confidence bound on accuracy, which the
  fitted generator ranks by (``generate.pessimism``) so it trusts what was measured.
- ``CostOracle``: exact costs where the caller provides them (an evaluator's ``cheap_metrics``
  or the supernet's ``arch_costs``), otherwise a ridge regressor on log cost (one-hot genes)
  fitted to the measured rows. Exact costs are cached per architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightgbm as lgb
import numpy as np
from sklearn.linear_model import Ridge

from pipeline.errors import BudgetError
from pipeline.space.base import Architecture, SearchSpace


class GeneFeatures:
    """One-hot features of gene vectors: one block per gene, sized by its cardinality."""

    def __init__(self, space: SearchSpace):
        self.cardinalities = (np.asarray(space.gene_upper_bounds(), dtype=np.int64) + 1).tolist()
        self.offsets = np.concatenate([[0], np.cumsum(self.cardinalities)[:-1]]).astype(np.int64)
        self.width = int(sum(self.cardinalities))

    def __call__(self, genes: np.ndarray) -> np.ndarray:
        genes = np.asarray(genes, dtype=np.int64).reshape(-1, len(self.cardinalities))
        features = np.zeros((len(genes), self.width), dtype=np.float32)
        rows = np.repeat(np.arange(len(genes)), genes.shape[1])
        features[rows, (genes + self.offsets).ravel()] = 1.0
        return features


class AccuracyPredictor:
    """Seeded LightGBM ensemble on one-hot genes with low-quantile-clipped targets."""

    def __init__(self, seed: int, members: int = 3, clip_quantile: float = 0.2, n_estimators: int = 300):
        self.seed = seed
        self.members = members
        self.clip_quantile = clip_quantile
        self.n_estimators = n_estimators
        self._models: list[lgb.LGBMRegressor] = []

    def fit(self, features: np.ndarray, accuracy: np.ndarray) -> AccuracyPredictor:
        target = np.asarray(accuracy, dtype=float)
        target = np.maximum(target, np.quantile(target, self.clip_quantile))
        self._models = [
            lgb.LGBMRegressor(
                n_estimators=self.n_estimators, learning_rate=0.05, num_leaves=15, min_child_samples=5,
                subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=self.seed * 101 + k,
                n_jobs=1, verbose=-1,
            ).fit(features, target)
            for k in range(self.members)
        ]
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        if not self._models:
            raise RuntimeError("AccuracyPredictor.predict called before fit")
        return np.mean([m.predict(features) for m in self._models], axis=0)


class ConfidenceBound:
    """A Gaussian process on one-hot genes (Matern 5/2 plus noise, normalised targets): its mean
    and a lower confidence bound ``mean - kappa * sd``. Near measured architectures the bound is
    tight; far from them it is low, so ranking by it prefers what the data supports. The mean is
    capped at the best measured accuracy (a GP on one-hot genes can extrapolate far above it)."""

    def __init__(self, seed: int):
        self.seed = seed
        self._model: Any = None
        self._ceiling = np.inf

    def fit(self, features: np.ndarray, accuracy: np.ndarray) -> ConfidenceBound:
        from sklearn.gaussian_process import GaussianProcessRegressor
        from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

        kernel = ConstantKernel(1.0) * Matern(length_scale=3.0, nu=2.5) + WhiteKernel(0.1)
        self._model = GaussianProcessRegressor(kernel, normalize_y=True, random_state=self.seed)
        self._model.fit(features, np.asarray(accuracy, dtype=float))
        self._ceiling = float(np.max(accuracy))
        return self

    def mean_and_sd(self, features: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        if self._model is None:
            raise RuntimeError("ConfidenceBound used before fit")
        mean, sd = self._model.predict(features, return_std=True)
        return np.minimum(np.asarray(mean, dtype=float), self._ceiling), np.asarray(sd, dtype=float)

    def lower(self, features: np.ndarray, kappa: float) -> np.ndarray:
        mean, sd = self.mean_and_sd(features)
        return mean - kappa * sd


ExactCostFn = Callable[[Architecture], dict[str, float]]


class CostOracle:
    """Costs per budget metric: exact via ``exact_fn`` when it offers the metric, else predicted."""

    def __init__(self, space: SearchSpace, metrics: Sequence[str], exact_fn: ExactCostFn | None,
                 exact_names: Sequence[str], seed: int):
        self.space = space
        self.metrics = tuple(metrics)
        self.exact_fn = exact_fn
        self.exact = tuple(m for m in self.metrics if exact_fn is not None and m in exact_names)
        self.predicted = tuple(m for m in self.metrics if m not in self.exact)
        self.seed = seed
        self._cache: dict[bytes, np.ndarray] = {}
        self._models: dict[str, Ridge] = {}

    @property
    def all_exact(self) -> bool:
        return not self.predicted

    def fit(self, features: np.ndarray, measured: dict[str, np.ndarray]) -> CostOracle:
        """Fit a log-cost regressor for every metric that is not exact, from measured rows."""
        for name in self.predicted:
            values = np.asarray(measured.get(name, []), dtype=float)
            usable = np.isfinite(values) & (values > 0)
            if usable.sum() < 5:
                raise BudgetError(f"budget metric {name!r} is neither computable exactly nor measured on enough "
                                  f"architectures ({int(usable.sum())}) to predict it")
            # costs are close to additive over the decisions: ridge on one-hot genes, in log space
            self._models[name] = Ridge(alpha=0.1).fit(features[usable], np.log(values[usable]))
        return self

    def costs(self, genes: np.ndarray, archs: Sequence[Architecture], features: np.ndarray) -> np.ndarray:
        """``(n, m)`` costs of the architectures, exact where possible."""
        out = np.empty((len(archs), len(self.metrics)), dtype=float)
        for col, name in enumerate(self.metrics):
            if name in self._models:
                out[:, col] = np.exp(self._models[name].predict(features))
        exact_cols = [self.metrics.index(m) for m in self.exact]
        if exact_cols:
            for row, (gene_row, arch) in enumerate(zip(np.asarray(genes, dtype=np.int64), archs)):
                key = gene_row.tobytes()
                if key not in self._cache:
                    values = self.exact_fn(arch)  # type: ignore[misc]
                    self._cache[key] = np.array([float(values[m]) for m in self.exact])
                out[row, exact_cols] = self._cache[key]
        return out

    def exact_of(self, arch: Architecture) -> dict[str, float]:
        """Every exact cost the oracle's source offers for ``arch`` (for the output row)."""
        return {k: float(v) for k, v in (self.exact_fn(arch) if self.exact_fn else {}).items()}
