"""NATv2Search: NATv2 as a Ray Tune search algorithm on the NATS-Bench table."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
from conftest import FAST

from pipeline.bench.search import run_random, score, true_front
from pipeline.evaluate.table import TableEvaluator
from pipeline.search.tune import NATv2Search


def _searcher(evaluator: TableEvaluator, evaluations: int = 30, **kwargs) -> NATv2Search:
    exact = lambda arch: {"params_m": evaluator.cheap_metrics(arch)["params_m"]}  # noqa: E731
    return NATv2Search(evaluator.space, ["top1:max", "params_m:min"], cheap_metrics=exact,
                       max_evaluations=evaluations, seed=3, **kwargs)


def _run_trials(searcher: NATv2Search, evaluator: TableEvaluator, trials: range, fail: set[int] = frozenset()) -> None:
    """Tune's calls by hand: suggest two trials at a time, then complete them."""
    in_flight: list[tuple[str, dict]] = []
    for number in trials:
        config = searcher.suggest(f"t{number}")
        if config is None:  # waiting for its batch: complete what runs, then ask again
            for trial_id, running in in_flight:
                top1 = evaluator.evaluate([running["arch"]])[0].metrics["top1"]
                searcher.on_trial_complete(trial_id, {"top1": top1}, error=int(trial_id[1:]) in fail)
            in_flight.clear()
            config = searcher.suggest(f"t{number}")
        if config == NATv2Search.FINISHED:
            return
        in_flight.append((f"t{number}", config))
    for trial_id, running in in_flight:
        searcher.on_trial_complete(trial_id, {"top1": evaluator.evaluate([running["arch"]])[0].metrics["top1"]})


def test_save_and_restore_mid_batch_continue_the_same_search(table, tmp_path):
    whole = _searcher(TableEvaluator(table), settings=FAST)
    _run_trials(whole, TableEvaluator(table), range(200))
    assert whole.engine.done and whole.suggest("late") == NATv2Search.FINISHED

    first = _searcher(TableEvaluator(table), settings=FAST)
    _run_trials(first, TableEvaluator(table), range(13))  # stops inside the second batch
    first.save(str(tmp_path / "searcher.pkl"))
    restored = _searcher(TableEvaluator(table), settings=FAST)
    restored.restore(str(tmp_path / "searcher.pkl"))
    _run_trials(restored, TableEvaluator(table), range(100, 300))
    assert restored.engine.done and restored.engine.state.evaluations == 30
    assert restored.engine.state.archive_ids == whole.engine.state.archive_ids


def test_failed_trials_are_told_as_failed_and_count_against_the_budget(table):
    searcher = _searcher(TableEvaluator(table), settings=FAST)
    _run_trials(searcher, TableEvaluator(table), range(200), fail={1, 4})
    records = searcher.engine.result().records
    assert len(records) == 30 and sum(r.status == "failed" for r in records) == 2
    assert len(searcher.evaluated()) == 28


@pytest.mark.timeout(600)
def test_tuner_with_natv2search_beats_random_search_at_the_same_count(ray_local, table, tmp_path):
    from ray import tune

    evaluator = TableEvaluator(table)
    accuracy = dict(zip(table["arch"], table["accuracy"].astype(float)))
    space = evaluator.space

    def trainable(config: dict) -> None:  # looks the architecture up in the table
        tune.report({"top1": accuracy[space.to_text(config["arch"])]})

    searcher = _searcher(evaluator, evaluations=100, settings=replace(FAST, initial_size=20))
    tuner = tune.Tuner(  # a table look-up is light: a quarter CPU per trial, actors reused
        tune.with_resources(trainable, {"cpu": 0.25}),
        tune_config=tune.TuneConfig(search_alg=searcher, num_samples=100, reuse_actors=True),
        run_config=tune.RunConfig(storage_path=str(tmp_path), verbose=0),
    )
    results = tuner.fit()
    assert len(results) == 100 and not results.errors
    archs = [r.config["arch"] for r in results]
    assert len({space.arch_id(a) for a in archs}) == 100  # distinct evaluations
    measured = [{"top1": accuracy[space.to_text(a)], "params_m": evaluator.cheap_metrics(a)["params_m"]} for a in archs]
    front = true_front(table)
    ours = score(measured, front)
    random_scores = [score(run_random(TableEvaluator(table), space, 100, seed), front) for seed in range(5)]
    assert ours > np.median(random_scores), (ours, random_scores)
