"""Evaluation-stage benchmark: evaluator scaling, latency repeatability and prediction, archive and dispatch.

    python jobs/bench_eval.py --out DIR [--quick] [--config FILE] [--set key.path=value ...]

Writes DIR/bench_eval.parquet (columns metric, value, target, detail) and prints the table:

- ``eval_scaling``: evaluations/min with 2 evaluator actors over 1 (one thread each, BN
  recalibration + validation on a freshly initialised supernet of the configured space; fresh
  architectures every run; pools warmed up before timing; 1-actor and 2-actor runs alternate and
  the ratio of the medians is reported). Target >= 1.7.
- ``latency_cv_median``: 10 architectures, each timed in 5 separate ONNX Runtime sessions (one
  thread, the ``local_one_thread`` settings), interleaved round-robin; per architecture the CV of
  its 5 medians; the median over architectures. Target <= 0.05.
- ``latency_pred_within10``: a ``LatencyPredictor`` (ridge on additive per-stage compute
  features, fitted on relative error) fitted on 120 measured architectures, scored on 40 held-out
  ones: the share predicted within +-10%. Target >= 0.90.
- ``archive_ingest_rows_per_s``: 10,000 rows upserted into the archive actor in batches of 500
  (each batch persisted to Parquet before it is acknowledged). Target >= 5,000.
- ``archive_write_s``: one atomic Parquet write of the 10,000-row archive (median of 5). Target <= 0.5.
- ``dispatch_overhead_ms``: 2,000 candidates over no-op evaluator actors on 8 simulated nodes
  (``ray.cluster_utils.Cluster``, one actor per node), results streamed to an archive actor in
  batches of 50; wall time per candidate. Target <= 5. When attached to a cluster
  (``RAY_ADDRESS`` set) the cluster's own nodes are used instead of simulated ones.

``--quick`` shrinks every measurement (for the test); its figures mean nothing.
"""

from __future__ import annotations

import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

from pipeline.atomic import write_parquet_atomic  # noqa: E402
from pipeline.config import HardwareProfile, PipelineConfig, load_config  # noqa: E402
from pipeline.runtime import job_argument_parser, prepare_ray_environment, ray_session, run_job  # noqa: E402

TARGETS = {
    "eval_scaling": (">=", 1.7),
    "latency_cv_median": ("<=", 0.05),
    "latency_pred_within10": (">=", 0.90),
    "archive_ingest_rows_per_s": (">=", 5000.0),
    "archive_write_s": ("<=", 0.5),
    "dispatch_overhead_ms": ("<=", 5.0),
}


def bench_defaults(quick: bool) -> list[str]:
    """Settings applied before the user's --set overrides."""
    common = ["data.dataset=synthetic", "evaluate.threads_per_evaluator=1", "evaluate.evaluator_num_cpus=1",
              "evaluate.profiles=[]", "evaluate.candidate_timeout_s=300"]
    if quick:
        return common + [
            "data.synthetic_images=160", "data.synthetic_classes=4",
            "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20,24]",
            "evaluate.calibration_images=32", "evaluate.calibration_batch_size=16", "evaluate.eval_batch_size=64",
        ]
    return common + [
        "data.synthetic_images=4000", "data.synthetic_classes=10",
        "supernet.stage_widths=[16,24,32,48,64]", "supernet.resolutions=[24,28,32]",
        "evaluate.calibration_images=500", "evaluate.calibration_batch_size=250", "evaluate.eval_batch_size=250",
    ]


def sizes(quick: bool) -> dict[str, int]:
    if quick:
        return {"scaling_archs": 2, "scaling_repeats": 1, "cv_archs": 3, "cv_sessions": 2, "lat_repeats": 5,
                "pred_train": 12, "pred_test": 6, "archive_rows": 1000, "nodes": 2, "candidates": 100}
    return {"scaling_archs": 12, "scaling_repeats": 3, "cv_archs": 10, "cv_sessions": 5, "lat_repeats": 100,
            "pred_train": 120, "pred_test": 40, "archive_rows": 10000, "nodes": 8, "candidates": 2000}


