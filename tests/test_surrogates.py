"""Adaptive switching picks the surrogate whose cross-validated Kendall tau is best."""

from __future__ import annotations

import numpy as np
import pytest

from pipeline.search.surrogates import SURROGATE_NAMES, AdaptiveSurrogate, make_surrogate

UPPER = np.full(6, 4)


def _genes(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 5, size=(n, 6))


def test_linear_target_favours_ridge():
    genes = _genes(120, 0)
    target = genes @ np.array([3.0, -2.0, 1.5, 0.7, -1.1, 2.2]) + np.random.default_rng(1).normal(0, 0.05, 120)
    surrogate = AdaptiveSurrogate(["dtree", "ridge"], UPPER, cv_folds=5)
    choice = surrogate.fit(genes, target, seed=0)
    assert choice.name == "ridge"
    assert choice.taus["ridge"] > choice.taus["dtree"] + 0.1


def test_step_interaction_target_favours_trees():
    genes = _genes(200, 2)
    # a pure interaction: high only when gene 0 and gene 3 are both above 2 (no linear signal in one-hot sum)
    target = np.where((genes[:, 0] > 2) == (genes[:, 3] > 2), 10.0, 0.0) + 0.01 * genes[:, 5]
    surrogate = AdaptiveSurrogate(["ridge", "dtree"], UPPER, cv_folds=5)
    choice = surrogate.fit(genes, target, seed=0)
    assert choice.name == "dtree"
    assert choice.taus["dtree"] > choice.taus["ridge"] + 0.2
    predictions = surrogate.predict(genes)
    assert predictions.shape == (200,)


def test_ensemble_candidate_is_scored_and_predicts_in_target_units():
    genes = _genes(80, 3)
    target = 90 + genes.sum(axis=1) * 0.3
    surrogate = AdaptiveSurrogate(["ridge", "lgbm"], UPPER, cv_folds=4, ensemble_size=2)
    choice = surrogate.fit(genes, target, seed=0)
    assert set(choice.taus) == {"ridge", "lgbm", "ensemble"}
    predictions = surrogate.predict(genes)
    assert abs(predictions.mean() - target.mean()) < 1.0


def test_single_surrogate_skips_cross_validation_and_unknown_names_fail():
    genes = _genes(30, 4)
    choice = AdaptiveSurrogate(["ridge"], UPPER).fit(genes, genes[:, 0] * 1.0, seed=0)
    assert choice.name == "ridge"
    with pytest.raises(ValueError):
        AdaptiveSurrogate(["nope"], UPPER)


@pytest.mark.parametrize("name", SURROGATE_NAMES)
def test_every_surrogate_fits_and_ranks_a_simple_signal(name):
    genes = _genes(60, 5)
    target = 80 + 2.0 * genes[:, 1] + genes[:, 2]
    model = make_surrogate(name, UPPER, seed=0).fit(genes, target)
    assert np.corrcoef(model.predict(genes), target)[0, 1] > 0.5


def test_ranking_surrogate_learns_the_whole_order_and_speaks_the_targets_units():
    """LambdaRank with every pair counted orders held-out rows at the bottom as well as at the top,
    and its predictions have the training targets' mean and spread."""
    from scipy.stats import kendalltau

    genes = _genes(160, 6)
    target = 70 + genes @ np.array([2.0, -1.0, 1.5, 0.5, 1.0, -0.5]) + np.random.default_rng(7).normal(0, 0.2, 160)
    model = make_surrogate("lgbm_rank", UPPER, seed=0).fit(genes[:120], target[:120])
    held_out = model.predict(genes[120:])
    assert kendalltau(target[120:], held_out).statistic > 0.6
    bottom = np.argsort(target[120:])[:20]  # the worse half of the held-out rows, ordered too
    assert kendalltau(target[120:][bottom], held_out[bottom]).statistic > 0.3
    fitted = model.predict(genes[:120])
    assert abs(fitted.mean() - target[:120].mean()) < 1e-6
    assert fitted.std() == pytest.approx(target[:120].std(), rel=1e-6)
