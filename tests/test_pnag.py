"""PNAG: dominance labels, budgets, the budget-conditioned generator and both entry points."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch

from pipeline.config import GenerateConfig as PNAGSettings
from pipeline.errors import BudgetError
from pipeline.evaluate.table import TableEvaluator
from pipeline.generate.budget import BudgetScale, parse_budgets, parse_metrics
from pipeline.generate.ranker import dominance_labels
from pipeline.generate.search_mode import generate_from_archive, generate_with_evaluator

torch.set_num_threads(1)

FAST = PNAGSettings(
    evals=40, training_steps=60, round_steps=10, evaluator_steps=150, evaluator_round_steps=40,
    samples_per_budget=48, pool_size=200, refit_every=2, batch_size=96,
)


# -- dominance labelling -------------------------------------------------------------------------
def test_dominance_labels_follow_the_three_rules():
    budget = np.array([1.0, 1.0, 1.0, 1.0, 1.0, 1.0])
    acc_a = np.array([90.0, 80.0, 70.0, 95.0, 60.0, 90.0])
    cost_a = np.array([0.5, 0.5, 2.0, 3.0, 0.9, 1.5])
    acc_b = np.array([80.0, 90.0, 95.0, 70.0, 99.0, 90.0])
    cost_b = np.array([0.8, 0.9, 3.0, 2.0, 1.1, 1.5])
    labels = dominance_labels(acc_a, cost_a, acc_b, cost_b, budget)
    # both within: higher accuracy wins (cases 0, 1); both over: lower cost wins (2, 3), regardless of
    # accuracy; only one within: that one wins even when less accurate (4); exact tie (5)
    assert labels.tolist() == [1.0, 0.0, 1.0, 0.0, 1.0, 0.5]


def test_dominance_labels_with_a_budget_vector():
    # two metrics: within means within on both; over budget compares the worst log ratio
    budget = np.array([[1.0, 100.0], [1.0, 100.0], [1.0, 100.0]])
    cost_a = np.array([[0.5, 50.0], [0.5, 150.0], [2.0, 110.0]])
    cost_b = np.array([[0.9, 120.0], [0.9, 90.0], [1.2, 300.0]])
    labels = dominance_labels(np.array([50.0, 99.0, 10.0]), cost_a, np.array([99.0, 50.0, 90.0]), cost_b, budget)
    assert labels.tolist() == [1.0, 0.0, 1.0]  # log(2) < log(3) in the last case


# -- budgets -------------------------------------------------------------------------------------
@pytest.mark.parametrize("text", ["", " , ", "-0.1", "0", "abc", "nan", "0.1:0.2"])
def test_bad_budget_lists_are_budget_errors(text):
    with pytest.raises(BudgetError):
        parse_budgets(text, 1)


def test_budget_scale_is_log_scaled_and_rejects_budgets_below_the_smallest():
    scale = BudgetScale(("params_m",), np.array([0.1]), np.array([1.0]))
    assert scale.normalise(np.array([[0.1], [np.sqrt(0.1)], [1.0], [5.0]])).ravel() == pytest.approx([0, 0.5, 1, 1])
    assert scale.denormalise(np.array([[0.5]]))[0, 0] == pytest.approx(np.sqrt(0.1))
    scale.check(np.array([[0.1], [3.0]]))
    with pytest.raises(BudgetError, match="below the smallest"):
        scale.check(np.array([[0.05]]))
    assert parse_metrics("params_m, flops_m") == ("params_m", "flops_m")
    with pytest.raises(BudgetError):
        parse_metrics("")


# -- the within-budget path on the table ---------------------------------------------------------
@pytest.fixture(scope="module")
def generated(table):
    evaluator = TableEvaluator(table)
    budgets = np.array([[0.1], [0.4], [1.2]])
    frame, pnag = generate_with_evaluator(evaluator.space, evaluator, budgets, FAST, seed=3)
    return evaluator, frame, pnag


def test_within_budget_path_counts_evaluations_and_returns_valid_members(generated, table):
    evaluator, frame, _ = generated
    assert evaluator.evaluations <= FAST.evals
    assert (frame["evaluations"] == evaluator.evaluations).all()
    assert len(frame) == 3
    for text, top1, params in frame[["arch", "top1", "params_m"]].itertuples(index=False):
        arch = evaluator.space.from_text(text)  # a valid member of the space
        row = table[table["arch"] == evaluator.space.to_text(arch)].iloc[0]
        assert top1 == pytest.approx(row["accuracy"]) and params == pytest.approx(row["params_m"])
    assert frame["meets_budget"].all() and (frame["params_m"] <= frame["budget"]).all()
    assert frame["verified"].all() and (frame["source"] == "generator").all()


def test_higher_budget_gives_larger_or_equal_cost(generated):
    _, frame, pnag = generated
    assert frame["params_m"].is_monotonic_increasing
    # the generator itself (not only the verified pick) moves toward larger networks as the budget grows
    mean_cost = []
    for budget in (0.1, 0.4, 1.2):
        genes = pnag.trainer.sample(pnag.scale.normalise(np.array([[budget]]))[0], 200)
        archs, canon = pnag.canonicalise(genes)
        mean_cost.append(float(pnag.costs_of(canon, archs).mean()))
    assert mean_cost[0] < mean_cost[1] < mean_cost[2]


def test_generation_is_deterministic_given_the_seed(table, generated):
    _, frame, _ = generated
    evaluator = TableEvaluator(table)
    again, _ = generate_with_evaluator(evaluator.space, evaluator, np.array([[0.1], [0.4], [1.2]]), FAST, seed=3)
    assert again["arch_id"].tolist() == frame["arch_id"].tolist()
    assert np.allclose(again["predicted_top1"], frame["predicted_top1"])


def test_unknown_metric_and_impossible_budget_spend_no_evaluations(table):
    evaluator = TableEvaluator(table)
    with pytest.raises(BudgetError, match="unknown budget metric"):
        generate_with_evaluator(evaluator.space, evaluator, np.array([[0.5]]),
                                PNAGSettings(budget_metrics=("latency_ms@cpu",)), seed=0)
    with pytest.raises(BudgetError, match="below the smallest"):
        generate_with_evaluator(evaluator.space, evaluator, np.array([[0.01]]), FAST, seed=0)
    assert evaluator.evaluations == 0


# -- the archive path ----------------------------------------------------------------------------
def test_generation_from_an_archive_frame_spends_no_evaluations(table):
    evaluator = TableEvaluator(table)
    rng = np.random.default_rng(0)
    picks = table.iloc[rng.choice(len(table), 60, replace=False)]
    archive = pd.DataFrame({"arch": picks["arch"], "top1": picks["accuracy"], "params_m": picks["params_m"],
                            "status": "ok"})
    frame, _ = generate_from_archive(evaluator.space, archive, np.array([[0.2], [1.0]]), FAST, seed=1,
                                     exact_cost_fn=evaluator.cheap_metrics, exact_names=("params_m", "flops_m"))
    assert evaluator.evaluations == 0
    assert (frame["evaluations"] == 0).all()
    assert frame["meets_budget"].all() and (frame["params_m"] <= frame["budget"]).all()
    assert np.isfinite(frame["predicted_top1"]).all()
    for text in frame["arch"]:
        evaluator.space.from_text(text)


def test_best_evaluated_member_within_a_budget_is_the_fallback_pick(table):
    """When every checked pick breaks the budget under the exact count, PNAG falls back to the most
    accurate truly evaluated architecture whose measured cost meets the budget."""
    evaluator = TableEvaluator(table)
    rng = np.random.default_rng(3)
    picks = table.iloc[rng.choice(len(table), 60, replace=False)]
    archive = pd.DataFrame({"arch": picks["arch"], "top1": picks["accuracy"], "params_m": picks["params_m"],
                            "status": "ok"})
    _, pnag = generate_from_archive(evaluator.space, archive, np.array([[1.0]]), FAST, seed=2,
                                    exact_cost_fn=evaluator.cheap_metrics, exact_names=("params_m", "flops_m"))
    budget = float(np.median(picks["params_m"]))
    within = picks[picks["params_m"] <= budget]
    best = pnag._best_known_within(np.array([budget]))  # noqa: SLF001 - the fallback rule itself
    assert evaluator.space.to_text(best.arch) == within.loc[within["accuracy"].idxmax(), "arch"]
    assert pnag._best_known_within(np.array([picks["params_m"].min() / 2])) is None  # noqa: SLF001


def test_a_latency_budget_with_an_exact_params_check_from_an_archive(table):
    """The run path: params checked exactly (``check_cost_fn``), latency only measured in the archive.
    ``meets_budget`` agrees with the costs the row reports (measured where known, else predicted)."""
    evaluator = TableEvaluator(table)
    rng = np.random.default_rng(5)
    picks = table.iloc[rng.choice(len(table), 80, replace=False)]
    latency = 0.5 + 0.02 * picks["flops_m"].to_numpy() * rng.uniform(0.95, 1.05, len(picks))
    archive = pd.DataFrame({"arch": picks["arch"], "top1": picks["accuracy"], "params_m": picks["params_m"],
                            "latency_ms@cpu": latency, "status": "ok"})
    settings = PNAGSettings(**{**FAST.__dict__, "budget_metrics": ("params_m", "latency_ms@cpu")})
    budgets = np.array([[0.4, float(np.median(latency))], [1.2, float(latency.max())]])
    frame, _ = generate_from_archive(evaluator.space, archive, budgets, settings, seed=1,
                                     check_cost_fn=evaluator.cheap_metrics)
    assert len(frame) == 2 and frame["meets_budget"].all()
    assert (frame["params_m"] <= frame["budget@params_m"]).all()
    assert (frame["latency_ms@cpu"] <= frame["budget@latency_ms@cpu"] + 1e-9).all()