def make_space(config: PipelineConfig):
    from pipeline.supernet.builder import build_space

    return build_space(config.supernet)


def write_checkpoint(config: PipelineConfig, run_dir: Path) -> Path:
    """A freshly initialised supernet of the configured space (evaluation cost does not depend on training)."""
    from pipeline.data import load_splits_from_config
    from pipeline.supernet.builder import build_supernet
    from pipeline.supernet.checkpoint import save_supernet

    num_classes = load_splits_from_config(config.data, seed=config.run.seed).num_classes
    path = run_dir / "supernet" / "supernet.pt"
    path.parent.mkdir(parents=True, exist_ok=True)
    save_supernet(path, build_supernet(config.supernet, num_classes))
    return path


# ------------------------------------------------------------------------------------ measurements
def eval_scaling(config: PipelineConfig, work: Path, size: dict[str, int]) -> tuple[float, str]:
    from pipeline.evaluate.ofav2_evaluator import OFAv2ActorEvaluator

    write_checkpoint(config, work)
    space = make_space(config)
    rng = np.random.default_rng(config.run.seed)
    rates: dict[int, list[float]] = {1: [], 2: []}
    evaluators = {}
    for actors in (1, 2):
        settings = config.model_copy(deep=True)
        settings.evaluate.num_evaluators = actors
        evaluators[actors] = OFAv2ActorEvaluator(settings, work, profiles=[])
        evaluators[actors].evaluate([space.sample(rng) for _ in range(2 * actors)])  # start and warm up
    try:
        for _ in range(size["scaling_repeats"]):
            for actors in (1, 2):
                archs = [space.sample(rng) for _ in range(size["scaling_archs"])]
                start = time.perf_counter()
                results = evaluators[actors].evaluate(archs)
                elapsed = time.perf_counter() - start
                assert all(r.status == "ok" for r in results), [r.error for r in results if r.status != "ok"]
                rates[actors].append(60.0 * len(archs) / elapsed)
    finally:
        for evaluator in evaluators.values():
            evaluator.shutdown()
    one, two = statistics.median(rates[1]), statistics.median(rates[2])
    return two / one, f"1 actor {one:.1f}/min, 2 actors {two:.1f}/min"


