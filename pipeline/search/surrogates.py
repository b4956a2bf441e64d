"""Accuracy surrogates and NAT's adaptive switching.

A surrogate maps integer genes to one objective (usually ``top1``). Every surrogate is a
scikit-learn pipeline: the genes are fed both as ordinal values and one-hot encoded (categories
known from the space's gene bounds), then to a regressor from scikit-learn or LightGBM.

Adaptive switching (NAT): every refit scores each configured surrogate by the mean Kendall tau
(``scipy.stats.kendalltau``) of its held-out predictions under K-fold cross-validation and keeps
the best.

Experimental, measured no better than the defaults and reachable only through the benchmark's
variants (``pipeline.bench.search``), not through a config: the surrogate ``lgbm_rank``
(``EXPERIMENTAL_SURROGATES``: LightGBM's LambdaRank objective, for the order only;
``RankingRegressor``) and the keyword-only ``ensemble_size``: the special name ``"ensemble"``
becomes a candidate, the mean of the standardised predictions of the ``ensemble_size`` best single
surrogates, scored under the same folds.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import get_args

import numpy as np
from lightgbm import LGBMRanker, LGBMRegressor
from scipy.stats import kendalltau
from sklearn.base import BaseEstimator, RegressorMixin, clone
from sklearn.compose import TransformedTargetRegressor
from sklearn.ensemble import ExtraTreesRegressor, RandomForestRegressor
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel
from sklearn.kernel_ridge import KernelRidge
from sklearn.linear_model import RidgeCV
from sklearn.model_selection import KFold
from sklearn.neural_network import MLPRegressor
from sklearn.pipeline import FeatureUnion, Pipeline, make_pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, StandardScaler
from sklearn.tree import DecisionTreeRegressor

from pipeline.config import SurrogateName

ENSEMBLE = "ensemble"


def _scaled_target(model: RegressorMixin) -> RegressorMixin:
    """Standardise the target for models without an intercept or with scale-sensitive training."""
    return TransformedTargetRegressor(regressor=model, transformer=StandardScaler())


class RankingRegressor(RegressorMixin, BaseEstimator):
    """Experimental: LightGBM's LambdaRank (``LGBMRanker``) used as a regressor, since only the order matters.

    The targets become ``levels`` relevance grades by quantile, all in one query; every pair counts
    (the truncation level is the number of rows) and the grades gain linearly, so the whole order
    is learnt, not only its top. The ranking scores are mapped back to the target's units by
    standardising them on the training rows (the order is kept; the scale is the target's)."""

    def __init__(self, levels: int = 30, seed: int = 0) -> None:
        self.levels = levels
        self.seed = seed

    def fit(self, features: np.ndarray, targets: np.ndarray) -> RankingRegressor:
        targets = np.asarray(targets, dtype=float)
        ranks = targets.argsort().argsort()
        grades = (ranks * self.levels // max(1, len(targets))).astype(int)
        self.ranker_ = LGBMRanker(
            objective="lambdarank", n_estimators=300, learning_rate=0.05, num_leaves=15, min_child_samples=3,
            subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=self.seed, n_jobs=1,
            deterministic=True, force_row_wise=True, verbose=-1,
            lambdarank_truncation_level=len(targets), label_gain=list(range(self.levels)),
        ).fit(features, grades, group=[len(targets)])
        scores = self.ranker_.predict(features)
        self.score_mean_, self.score_std_ = float(scores.mean()), float(scores.std() or 1.0)
        self.target_mean_, self.target_std_ = float(targets.mean()), float(targets.std() or 1.0)
        return self

    def predict(self, features: np.ndarray) -> np.ndarray:
        z = (self.ranker_.predict(features) - self.score_mean_) / self.score_std_
        return z * self.target_std_ + self.target_mean_


def _regressor(name: str, seed: int) -> RegressorMixin:
    if name == "lgbm_rank":
        return RankingRegressor(seed=seed)
    if name == "lgbm":
        return LGBMRegressor(
            objective="huber", n_estimators=300, learning_rate=0.05, num_leaves=15, min_child_samples=3,
            subsample=0.8, subsample_freq=1, colsample_bytree=0.8, random_state=seed, n_jobs=1,
            deterministic=True, force_row_wise=True, verbose=-1,
        )
    if name == "rf":
        return RandomForestRegressor(n_estimators=100, min_samples_leaf=1, max_features=0.5, random_state=seed, n_jobs=1)
    if name == "extra_trees":
        return ExtraTreesRegressor(n_estimators=100, min_samples_leaf=1, max_features=0.5, random_state=seed, n_jobs=1)
    if name == "dtree":
        return DecisionTreeRegressor(min_samples_leaf=2, random_state=seed)
    if name == "gp":
        kernel = ConstantKernel() * RBF(length_scale=3.0, length_scale_bounds=(1e-2, 1e3)) + WhiteKernel(
            noise_level=0.1, noise_level_bounds=(1e-6, 1e1)
        )
        return GaussianProcessRegressor(kernel=kernel, normalize_y=True, random_state=seed)
    if name == "rbf":
        return _scaled_target(KernelRidge(kernel="rbf", alpha=0.1, gamma=0.05))
    if name == "mlp":
        return _scaled_target(MLPRegressor(hidden_layer_sizes=(64, 64), alpha=1e-3, max_iter=1000, random_state=seed))
    if name == "ridge":
        return RidgeCV(alphas=np.logspace(-3, 3, 13))
    raise ValueError(f"unknown surrogate {name!r}; known: {', '.join(SURROGATE_NAMES)}")


#: surrogates no config can name (measured no better than ``lgbm``); the benchmark's variants use them
EXPERIMENTAL_SURROGATES: tuple[str, ...] = ("lgbm_rank",)
SURROGATE_NAMES: tuple[str, ...] = (*get_args(SurrogateName), *EXPERIMENTAL_SURROGATES)
_SCALED = {"gp", "rbf", "mlp", "ridge"}


def _identity(x: np.ndarray) -> np.ndarray:
    return np.asarray(x, dtype=float)


def make_surrogate(name: str, gene_upper_bounds: np.ndarray, seed: int = 0) -> Pipeline:
    """A fresh, unfitted surrogate pipeline: genes -> (ordinal + one-hot features) -> regressor."""
    categories = [np.arange(int(u) + 1) for u in np.asarray(gene_upper_bounds)]
    features = FeatureUnion([
        ("ordinal", FunctionTransformer(_identity)),
        ("onehot", OneHotEncoder(categories=categories, handle_unknown="ignore", sparse_output=False)),
    ])
    steps = [features] + ([StandardScaler()] if name in _SCALED else []) + [_regressor(name, seed)]
    return make_pipeline(*steps)


def _fit(model: Pipeline, genes: np.ndarray, targets: np.ndarray) -> Pipeline:
    """Fit, without the optimiser-convergence warnings small data sets provoke in GP/MLP."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        return model.fit(genes, targets)


def _tau(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    if len(y_true) < 2 or np.ptp(y_pred) == 0 or np.ptp(y_true) == 0:
        return 0.0
    value = kendalltau(y_true, y_pred).statistic
    return 0.0 if np.isnan(value) else float(value)


def _standardise(values: np.ndarray) -> np.ndarray:
    spread = values.std()
    return (values - values.mean()) / (spread if spread > 0 else 1.0)


@dataclass
class SurrogateChoice:
    """Outcome of adaptive switching: the chosen name, every candidate's mean tau, the fitted model."""

    name: str
    taus: dict[str, float]
    members: list[Pipeline] = field(default_factory=list)
    target_mean: float = 0.0
    target_std: float = 1.0

    def predict(self, genes: np.ndarray) -> np.ndarray:
        """Predictions in the target's units (an ensemble's mean z-score is mapped back)."""
        genes = np.asarray(genes, dtype=float)
        if len(self.members) == 1:
            return self.members[0].predict(genes)
        z = np.mean([_standardise(m.predict(genes)) for m in self.members], axis=0)
        return z * self.target_std + self.target_mean


class AdaptiveSurrogate:
    """Chooses, by cross-validated Kendall tau, among ``names`` and refits the winner on all data."""

    def __init__(
        self,
        names: Sequence[str],
        gene_upper_bounds: np.ndarray,
        cv_folds: int = 5,
        min_fold_size: int = 3,
        *,
        ensemble_size: int = 0,
    ):
        """``ensemble_size`` (experimental, keyword-only): also score the mean of the best
        ``ensemble_size`` surrogates as the candidate ``"ensemble"`` (0: never)."""
        unknown = [n for n in names if n not in SURROGATE_NAMES]
        if unknown or not names:
            raise ValueError(f"unknown surrogate(s) {unknown}; known: {', '.join(SURROGATE_NAMES)}")
        self.names = list(names)
        self.upper = np.asarray(gene_upper_bounds)
        self.cv_folds = cv_folds
        self.ensemble_size = ensemble_size
        self.min_fold_size = min_fold_size
        self.choice: SurrogateChoice | None = None

    def fit(self, genes: np.ndarray, targets: np.ndarray, seed: int) -> SurrogateChoice:
        """Score every candidate under the same folds, keep the best, refit it on all rows."""
        genes = np.asarray(genes, dtype=float)
        targets = np.asarray(targets, dtype=float)
        if len(self.names) == 1 and self.ensemble_size < 2:  # nothing to switch between: no CV
            fitted = [_fit(make_surrogate(self.names[0], self.upper, seed), genes, targets)]
            self.choice = SurrogateChoice(name=self.names[0], taus={self.names[0]: float("nan")}, members=fitted)
            return self.choice
        n_splits = int(min(self.cv_folds, max(2, len(targets) // self.min_fold_size)))
        folds = list(KFold(n_splits=n_splits, shuffle=True, random_state=seed).split(genes))
        fold_predictions: dict[str, list[np.ndarray]] = {}
        for name in self.names:
            template = make_surrogate(name, self.upper, seed)
            fold_predictions[name] = [
                _fit(clone(template), genes[train], targets[train]).predict(genes[test]) for train, test in folds
            ]
        taus = {
            name: float(np.mean([_tau(targets[test], pred) for (_, test), pred in zip(folds, preds)]))
            for name, preds in fold_predictions.items()
        }
        ranked = sorted(self.names, key=lambda n: -taus[n])
        if self.ensemble_size >= 2 and len(ranked) >= 2:
            members = ranked[: self.ensemble_size]
            taus[ENSEMBLE] = float(np.mean([
                _tau(targets[test], np.mean([_standardise(fold_predictions[m][i]) for m in members], axis=0))
                for i, (_, test) in enumerate(folds)
            ]))
        best = max(taus, key=lambda n: (taus[n], -list(taus).index(n)))
        chosen = ranked[: self.ensemble_size] if best == ENSEMBLE else [best]
        fitted = [_fit(make_surrogate(name, self.upper, seed), genes, targets) for name in chosen]
        self.choice = SurrogateChoice(
            name=best, taus=taus, members=fitted, target_mean=float(targets.mean()), target_std=float(targets.std() or 1.0)
        )
        return self.choice

    def predict(self, genes: np.ndarray) -> np.ndarray:
        if self.choice is None:
            raise RuntimeError("AdaptiveSurrogate.predict called before fit")
        return self.choice.predict(genes)
