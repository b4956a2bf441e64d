"""A small ofav2 search end to end on real actors, with supernet adaptation between iterations.

The supernet is a freshly initialised tiny one (training is tested elsewhere); the search runs
through the evaluator and latency actor pools and the archive actor, as the pipeline's stage does.
"""

from __future__ import annotations

import pandas as pd
import pytest
import torch

from pipeline.config import load_config
from pipeline.space.ofav2 import OFAv2Space

TINY_SPACE = {"stage_widths": (8, 8, 16, 16, 24), "resolutions": (16, 20)}
OVERRIDES = [
    "run.name=ofasearch", "data.dataset=synthetic", "data.synthetic_images=120", "data.synthetic_classes=4",
    "data.batch_size=16", "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20]",
    "train.calibration_images=32", "train.threads_per_worker=1",
    "evaluate.num_evaluators=1", "evaluate.evaluator_num_cpus=1", "evaluate.calibration_images=24",
    "evaluate.calibration_batch_size=8", "evaluate.eval_batch_size=32", "evaluate.candidate_timeout_s=120",
    "evaluate.profiles=[{name: local_one_thread, threads: 1, warmup: 1, repeats: 3, num_cpus: 0.5}]",
    "search.objectives=['top1:max', 'params_m:min', 'latency_ms@local_one_thread:min']",
    "search.max_evaluations=12", "search.initial_size=8", "search.candidates_per_iteration=4",
    "search.surrogates=[ridge, dtree]", "search.cv_folds=3", "search.surrogate_population=20",
    "search.surrogate_generations=3",
    "search.adaptation.enabled=true", "search.adaptation.archs_sampled=4", "search.adaptation.steps_per_epoch=2",
]


@pytest.fixture(scope="module")
def searched(ray_local, tmp_path_factory):
    from pipeline.stages import run_search_stage
    from pipeline.supernet import OFAv2Supernet
    from pipeline.supernet.checkpoint import save_supernet

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("ofasearch")
    save_supernet(run_dir / "supernet" / "supernet.pt", OFAv2Supernet(OFAv2Space(**TINY_SPACE), 4, seed=0))
    config = load_config(None, OVERRIDES)
    summary = run_search_stage(config, run_dir)
    return run_dir, summary


def test_ofav2_search_writes_the_archive_and_fronts_through_the_actors(searched):
    from pipeline.schema import read_parquet

    run_dir, summary = searched
    assert summary["evaluations"] == 12
    archive = read_parquet(run_dir / "archive.parquet")
    assert len(archive) == 12 and archive["arch_id"].is_unique and (archive["status"] == "ok").all()
    assert set(archive["source"]) == {"init", "search"} and set(archive["iteration"]) == {0, 1}
    assert ((archive["source"] == "init") == (archive["iteration"] == 0)).all()  # written once, true provenance
    assert archive["latency_ms@local_one_thread"].notna().all() and archive["top1"].between(0, 100).all()
    assert (run_dir / "fronts" / "iter_000.parquet").is_file() and (run_dir / "fronts" / "iter_001.parquet").is_file()
    front = read_parquet(run_dir / "front.parquet")
    assert len(front) >= 1 and front["is_pareto"].all()
    history = pd.read_parquet(run_dir / "search_history.parquet")
    assert list(history["iteration"]) == [0, 1] and history["hypervolume"].notna().all()
    # the search's own latency predictor, scored on held-out measured architectures, per iteration
    assert {"latency_pred_mape@local_one_thread", "latency_pred_within10@local_one_thread"} <= set(history.columns)


def test_adaptation_fine_tunes_republishes_and_re_evaluates_the_archive(searched):
    from pipeline.schema import read_parquet
    from pipeline.supernet.checkpoint import adaptation_round, load_supernet

    run_dir, _ = searched
    adapted, extra = load_supernet(run_dir / "supernet" / "supernet.pt")
    trained, trained_extra = load_supernet(run_dir / "supernet" / "trained.pt")
    assert adaptation_round(extra) == 1 and adaptation_round(trained_extra) == 0
    changed = [name for name, value in adapted.state_dict().items()
               if value.is_floating_point() and not torch.equal(value, trained.state_dict()[name])]
    assert changed, "adaptation left every weight as it was"
    archive = read_parquet(run_dir / "archive.parquet")
    # the archive members were re-evaluated under the adapted weights; rows that left it stay stale
    assert (archive["supernet_round"] == 1).any()
    assert set(archive["supernet_round"].dropna()) <= {0.0, 1.0}
