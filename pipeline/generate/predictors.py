"""What PNAG's models stand on: genes, canonical architectures, accuracy and cost predictors.

- ``GeneFeatures``: one-hot encoding of a space's gene vector (generic over spaces);
  ``Canonicaliser``: gene rows to canonical architectures and genes (the one canonicalisation).
- ``KnownArch``: a truly evaluated architecture (what fitting learns from).
- ``AccuracyPredictor``: a small seeded ensemble of LightGBM regressors (scikit-learn API) fitted
  to truly evaluated architectures. Targets are clipped from below at a low quantile, so a few
  broken architectures (e.g. 10 % accuracy) do not dominate the fit of the good region; the
  ensemble's mean is the prediction. Architectures with a known true accuracy keep it.
- ``ConfidenceBound``: a Gaussian process giving a lower confidence bound on accuracy, which the
  fitted generator ranks by (``generate.pessimism``) so it trusts what was measured.
- ``CostModel``: exact costs where the caller provides them (an evaluator's ``cheap_metrics``
  or the supernet's cost counter), otherwise a ridge regressor on log cost (one-hot genes)
  fitted to the measured rows by ``fit_cost_models`` (the one cost regression). Exact costs are
  cached per architecture.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
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


@dataclass
class KnownArch:
    """A truly evaluated architecture: canonical form, genes, true ``top1`` and measured metrics."""

    arch: Architecture
    genes: np.ndarray
    top1: float
    metrics: dict[str, float] = field(default_factory=dict)


#: truly evaluated architectures keyed by their canonical genes' bytes
Known = Mapping[bytes, KnownArch]


class Canonicaliser:
    """Gene rows -> canonical architectures and their canonical genes (cached per row)."""

    def __init__(self, space: SearchSpace):
        self.space = space
        self.gene_count = len(space.gene_upper_bounds())
        self._cache: dict[bytes, tuple[Architecture, np.ndarray]] = {}

    def __call__(self, genes: np.ndarray) -> tuple[list[Architecture], np.ndarray]:
        archs, out = [], []
        for row in np.asarray(genes, dtype=np.int64):
            key = row.tobytes()
            if key not in self._cache:
                arch = self.space.decode(row)
                self._cache[key] = (arch, self.space.encode(arch))
            arch, canonical = self._cache[key]
            archs.append(arch)
            out.append(canonical)
        return archs, np.asarray(out, dtype=np.int64).reshape(-1, self.gene_count)


def fit_cost_models(features: np.ndarray, measured: Mapping[str, np.ndarray],
                    required: Sequence[str] = ()) -> dict[str, Ridge]:
    """Ridge on log cost (one-hot genes) per metric with at least 5 usable measurements; a
    ``required`` metric with fewer is a ``BudgetError`` (costs are close to additive over the
    decisions, so a linear model in log space fits them)."""
    models = {}
    for name in dict.fromkeys([*measured, *required]):
        values = np.asarray(measured.get(name, []), dtype=float)
        usable = np.isfinite(values) & (values > 0)
        if usable.sum() >= 5:
            models[name] = Ridge(alpha=0.1).fit(features[usable], np.log(values[usable]))
        elif name in required:
            raise BudgetError(f"budget metric {name!r} is neither computable exactly nor measured on enough "
                              f"architectures ({int(usable.sum())}) to predict it")
    return models


@dataclass
class CostModel:
    """Costs per budget metric: exact from ``exact_fn`` for ``exact_metrics`` (cached per
    architecture), measured where an architecture is known, else ``exp`` of a fitted log-cost ridge."""

    metrics: tuple[str, ...]
    exact_fn: ExactCostFn | None = None
    exact_metrics: tuple[str, ...] = ()
    regressors: dict[str, Ridge] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.metrics = tuple(self.metrics)
        self.exact_metrics = tuple(m for m in self.metrics if self.exact_fn is not None and m in self.exact_metrics)
        self._exact: dict[bytes, dict[str, float]] = {}

    @classmethod
    def offered_by(cls, space: SearchSpace, metrics: Sequence[str], exact_fn: ExactCostFn | None,
                   regressors: dict[str, Ridge]) -> CostModel:
        """A cost model whose exact metrics are those ``exact_fn`` offers (asked once, on the smallest)."""
        offered = tuple(exact_fn(space.smallest())) if exact_fn is not None else ()
        return cls(tuple(metrics), exact_fn, offered, regressors)

    @property
    def predicted_metrics(self) -> tuple[str, ...]:
        return tuple(m for m in self.metrics if m not in self.exact_metrics)

    def exact_of(self, arch: Architecture, genes: np.ndarray) -> dict[str, float]:
        """Every exact cost ``exact_fn`` offers for ``arch`` (cached by its genes)."""
        key = np.asarray(genes, dtype=np.int64).tobytes()
        if key not in self._exact:
            values = self.exact_fn(arch) if self.exact_fn is not None else {}
            self._exact[key] = {k: float(v) for k, v in values.items()}
        return self._exact[key]

    def costs(self, genes: np.ndarray, archs: Sequence[Architecture], features: np.ndarray,
              known: Known | None = None) -> np.ndarray:
        """``(n, m)`` costs: exact where offered, else the measured value of a known architecture,
        else predicted (NaN before a regressor is fitted)."""
        genes = np.asarray(genes, dtype=np.int64)
        out = np.empty((len(archs), len(self.metrics)))
        for col, name in enumerate(self.metrics):
            if name in self.exact_metrics:
                out[:, col] = [self.exact_of(a, g)[name] for a, g in zip(archs, genes)]
            elif name in self.regressors:
                out[:, col] = np.exp(self.regressors[name].predict(features))
            else:  # not fitted yet: only a check or a measurement can tell
                out[:, col] = np.nan
        predicted = [(col, name) for col, name in enumerate(self.metrics) if name not in self.exact_metrics]
        if known and predicted:
            for row, gene_row in enumerate(genes):
                measured = known.get(gene_row.tobytes())
                if measured is not None:
                    for col, name in predicted:
                        if name in measured.metrics:
                            out[row, col] = measured.metrics[name]
        return out