def latency_profile(repeats: int) -> HardwareProfile:
    return HardwareProfile(name="local_one_thread", threads=1, warmup=max(3, repeats // 5), repeats=repeats)


def latency_cv(config: PipelineConfig, work: Path, size: dict[str, int]) -> tuple[float, str]:
    from pipeline.evaluate.actors import LatencyWorker

    space = make_space(config)
    profile = latency_profile(size["lat_repeats"])
    worker = LatencyWorker(space.options(), 10, profile.model_dump(mode="json"), str(work / "onnx_cache"))
    rng = np.random.default_rng(config.run.seed + 1)
    archs = [space.sample(rng) for _ in range(size["cv_archs"])]
    medians = np.zeros((len(archs), size["cv_sessions"]))
    for session in range(size["cv_sessions"]):  # round-robin, so slow drift spreads over every arch
        for index, arch in enumerate(archs):
            medians[index, session] = worker.run(arch)["metrics"]["latency_ms@local_one_thread"]
    cvs = medians.std(axis=1) / medians.mean(axis=1)
    return float(np.median(cvs)), (f"{len(archs)} archs x {size['cv_sessions']} sessions, median latency "
                                   f"{np.median(medians):.2f} ms, worst CV {cvs.max():.3f}")


def latency_prediction(config: PipelineConfig, work: Path, size: dict[str, int]) -> tuple[float, str]:
    from pipeline.evaluate.actors import LatencyWorker
    from pipeline.evaluate.predictor import LatencyPredictor

    space = make_space(config)
    profile = latency_profile(size["lat_repeats"])
    worker = LatencyWorker(space.options(), 10, profile.model_dump(mode="json"), str(work / "onnx_cache"))
    rng = np.random.default_rng(config.run.seed + 2)
    archs = [space.sample(rng) for _ in range(size["pred_train"] + size["pred_test"])]
    latencies = [worker.run(arch)["metrics"]["latency_ms@local_one_thread"] for arch in archs]
    cut = size["pred_train"]
    predictor = LatencyPredictor.fit(space, archs[:cut], latencies[:cut])
    share = predictor.within_fraction(archs[cut:], latencies[cut:], 0.10)
    errors = predictor.relative_errors(archs[cut:], latencies[cut:])
    return share, (f"fit on {cut}, held out {len(archs) - cut}; median error {100 * np.median(errors):.1f}%, "
                   f"p90 {100 * np.percentile(errors, 90):.1f}%")


def archive_rows(count: int, space, rng: np.random.Generator) -> list[dict]:
    from pipeline.space.base import arch_id

    rows = []
    for index in range(count):
        arch = space.sample(rng)
        rows.append({
            "arch_id": f"{arch_id(arch)}{index:06d}", "arch": space.to_text(arch), "iteration": index // 100,
            "source": "search", "top1": float(rng.uniform(50, 90)), "params_m": float(rng.uniform(0.1, 3)),
            "macs_m": float(rng.uniform(5, 300)), "latency_ms@local_one_thread": float(rng.uniform(0.5, 5)),
            "predicted_top1": None, "status": "ok", "error": "",
        })
    return rows


def archive_ingest(config: PipelineConfig, work: Path, size: dict[str, int]) -> tuple[tuple[float, str], tuple[float, str]]:
    import ray

    from pipeline.evaluate.interface import Objective
    from pipeline.search.archive import start_archive
    from pipeline.search.archive_store import ArchiveStore

    objectives = [Objective("top1", "max"), Objective("latency_ms@local_one_thread", "min")]
    rows = archive_rows(size["archive_rows"], make_space(config), np.random.default_rng(0))
    archive = start_archive(work / "ingest", "bench", "ofav2", objectives, name="bench-archive-ingest")
    start = time.perf_counter()
    ray.get([archive.upsert.remote(rows[i:i + 500]) for i in range(0, len(rows), 500)])
    elapsed = time.perf_counter() - start
    assert ray.get(archive.size.remote()) == len(rows)
    ray.kill(archive, no_restart=True)
    store = ArchiveStore(work / "ingest", "bench", "ofav2", objectives)
    frame = store.frame()
    writes = []
    for _ in range(5):
        start = time.perf_counter()
        write_parquet_atomic(frame, work / "write" / "archive.parquet", store.metadata())
        writes.append(time.perf_counter() - start)
    return ((len(rows) / elapsed, f"{len(rows)} rows in {elapsed:.2f} s, batches of 500"),
            (statistics.median(writes), f"{len(frame)} rows, {frame.shape[1]} columns"))


def dispatch_overhead(config: PipelineConfig, work: Path, size: dict[str, int]) -> tuple[float, str]:
    """No-op candidates over one actor per node; rows streamed to an archive actor."""
    import ray

    from pipeline.evaluate.actors import NoOpWorker
    from pipeline.evaluate.dispatch import Dispatcher, WorkerPool, WorkItem
    from pipeline.evaluate.interface import Objective
    from pipeline.search.archive import start_archive

    cluster = None
    nodes = size["nodes"]
    if not os.environ.get("RAY_ADDRESS"):
        from ray.cluster_utils import Cluster

        cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 1, "resources": {"bench_node_0": 1}, "include_dashboard": False})
        for index in range(1, nodes):
            cluster.add_node(num_cpus=1, resources={f"bench_node_{index}": 1})
        ray.init(address=cluster.address, namespace=config.ray.namespace)
    try:
        archive = start_archive(work / "dispatch", "bench", "ofav2", [Objective("top1", "max")],
                                name="bench-archive-dispatch")
        remote = ray.remote(NoOpWorker)
        if cluster is not None:
            factories = [lambda i=i: remote.options(num_cpus=0, resources={f"bench_node_{i}": 0.01}).remote()
                         for i in range(nodes)]
        else:
            factories = [lambda: remote.options(num_cpus=0, scheduling_strategy="SPREAD").remote()] * nodes
        pools = [WorkerPool(f"node{i}", factory, 1) for i, factory in enumerate(factories)]
        for pool in pools:
            ray.get(pool.actors[0].ping.remote())
        dispatcher = Dispatcher(pools)
        items = [WorkItem(f"c{i:05d}", f"node{i % nodes}", {"arch_id": f"c{i:05d}", "top1": 0.0})
                 for i in range(size["candidates"])]
        acks, buffer = [], []

        def stream(outcomes) -> None:
            buffer.extend(o.value for o in outcomes)
            while len(buffer) >= 50:
                acks.append(archive.upsert.remote(buffer[:50]))
                del buffer[:50]

        start = time.perf_counter()
        outcomes = dispatcher.run(items, on_outcomes=stream)
        if buffer:
            acks.append(archive.upsert.remote(list(buffer)))
        ray.get(acks)
        elapsed = time.perf_counter() - start
        assert all(o.status == "ok" for o in outcomes.values())
        assert ray.get(archive.size.remote()) == len(items)
        node_ids = {ray.get(pool.actors[0].ping.remote()) for pool in pools}
        dispatcher.shutdown()
        ray.kill(archive, no_restart=True)
    finally:
        if cluster is not None:
            ray.shutdown()
            cluster.shutdown()
    return 1000.0 * elapsed / len(items), f"{len(items)} candidates, {len(node_ids)} nodes, {elapsed:.2f} s"


