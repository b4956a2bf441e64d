"""NATv2's mechanisms as the paper states them (docs/methods.md): pre-processing, the constant-size
archive, exact cheap objectives, current accuracies only, high-tradeoff points."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
from conftest import FAST as SHARED_FAST
from conftest import OBJECTIVES

from pipeline import results
from pipeline.config import FinetuneConfig, load_config
from pipeline.evaluate.table import TableEvaluator
from pipeline.finetune_choices import finetune_choices
from pipeline.search import natv2
from pipeline.search.archive_store import ArchiveStore
from pipeline.search.driver import run_search
from pipeline.search.natv2 import NATv2Engine, NATv2Settings
from pipeline.search.pareto import high_tradeoff_mask, nondominated_ranks, to_minimization
from pipeline.search.settings import NATv2Experiments

FAST = replace(SHARED_FAST, max_evaluations=40, archive_size=10, initial_factor=2.0)


def _engine(evaluator: TableEvaluator, settings: NATv2Settings = FAST, seed: int = 0) -> NATv2Engine:
    return NATv2Engine(evaluator.space, OBJECTIVES, settings, seed, cheap_metrics=evaluator.cheap_metrics,
                       cheap_metric_names=evaluator.cheap_metric_names)


def _points(engine: NATv2Engine, ids) -> np.ndarray:
    return to_minimization([[engine.record(i).metrics[o.name] for o in OBJECTIVES] for i in ids], OBJECTIVES)


def test_preprocessing_evaluates_initial_factor_times_the_archive_and_keeps_the_archive_size(table):
    evaluator = TableEvaluator(table)
    engine = _engine(evaluator, replace(FAST, initial_factor=3.0))
    first = engine.ask()
    assert len(first) >= 3 * 10  # the reference: sample 10x (here 3x) the archive size, evaluate them all
    engine.tell(evaluator.evaluate([c.arch for c in first]))
    assert evaluator.evaluations == len(first) and len(engine.state.archive_ids) == 10


def test_survival_keeps_the_archive_at_its_size_whole_fronts_first_and_the_two_ends(table):
    evaluator = TableEvaluator(table)
    space = evaluator.space
    ends = {space.arch_id(space.smallest()), space.arch_id(space.largest())}
    engine = _engine(evaluator)
    removed = 0
    while not engine.done:
        before = set(engine.state.archive_ids)
        candidates = engine.ask()
        engine.tell(evaluator.evaluate([c.arch for c in candidates]))
        archive = set(engine.state.archive_ids)
        assert len(archive) == 10 and ends <= archive  # constant size; the smallest and largest stay
        merged = sorted(before | {c.arch_id for c in candidates}) if before else sorted(engine.state.records)
        front = {merged[i] for i in np.flatnonzero(nondominated_ranks(_points(engine, merged)) == 0)}
        if len(front | ends) <= 10:  # rank-and-crowding keeps the whole non-dominated set when it fits
            assert front <= archive
        removed += len(set(merged) - archive)
    assert engine.iteration == 4 and removed >= 10 + 4 * 5  # survival really removed what did not fit


def test_cheap_objectives_are_never_asked_of_a_surrogate(table, monkeypatch):
    fitted_targets: list[np.ndarray] = []

    class Spy(natv2.AdaptiveSurrogate):
        def fit(self, genes, targets, seed=0):
            fitted_targets.append(np.asarray(targets, dtype=float))
            return super().fit(genes, targets, seed=seed)

        def predict(self, genes):
            predicted = super().predict(genes)
            spy_calls.append(len(genes))
            return predicted

    spy_calls: list[int] = []
    monkeypatch.setattr(natv2, "AdaptiveSurrogate", Spy)
    evaluator = TableEvaluator(table)
    engine = _engine(evaluator, replace(FAST, initial_factor=1.0, archive_size=40))
    assert list(engine.surrogates) == ["top1"]
    while not engine.done:
        candidates = engine.ask()
        engine.tell(evaluator.evaluate([c.arch for c in candidates]))
        for c in candidates:  # the exact params, never a prediction, are what the search ranked on
            assert "params_m" not in c.predicted
    accuracies = set(table["accuracy"].astype(float))
    assert fitted_targets and spy_calls
    assert all(set(targets.tolist()) <= accuracies for targets in fitted_targets)
    params = set(table["params_m"].astype(float))
    assert not any(set(targets.tolist()) <= params for targets in fitted_targets)


def test_stale_accuracies_neither_rank_nor_reach_the_front(tmp_path):
    store = ArchiveStore(tmp_path, run_id="t", space="natsbench", objectives=OBJECTIVES)
    row = lambda arch_id, top1, params, round_: {  # noqa: E731
        "arch_id": arch_id, "arch": arch_id, "top1": top1, "params_m": params, "status": "ok",
        "supernet_round": round_, "iteration": 0, "source": "init"}
    store.upsert([row("old_best", 90.0, 1.0, 0), row("b", 80.0, 1.0, 1), row("c", 70.0, 0.5, 1)])
    frame = store.frame().set_index("arch_id")
    # measured under older weights, "old_best" would dominate "b"; it must not rank at all
    assert frame.loc["old_best", "rank"] == -1 and not frame.loc["old_best", "is_pareto"]
    assert frame.loc["b", "is_pareto"] and frame.loc["c", "is_pareto"]
    store.write_front(1)
    assert set(results.front(tmp_path)["arch_id"]) == {"b", "c"}


def test_high_tradeoff_marks_the_knee_of_a_hand_built_front():
    # a convex front with one knee at (0.1, 0.1): leaving it costs far more than it gains
    front = np.array([(0, 1), (0.02, 0.7), (0.05, 0.45), (0.1, 0.1), (0.45, 0.05), (0.7, 0.02), (1, 0)])
    assert high_tradeoff_mask(front).tolist() == [False, False, False, True, False, False, False]
    assert not high_tradeoff_mask(front[:2]).any()


def test_high_tradeoff_points_reach_the_front_results_and_finetune(table, tmp_path):
    evaluator = TableEvaluator(table)
    run_search(evaluator, OBJECTIVES, replace(FAST, initial_factor=1.0, archive_size=300, max_evaluations=60),
               tmp_path, seed=0, run_id="t")
    front = results.front(tmp_path)
    assert front["is_high_tradeoff"].dtype == bool
    minimized = to_minimization(front[["top1", "params_m"]].to_numpy(), OBJECTIVES)
    assert front["is_high_tradeoff"].tolist() == high_tradeoff_mask(minimized).tolist()
    picked = results.high_tradeoff(tmp_path)
    assert set(picked["arch_id"]) == set(front.loc[front["is_high_tradeoff"], "arch_id"])
    archs = finetune_choices(FinetuneConfig(source="high_tradeoff", max_archs=50), tmp_path, evaluator.space)
    assert {evaluator.space.arch_id(a) for a in archs} == set(picked["arch_id"])


def test_the_paper_config_carries_the_papers_settings():
    config = load_config("jobs/configs/natv2_paper.yaml", [])
    settings = NATv2Settings.from_config(config.search)
    assert (settings.archive_size, settings.candidates(), settings.initial_factor) == (300, 25, 10.0)
    assert settings.adaptation_enabled and settings.evaluations_for_initial() == 3000
    assert settings.max_evaluations == 3000 + 30 * 25 and settings.iterations == 30


def test_hvi_selection_hands_out_the_greedy_hypervolume_picks(table, monkeypatch):
    picks: list[int] = []

    def spy(minimized, k, archive, reference=1.1):
        chosen = natv2_selection.hypervolume_greedy(minimized, k, archive, reference)
        picks.append(len(chosen))
        return chosen

    from pipeline.search import selection as natv2_selection

    monkeypatch.setattr(natv2, "hypervolume_greedy", spy)
    evaluator = TableEvaluator(table)
    engine = _engine(evaluator, replace(FAST, subset_selection="hvi"))
    while not engine.done:
        candidates = engine.ask()
        engine.tell(evaluator.evaluate([c.arch for c in candidates]))
    assert picks and all(count == FAST.candidates_per_iteration for count in picks)
    assert len(picks) == engine.iteration  # one greedy selection per search iteration


def test_the_second_surrogate_bank_exists_only_when_the_small_archive_experiment_asks(table):
    evaluator = TableEvaluator(table)
    assert _engine(evaluator).early_surrogates == {}
    experiment = replace(FAST, experiments=NATv2Experiments(early_rows=25))
    assert set(_engine(evaluator, experiment).early_surrogates) == {"top1"}


def test_small_archive_phase_fits_the_early_surrogates_and_selection_then_the_regular_ones(table, monkeypatch):
    fits: list[tuple[tuple[str, ...], int]] = []
    greedy_calls: list[int] = []

    class Spy(natv2.AdaptiveSurrogate):
        def fit(self, genes, targets, seed=0):
            fits.append((tuple(self.names), len(targets)))
            return super().fit(genes, targets, seed=seed)

    from pipeline.search import selection

    def greedy(minimized, k, archive, reference=1.1):
        greedy_calls.append(len(archive))
        return selection.hypervolume_greedy(minimized, k, archive, reference)

    monkeypatch.setattr(natv2, "AdaptiveSurrogate", Spy)
    monkeypatch.setattr(natv2, "hypervolume_greedy", greedy)
    evaluator = TableEvaluator(table)
    engine = _engine(evaluator, replace(FAST, experiments=NATv2Experiments(early_rows=25, early_surrogates=("gp",),
                                                                       early_subset_selection="hvi")))
    while not engine.done:
        candidates = engine.ask()
        engine.tell(evaluator.evaluate([c.arch for c in candidates]))
    assert [rows for _, rows in fits] == [20, 25, 30, 35]  # the first ask of 20 rows, then K = 5 more each time
    assert [names for names, _ in fits] == [("gp",), ("ridge", "dtree"), ("ridge", "dtree"), ("ridge", "dtree")]
    assert greedy_calls == [20]  # hvi while small; the regular rank-and-spread rule afterwards
