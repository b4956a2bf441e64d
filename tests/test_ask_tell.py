"""NATv2 driven by hand through ask/tell on the NATS-Bench table: no driver, no files."""

from __future__ import annotations

import json

import pytest
from conftest import FAST, OBJECTIVES

from pipeline.evaluate.table import TableEvaluator
from pipeline.search.archive_store import ArchiveStore
from pipeline.search.driver import SearchRunner
from pipeline.search.natv2 import NATv2Engine
from pipeline.search.termination import AnyOf, MaxEvaluations, MaxIterations, Progress, SpaceExhausted


def _engine(evaluator: TableEvaluator, seed: int = 0, **kwargs) -> NATv2Engine:
    return NATv2Engine(evaluator.space, OBJECTIVES, FAST, seed, cheap_metrics=evaluator.cheap_metrics,
                       cheap_metric_names=evaluator.cheap_metric_names, **kwargs)


def _drive(engine: NATv2Engine, evaluator: TableEvaluator, until_iteration: int | None = None) -> None:
    while not engine.done and (until_iteration is None or not engine.started or engine.iteration < until_iteration):
        candidates = engine.ask()
        engine.tell(evaluator.evaluate([c.arch for c in candidates]))


def test_by_hand_ask_tell_spends_the_budget_on_new_candidates_with_predictions(table):
    evaluator = TableEvaluator(table)
    engine = _engine(evaluator)
    seen: set[str] = set()
    asked_iterations = []
    while not engine.done:
        candidates = engine.ask()
        assert candidates and not {c.arch_id for c in candidates} & seen  # never an architecture twice
        seen |= {c.arch_id for c in candidates}
        asked_iterations.append({c.iteration for c in candidates})
        if engine.started:  # search candidates carry the surrogate's top-1; params come exact
            assert all(set(c.predicted) == {"top1"} and c.source == "search" for c in candidates)
        entry = engine.tell(evaluator.evaluate([c.arch for c in candidates]))
        assert entry["iteration"] == engine.iteration and entry["evaluations"] == len(seen)
    assert evaluator.evaluations == engine.state.evaluations == len(seen) == 30
    assert asked_iterations == [{0}, {1}, {2}, {3}, {4}]
    assert set(engine.state.archive_ids) <= seen
    with pytest.raises(RuntimeError, match="finished"):
        engine.ask()


def test_tell_refuses_results_that_were_not_asked(table):
    evaluator = TableEvaluator(table)
    engine = _engine(evaluator)
    candidates = engine.ask()
    with pytest.raises(RuntimeError, match="tell the results"):
        engine.ask()
    with pytest.raises(ValueError, match="one result per asked candidate"):
        engine.tell(evaluator.evaluate([c.arch for c in candidates[:-1]]))


def test_the_driver_adds_nothing_to_the_search(table, tmp_path):
    by_hand = _engine(TableEvaluator(table), seed=5)
    _drive(by_hand, TableEvaluator(table))
    evaluator = TableEvaluator(table)
    sink = ArchiveStore(tmp_path, run_id="t", space="natsbench", objectives=OBJECTIVES)
    driven = SearchRunner(_engine(evaluator, seed=5), evaluator, sink, tmp_path).run()
    assert driven.archive_ids == by_hand.state.archive_ids
    assert [r.arch_id for r in driven.records] == list(by_hand.state.records)
    rows = sink.frame().set_index("arch_id")
    assert len(rows) == 30  # each row persisted once, with the iteration it was asked in
    assert all(rows.loc[r.arch_id, "iteration"] == r.iteration for r in driven.records)


@pytest.mark.parametrize("mid_ask", [False, True], ids=["between iterations", "between ask and tell"])
def test_a_restored_state_dict_ends_with_the_uninterrupted_archive(table, mid_ask):
    whole = _engine(TableEvaluator(table), seed=7)
    _drive(whole, TableEvaluator(table))

    first = _engine(TableEvaluator(table), seed=7)
    _drive(first, TableEvaluator(table), until_iteration=2)
    pending = first.ask() if mid_ask else []
    saved = json.loads(json.dumps(first.state_dict()))  # as it would travel through a file
    restored = _engine(TableEvaluator(table), seed=7)  # a fresh process builds everything anew
    restored.load_state_dict(saved)
    evaluator = TableEvaluator(table)
    if mid_ask:
        restored.tell(evaluator.evaluate([c.arch for c in pending]))
    _drive(restored, evaluator)
    assert restored.state.archive_ids == whole.state.archive_ids
    assert {k: r.metrics for k, r in restored.state.records.items()} == {k: r.metrics for k, r in whole.state.records.items()}
    assert [h["hypervolume"] for h in restored.history] == [h["hypervolume"] for h in whole.history]


def test_termination_objects_combine_with_any_of(table):
    combined = AnyOf(MaxEvaluations(30), MaxIterations(2), SpaceExhausted())
    assert combined.evaluations_left(Progress(evaluations=12)) == 18
    assert not combined.done(Progress(evaluations=12, iterations=1))
    assert combined.done(Progress(evaluations=12, iterations=2))
    assert combined.done(Progress(exhausted=True)) and combined.done(Progress(evaluations=30))
    assert AnyOf(MaxIterations(3)).evaluations_left(Progress()) is None

    evaluator = TableEvaluator(table)
    engine = _engine(evaluator, termination=AnyOf(MaxEvaluations(30), MaxIterations(2)))
    _drive(engine, evaluator)
    assert engine.iteration == 2 and engine.state.evaluations == 20