# ------------------------------------------------------------------------------------ job
def main() -> int:
    parser = job_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="tiny settings (for the test)")
    args = parser.parse_args()
    out = Path(args.out or "runs/bench_eval").resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(args.config, bench_defaults(args.quick) + args.overrides)
    size = sizes(args.quick)
    prepare_ray_environment()
    results: dict[str, tuple[float, str]] = {}
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        # 3 logical CPUs: the 1-actor and the 2-actor pools stay alive side by side (one idles
        # while the other is timed), each actor reserving one CPU and running one thread.
        with ray_session(config.ray, num_cpus=max(3, config.ray.num_cpus or 3)):
            results["eval_scaling"] = eval_scaling(config, work / "scaling", size)
            results["archive_ingest_rows_per_s"], results["archive_write_s"] = archive_ingest(config, work, size)
        results["latency_cv_median"] = latency_cv(config, work, size)
        results["latency_pred_within10"] = latency_prediction(config, work, size)
        results["dispatch_overhead_ms"] = dispatch_overhead(config, work, size)
    rows = []
    for metric, (op, target) in TARGETS.items():
        value, detail = results[metric]
        met = value >= target if op == ">=" else value <= target
        rows.append({"metric": metric, "value": float(value), "target": float(target), "direction": op,
                     "met": bool(met), "detail": detail})
    table = pd.DataFrame(rows)
    table["load_avg_1m"] = load
    target_file = out / "bench_eval.parquet"
    write_parquet_atomic(table, target_file)
    print(f"evaluation benchmark ({'quick' if args.quick else 'full'}; load average at start {load:.2f}):")
    for row in rows:
        print(f"  {row['metric']:<26} {row['value']:>10.3f}  target {row['direction']} {row['target']:<8g} "
              f"{'ok  ' if row['met'] else 'MISS'}  {row['detail']}")
    print(f"wrote {target_file}")
    return 0


if __name__ == "__main__":
    run_job(main)
