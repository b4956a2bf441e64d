"""The pipeline's generate stage on real actors, and a budget vector over two latency profiles plus params.

The run is a freshly initialised tiny supernet whose archive holds architectures truly measured by
the evaluator and both latency profiles' actors (as a search would leave it). The stage fits the
generator on that archive, saves RUN_DIR/generator/, answers the configured budget vectors and
measures the answers on the same actors.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from pipeline.config import load_config
from pipeline.space.ofav2 import OFAv2Space

TINY_SPACE = {"stage_widths": (8, 8, 16, 16, 24), "resolutions": (16, 20)}
PROFILES = ("local_all_threads", "local_one_thread")
METRICS = ["params_m", *(f"latency_ms@{p}" for p in PROFILES)]
OVERRIDES = [
    "run.name=genstage", "data.dataset=synthetic", "data.synthetic_images=120", "data.synthetic_classes=4",
    "data.batch_size=16", "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20]",
    "evaluate.num_evaluators=1", "evaluate.evaluator_num_cpus=1", "evaluate.calibration_images=24",
    "evaluate.calibration_batch_size=8", "evaluate.eval_batch_size=32", "evaluate.candidate_timeout_s=120",
    "evaluate.profiles=[{name: local_all_threads, warmup: 1, repeats: 3, num_cpus: 0.5}, "
    "{name: local_one_thread, threads: 1, warmup: 1, repeats: 3, num_cpus: 0.5}]",
    f"generate.budget_metrics=[{','.join(METRICS)}]",
    "generate.training_steps=20", "generate.evaluator_steps=60", "generate.samples_per_budget=24",
    "generate.pool_size=100", "generate.batch_size=32",
]


@pytest.fixture(scope="module")
def run(ray_local, tmp_path_factory):
    from pipeline.evaluate.interface import Objective
    from pipeline.evaluate.ofav2_evaluator import OFAv2ActorEvaluator
    from pipeline.schema import result_row
    from pipeline.search.archive_store import ArchiveStore
    from pipeline.supernet import OFAv2Supernet
    from pipeline.supernet.checkpoint import save_supernet

    torch.set_num_threads(1)
    run_dir = tmp_path_factory.mktemp("genstage")
    space = OFAv2Space(**TINY_SPACE)
    save_supernet(run_dir / "supernet" / "supernet.pt", OFAv2Supernet(space, 4, seed=0))
    config = load_config(None, OVERRIDES)
    rng = np.random.default_rng(0)
    archs = [space.smallest(), space.largest()] + [space.sample_initial(rng) for _ in range(10)]
    with OFAv2ActorEvaluator(config, run_dir) as evaluator:
        results = evaluator.evaluate(archs)
    store = ArchiveStore(run_dir, "genstage", "ofav2", [Objective("top1", "max"), Objective("params_m", "min")],
                         config=config.model_dump(mode="json"))
    store.upsert([result_row(r, run_id="genstage", space="ofav2", arch_text=space.to_text(r.arch), iteration=0,
                             source="init") for r in results])
    archive = store.frame()
    assert (archive["status"] == "ok").all()
    # two budget vectors inside the measured range: (params, latency on each profile)
    budgets = [[float(archive[m].quantile(q)) for m in METRICS] for q in (0.6, 1.0)]
    config = load_config(None, OVERRIDES + [f"generate.budgets={budgets}"])
    from pipeline.stages import run_generate_stage

    summary = run_generate_stage(config, run_dir)
    return run_dir, config, summary, budgets


def test_generated_parquet_has_measured_accuracy_and_latency_for_every_row(run):
    from pipeline.schema import read_parquet

    run_dir, _, summary, budgets = run
    frame = read_parquet(run_dir / "generated.parquet")
    assert len(frame) == len(budgets) == summary["budgets"]
    assert frame["top1"].notna().all() and frame["predicted_top1"].notna().all() and frame["measured"].all()
    assert (frame["mode"] == "generate").all() and (frame["evaluations"] == 0).all()
    for metric in METRICS:
        assert frame[metric].notna().all() and frame[f"predicted_{metric}"].notna().all()
    # meets_budget is decided on the measured costs of every metric of the budget vector
    measured_ok = np.all([frame[m] <= frame[f"budget@{m}"] for m in METRICS], axis=0)
    assert frame["meets_budget"].tolist() == measured_ok.tolist()
    assert summary["met"] == int(measured_ok.sum())


def test_the_stage_saves_a_generator_that_answers_later_without_the_evaluator(run, capsys):
    from pipeline.generate.store import load_generator, read_manifest

    run_dir, _, _, budgets = run
    manifest = read_manifest(run_dir / "generator")
    assert manifest["budget_metrics"] == METRICS and manifest["space"]["name"] == "ofav2"
    assert manifest["fit"]["evaluations"] == 0 and manifest["fit"]["known"] == 12
    generator = load_generator(run_dir / "generator")  # no evaluator, no supernet: predicted costs only
    frame = generator.generate(np.array(budgets), seed=0)
    assert len(frame) == 2 and (frame["evaluations"] == 0).all()
    assert all(f"predicted_{m}" in frame for m in METRICS)


def test_the_generated_plot_shows_measured_against_predicted(run):
    from pipeline.plots import plot_generated

    run_dir, _, _, _ = run
    path = plot_generated(run_dir)
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
