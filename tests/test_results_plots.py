"""The results API and the plots, on a run directory built from the NATS-Bench table."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from conftest import OBJECTIVES

from pipeline import plots, results
from pipeline.atomic import write_parquet_atomic
from pipeline.errors import ResultsError
from pipeline.evaluate.table import TableEvaluator
from pipeline.schema import result_row
from pipeline.search.archive_store import ArchiveStore


def build_run(run_dir, evaluator, seed, iterations=3, per_iteration=20):
    rng = np.random.default_rng(seed)
    store = ArchiveStore(run_dir, f"run{seed}", "natsbench", OBJECTIVES)
    space = evaluator.space
    for iteration in range(iterations):
        archs = [space.sample(rng) for _ in range(per_iteration)]
        rows = [
            result_row(r, run_id=store.run_id, space="natsbench", arch_text=space.to_text(r.arch),
                       iteration=iteration, source="init" if iteration == 0 else "search")
            for r in evaluator.evaluate(archs)
        ]
        store.upsert(rows)
        store.write_front(iteration)
    return store


@pytest.fixture(scope="module")
def evaluator(bench_table_path):
    return TableEvaluator(bench_table_path)


def test_results_frames_and_hypervolume(tmp_path, evaluator):
    store = build_run(tmp_path, evaluator, seed=1)
    archive = results.archive(tmp_path)
    assert set(archive["arch_id"]) == set(store.arch_ids())
    stacked = results.fronts(tmp_path)
    assert sorted(stacked["front_iteration"].unique()) == [0, 1, 2]
    assert results.front(tmp_path)["is_pareto"].all()
    assert [o.name for o in results.objectives_of(tmp_path)] == ["top1", "params_m"]
    curve = results.hypervolume_curve(tmp_path)
    assert curve["evaluations"].tolist() == sorted(curve["evaluations"].tolist())
    assert (np.diff(curve["hypervolume"]) >= -1e-12).all()  # an archive's HV never shrinks
    assert curve["hypervolume"].iloc[-1] > 0


def test_compare_runs_shares_normalisation(tmp_path, evaluator):
    build_run(tmp_path / "a", evaluator, seed=2, iterations=1, per_iteration=5)
    build_run(tmp_path / "b", evaluator, seed=3, iterations=3, per_iteration=30)
    table = results.compare_runs([tmp_path / "a", tmp_path / "b"])
    assert table["evaluations"].tolist() == [len(results.archive(tmp_path / "a")), len(results.archive(tmp_path / "b"))]
    assert table["hypervolume"].iloc[1] > table["hypervolume"].iloc[0]


def test_missing_and_corrupt_files_are_results_errors(tmp_path):
    with pytest.raises(ResultsError, match="does not exist"):
        results.archive(tmp_path)
    (tmp_path / "archive.parquet").write_bytes(b"PAR1 not really")
    with pytest.raises(ResultsError, match="corrupt"):
        results.archive(tmp_path)


def test_plot_run_writes_every_plot(tmp_path, evaluator):
    build_run(tmp_path, evaluator, seed=4)
    metrics = pd.DataFrame(
        {"phase": ["full", "full", "kernel", "depth"], "part": [1, 1, 1, 2], "epoch": [0, 1, 0, 0],
         "lr": [0.1, 0.05, 0.03, 0.01], "loss": [2.0, 1.5, 1.2, 1.1],
         "val_top1_max": [30.0, 50.0, 60.0, 65.0], "val_top1_min": [20.0, 30.0, 40.0, 50.0]}
    )
    write_parquet_atomic(metrics, tmp_path / "train_metrics.parquet")
    generated = pd.DataFrame(
        {"budget": [0.2, 0.5, 1.0], "budget_metric": "params_m", "params_m": [0.19, 0.45, 0.9],
         "top1": [88.0, 92.0, 93.5], "predicted_top1": [87.0, 91.0, 93.0], "meets_budget": [True, True, True]}
    )
    write_parquet_atomic(generated, tmp_path / "generated.parquet")
    written = plots.plot_run(tmp_path)
    names = sorted(p.name for p in written)
    assert names == ["front.png", "generated.png", "hypervolume.png", "training_phases.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000
