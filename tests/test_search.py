"""NATv2 engine on the NATS-Bench table: budget, determinism, resume, hooks, 3 objectives."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from conftest import FAST, OBJECTIVES

from pipeline.config import SearchConfig
from pipeline.errors import BudgetError, ConfigError
from pipeline.evaluate.interface import Objective
from pipeline.evaluate.table import TableEvaluator
from pipeline.search.archive_store import ArchiveStore
from pipeline.search.driver import SearchRunner
from pipeline.search.engine_state import load_state
from pipeline.search.natv2 import NATv2Engine, NATv2Settings


def _runner(evaluator, sink, run_dir, settings, seed, objectives, **kwargs) -> SearchRunner:
    engine = NATv2Engine(evaluator.space, objectives, settings, seed, cheap_metrics=evaluator.cheap_metrics,
                         cheap_metric_names=evaluator.cheap_metric_names)
    return SearchRunner(engine, evaluator, sink, run_dir, run_id="t", **kwargs)


def _engine(table, run_dir, settings=FAST, seed=0, objectives=OBJECTIVES, **kwargs):
    """A runner (driver + engine) on the table, its evaluator and its sink."""
    evaluator = TableEvaluator(table)
    sink = ArchiveStore(run_dir, run_id="t", space="natsbench", objectives=objectives)
    return _runner(evaluator, sink, run_dir, settings, seed, objectives, **kwargs), evaluator, sink


def _content(sink) -> pd.DataFrame:
    frame = sink.frame().drop(columns=["evaluated_at"]).sort_values("arch_id").reset_index(drop=True)
    return frame.astype({"predicted_top1": float})  # None before a reload, NaN after one


def test_run_respects_budget_and_records_every_evaluation(table, tmp_path):
    engine, evaluator, sink = _engine(table, tmp_path)
    result = engine.run()
    assert result.finished and result.evaluations == evaluator.evaluations == 30
    frame = sink.frame()
    assert len(frame) == 30 and frame["arch_id"].is_unique
    assert set(frame["source"]) == {"init", "search"}
    assert frame.loc[frame["source"] == "search", "predicted_top1"].notna().all()
    assert [h["iteration"] for h in result.history] == [0, 1, 2, 3, 4]
    assert (tmp_path / "fronts" / "iter_004.parquet").is_file()
    smallest = evaluator.space.arch_id(evaluator.space.smallest())
    assert smallest in set(frame["arch_id"])


def test_same_seed_same_archive_different_seed_differs(table, tmp_path):
    first = _engine(table, tmp_path / "a", seed=3)
    first[0].run()
    second = _engine(table, tmp_path / "b", seed=3)
    second[0].run()
    pd.testing.assert_frame_equal(_content(first[2]), _content(second[2]))
    third = _engine(table, tmp_path / "c", seed=4)
    third[0].run()
    assert set(_content(third[2])["arch_id"]) != set(_content(first[2])["arch_id"])


def test_resume_ends_where_an_uninterrupted_run_ends(table, tmp_path):
    whole = _engine(table, tmp_path / "whole", seed=7)
    whole[0].run()
    interrupted = _engine(table, tmp_path / "split", seed=7)
    partial = interrupted[0].run(stop_after_iteration=2)
    assert not partial.finished and partial.evaluations == 20
    assert load_state(tmp_path / "split").iteration == 2
    resumed = _engine(table, tmp_path / "split", seed=7)  # a fresh process would build everything anew
    result = resumed[0].run(resume=True)
    assert result.finished and result.evaluations == 30
    assert resumed[1].evaluations == 10  # only the remaining iterations were evaluated
    pd.testing.assert_frame_equal(_content(whole[2]), _content(resumed[2]))


def test_budget_below_initial_archive_is_refused(table, tmp_path):
    engine, _, _ = _engine(table, tmp_path, settings=replace(FAST, max_evaluations=8))
    with pytest.raises(BudgetError, match="initial archive"):
        engine.run()


def test_preprocessing_counts_against_the_budget_and_keeps_the_archive_size(table, tmp_path):
    settings = replace(FAST, initial_factor=2.0, max_evaluations=25)
    engine, evaluator, _ = _engine(table, tmp_path, settings=settings)
    result = engine.run(stop_after_iteration=0)
    assert result.evaluations == evaluator.evaluations == 20
    assert len(result.archive_ids) == 10


def test_adaptation_hook_gets_archive_best_and_archive_is_reevaluated(table, tmp_path):
    calls = []
    settings = replace(FAST, adaptation_enabled=True, adaptation_archs=4, max_evaluations=20)
    engine, evaluator, _ = _engine(table, tmp_path, settings=settings, adapt=lambda archs: calls.append(archs))
    result = engine.run()
    assert len(calls) == 2 and all(len(c) == 4 for c in calls)
    assert evaluator.evaluations == 20 + sum(h["archive_size"] for h in result.history[1:])
    assert load_state(tmp_path).reevaluations == evaluator.evaluations - 20


def test_three_objectives_use_nsga3_and_a_latency_predictor(table, tmp_path):
    class FlopsAsLatency:
        def __init__(self, evaluator):
            self.evaluator = evaluator
            self.calls = 0

        def predict(self, archs):
            self.calls += 1
            return np.array([self.evaluator.cheap_metrics(a)["flops_m"] / 10 for a in archs])

    objectives = OBJECTIVES + [Objective("flops_m", "min")]
    engine, evaluator, sink = _engine(table, tmp_path, objectives=objectives)
    predictor = FlopsAsLatency(evaluator)
    engine.engine.latency_predictors = {"flops_m": predictor}
    result = engine.run()
    assert result.evaluations == 30 and predictor.calls > 0
    assert sink.frame()["is_pareto"].sum() >= 2


def test_search_config_defaults_are_the_engine_defaults():
    settings = NATv2Settings.from_config(SearchConfig())
    assert settings == NATv2Settings()
    custom = NATv2Settings.from_config({"adaptation": {"enabled": True, "archs_sampled": 7}, "surrogates": ["gp"]})
    assert custom.adaptation_enabled and custom.adaptation_archs == 7 and custom.surrogates == ("gp",)


def test_settings_take_no_key_the_search_section_does_not_have():
    with pytest.raises(ConfigError, match="unknown key 'early_rows'"):
        NATv2Settings.from_config({"early_rows": 50})  # an experiment, not a config key


def test_candidates_per_iteration_scales_with_budget():
    assert NATv2Settings(max_evaluations=100).candidates() == 5
    assert NATv2Settings(max_evaluations=300).candidates() == 10
    assert NATv2Settings(max_evaluations=10**5).candidates() == 25
    assert NATv2Settings(max_evaluations=100, candidates_per_iteration=7).candidates() == 7


def test_initial_archive_scales_with_budget():
    assert NATv2Settings(max_evaluations=100).initial_archive_size() < NATv2Settings(max_evaluations=300).initial_archive_size()
    assert NATv2Settings(max_evaluations=20).initial_archive_size() == NATv2Settings().min_initial_size
    assert NATv2Settings(max_evaluations=10**6).initial_archive_size() == NATv2Settings().archive_size


class _TinySpace:
    """Nine architectures: two genes in 0..2 (a space the search can exhaust)."""

    @staticmethod
    def build():
        from pipeline.evaluate.interface import EvaluationResult, Evaluator
        from pipeline.space.base import SearchSpace

        class TinySpace(SearchSpace):
            name = "tiny"

            def sample(self, rng):
                return {"g": [int(v) for v in rng.integers(0, 3, 2)]}

            def validate(self, arch):
                return {"g": [int(v) for v in arch["g"]]}

            def encode(self, arch):
                return np.array(arch["g"], dtype=np.int64)

            def decode(self, genes):
                return {"g": [int(v) for v in np.asarray(genes).round()]}

            def gene_upper_bounds(self):
                return np.array([2, 2])

            def smallest(self):
                return {"g": [0, 0]}

            def largest(self):
                return {"g": [2, 2]}

        class TinyEvaluator(Evaluator):
            cheap_metric_names = ("params_m",)

            def __init__(self):
                self.space = TinySpace()

            def cheap_metrics(self, arch):
                return {"params_m": float(sum(arch["g"]))}

            def evaluate(self, archs):
                self.evaluations += len(archs)
                return [EvaluationResult(arch=a, arch_id=self.space.arch_id(a),
                                         metrics={"top1": float(10 * a["g"][0] + a["g"][1]), **self.cheap_metrics(a)})
                        for a in archs]

        return TinyEvaluator()


@pytest.mark.timeout(120)
def test_search_stops_when_the_space_is_exhausted(tmp_path):
    evaluator = _TinySpace.build()
    sink = ArchiveStore(tmp_path, run_id="t", space="tiny", objectives=OBJECTIVES)
    settings = replace(FAST, max_evaluations=50, initial_size=4, candidates_per_iteration=3)
    result = _runner(evaluator, sink, tmp_path, settings, 0, OBJECTIVES).run()
    assert result.finished and result.evaluations == evaluator.evaluations == 9
    assert len(sink.frame()) == 9
