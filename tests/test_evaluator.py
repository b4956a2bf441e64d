"""Evaluator actors, latency actors and dispatch together, on a tiny supernet and synthetic data."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest
import torch

from pipeline.config import load_config
from pipeline.errors import ArchitectureError, ProfileError
from pipeline.evaluate.interface import Objective, Provenance
from pipeline.evaluate.recording import DEFAULT_PROVENANCE, evaluate_into
from pipeline.space.ofav2 import OFAv2Space

TINY = {"stage_widths": (8, 8, 16, 16, 24), "resolutions": (16, 20, 24)}
OVERRIDES = [
    "run.name=evaltest", "data.dataset=synthetic", "data.synthetic_images=120", "data.synthetic_classes=4",
    "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20,24]",
    "evaluate.num_evaluators=2", "evaluate.evaluator_num_cpus=0.5", "evaluate.calibration_images=24",
    "evaluate.calibration_batch_size=8", "evaluate.eval_batch_size=16", "evaluate.archive_batch_size=2",
    "evaluate.candidate_timeout_s=120",
    "evaluate.profiles=[{name: local_one_thread, threads: 1, warmup: 1, repeats: 3, num_cpus: 0.25}]",
]
OBJECTIVES = [Objective("top1", "max"), Objective("latency_ms@local_one_thread", "min")]


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    """A run directory with a freshly initialised tiny supernet published as supernet/supernet.pt."""
    from pipeline.supernet import OFAv2Supernet
    from pipeline.supernet.checkpoint import save_supernet

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("evalrun")
    (run_dir / "supernet").mkdir()
    save_supernet(run_dir / "supernet" / "supernet.pt", OFAv2Supernet(OFAv2Space(**TINY), 4))
    return run_dir


@pytest.fixture(scope="module")
def config():
    return load_config(None, OVERRIDES)


def _archs(count: int, seed: int) -> list[dict]:
    rng = np.random.default_rng(seed)
    return [OFAv2Space(**TINY).sample(rng) for _ in range(count)]


def test_worker_accuracy_equals_direct_computation_after_bn_recalibration(run_dir, config):
    from pipeline.evaluate.actors import AccuracyWorker
    from pipeline.supernet.bn import recalibrate_bn
    from pipeline.supernet.checkpoint import load_supernet
    from pipeline.supernet.costs import count_costs

    worker = AccuracyWorker(str(run_dir / "supernet" / "supernet.pt"), config.data.model_dump(), 0,
                            config.evaluate.model_dump())
    arch = _archs(1, 3)[0] | {"exit": 4}
    metrics = worker.run(arch)["metrics"]
    assert set(metrics) >= {"top1", "top1@exit1", "top1@exit4", "params_m", "macs_m"}
    assert metrics["top1"] == metrics["top1@exit4"]
    # Direct computation: a fresh copy of the checkpoint, recalibrated on the same subset, then extracted.
    net, _ = load_supernet(run_dir / "supernet" / "supernet.pt")
    scorer = worker.scorer
    resolution = arch["resolution"]
    stale = net.extract(arch, all_exits=True).eval()
    recalibrate_bn(net, scorer.calibration_batches(resolution), arch=arch)
    subnet = net.extract(arch, all_exits=True).eval()
    _, val = scorer.inputs(resolution)
    with torch.inference_mode():
        exits = subnet(val)
        stale_exits = stale(val)
    direct = [100.0 * float((logits.argmax(1) == scorer.val_labels).double().mean()) for logits in exits]
    assert [metrics[f"top1@exit{i + 1}"] for i in range(4)] == pytest.approx(direct)
    assert not torch.allclose(exits[-1], stale_exits[-1])  # recalibration changed the statistics used
    costs = count_costs(net.extract(arch), resolution)
    assert metrics["params_m"] == pytest.approx(costs["params_m"]) and metrics["macs_m"] == pytest.approx(costs["macs_m"])


def test_worker_reloads_a_newer_checkpoint_between_batches(run_dir, config, tmp_path):
    import os
    import shutil

    from pipeline.evaluate.actors import AccuracyWorker

    path = tmp_path / "supernet.pt"
    shutil.copy(run_dir / "supernet" / "supernet.pt", path)
    worker = AccuracyWorker(str(path), config.data.model_dump(), 0, config.evaluate.model_dump())
    assert worker.loads == 1 and not worker.reload_if_newer()
    stat = path.stat()
    os.utime(path, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))
    assert worker.run(_archs(1, 4)[0])["checkpoint_loads"] == 2


@pytest.fixture(scope="module")
def pools(ray_local, run_dir, config, tmp_path_factory):
    """One archive actor and one evaluator (2 evaluator actors, 1 latency actor) shared by the tests below."""
    from pipeline.evaluate.ofav2_evaluator import OFAv2ActorEvaluator
    from pipeline.search.archive import start_archive

    settings = config.model_copy(deep=True)
    settings.evaluate.onnx_cache = str(tmp_path_factory.mktemp("onnx"))
    archive = start_archive(run_dir, "evaltest", "ofav2", OBJECTIVES, name="archive-evaltest")
    evaluator = OFAv2ActorEvaluator(settings, run_dir, archive=archive)
    yield archive, evaluator
    evaluator.shutdown()
    ray_local.kill(archive, no_restart=True)


def _into_archive(evaluator, archive, archs, provenance=DEFAULT_PROVENANCE):
    """Evaluate ``archs`` and persist what was measured into the archive actor, as the search does."""
    from pipeline.search.archive import ArchiveActorSink

    return evaluate_into(evaluator, ArchiveActorSink(archive), archs, provenance, run_id="evaltest",
                         batch_size=evaluator.settings.archive_batch_size)


def test_evaluate_streams_rows_once_and_reuses_measurements(ray_local, pools, run_dir):
    from pipeline.schema import read_parquet

    ray = ray_local
    archive, evaluator = pools
    before = ray.get(archive.size.remote())
    archs = _archs(4, 5)
    results = _into_archive(evaluator, archive, archs + archs[:1], Provenance(iteration=1, source="init"))
    assert [r.status for r in results] == ["ok"] * 5, [r.error for r in results]
    assert results[0].metrics == results[4].metrics and evaluator.evaluations == 4
    for name in ("top1", "params_m", "macs_m", "latency_ms@local_one_thread",
                 "latency_p90_ms@local_one_thread", "latency_cv@local_one_thread"):
        assert name in results[0].metrics
    assert results[0].metrics == {**results[0].metrics, **evaluator.cheap_metrics(archs[0])}
    frame = read_parquet(run_dir / "archive.parquet").set_index("arch_id")
    ids = [r.arch_id for r in results[:4]]
    assert set(ids) <= set(frame.index) and len(frame) == before + 4
    assert set(frame.loc[ids, "source"]) == {"init"} and frame["is_pareto"].any()
    again = evaluator.evaluate(archs[:2])
    assert evaluator.evaluations == 4  # measured once per (arch_id, profile): nothing re-run
    assert again[0].metrics["top1"] == results[0].metrics["top1"]
    assert ray.get(archive.size.remote()) == before + 4


def test_killed_evaluator_actor_loses_no_candidate(ray_local, pools):
    ray = ray_local
    archive, evaluator = pools
    stats = evaluator.dispatcher.stats
    before = set(ray.get(archive.arch_ids.remote()))
    completed, replaced = stats.completed, stats.actors_replaced
    victim = evaluator.pools["accuracy"].actors[0]

    def kill_mid_batch() -> None:
        deadline = time.monotonic() + 120
        while stats.completed <= completed and time.monotonic() < deadline:
            time.sleep(0.02)
        ray.kill(victim, no_restart=True)

    killer = threading.Thread(target=kill_mid_batch)
    killer.start()
    results = _into_archive(evaluator, archive, _archs(6, 6))
    killer.join()
    assert all(r.status == "ok" for r in results), [r.error for r in results]
    assert stats.actors_replaced > replaced and stats.resubmitted >= 1
    frame = ray.get(archive.frame.remote())
    assert frame["arch_id"].is_unique
    assert set(frame["arch_id"]) - before == {r.arch_id for r in results}


def test_failing_candidate_becomes_failed_row_and_run_goes_on(ray_local, pools):
    from pipeline.space.base import arch_id

    ray = ray_local
    archive, evaluator = pools
    broken = _archs(3, 7)
    # A directory where the broken candidate's ONNX file should go: its export throws on os.replace.
    (evaluator.cache_dir / f"{arch_id(broken[1])}_r{broken[1]['resolution']}_b1.onnx").mkdir(parents=True)
    results = _into_archive(evaluator, archive, broken)
    with pytest.raises(ArchitectureError, match="resolution"):
        evaluator.evaluate([broken[0] | {"resolution": 99}])
    assert [r.status for r in results] == ["ok", "failed", "ok"]
    assert "local_one_thread" in results[1].error and "Error" in results[1].error
    frame = ray.get(archive.frame.remote()).set_index("arch_id")
    assert frame.loc[results[1].arch_id, "status"] == "failed"
    assert frame.loc[results[1].arch_id, "error"] == results[1].error
    assert frame.loc[results[0].arch_id, "status"] == "ok"


def test_unknown_profile_is_a_clear_error_before_any_actor_starts(run_dir, config):
    from pipeline.evaluate.ofav2_evaluator import OFAv2ActorEvaluator

    with pytest.raises(ProfileError, match="unknown hardware profile 'tpu'"):
        OFAv2ActorEvaluator(config, run_dir, profiles=["tpu"])


def test_latency_predictor_fits_on_the_archive_after_a_restart(ray_local, pools):
    """A resumed search starts a new evaluator that has measured nothing: the latency predictor then
    fits on the latencies the archive already holds."""
    archive, evaluator = pools
    _into_archive(evaluator, archive, _archs(4, 21))
    frame = ray_local.get(archive.frame.remote())
    archived = frame["latency_ms@local_one_thread"].notna().sum()
    assert archived >= 4
    memory = dict(evaluator._latency)  # noqa: SLF001 - simulate a fresh process
    evaluator._latency.clear()  # noqa: SLF001
    try:
        predictor = evaluator.latency_predictor("local_one_thread")
        archs = _archs(3, 22)
        predicted = predictor.predict(archs, [evaluator.cheap_metrics(a) for a in archs])
        assert np.isfinite(predicted).all() and (np.asarray(predicted) > 0).all()
    finally:
        evaluator._latency.update(memory)  # noqa: SLF001
