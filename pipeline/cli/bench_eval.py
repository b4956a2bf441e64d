"""Evaluation-stage benchmark: evaluator scaling, latency repeatability and prediction, archive and dispatch.

    python jobs/bench_eval.py --out DIR [--quick] [--config FILE] [--set key.path=value ...]

Writes DIR/bench_eval.parquet (columns metric, value, target, direction, met, detail,
latency_median_ms, load_avg_1m, date) and prints the table. Rows whose direction is ``info``
have no target: they say where the time goes or how a figure depends on size.

- ``eval_scaling``: evaluations/min with 2 evaluator actors over 1 (one thread each, BN
  recalibration + validation on a freshly initialised supernet of the demo's space; 24 fresh
  architectures a round, the same for both pools; pools warmed up by an uncounted round); the
  median over 6 rounds of each round's ratio, the pool that goes first alternating, with the
  spread and the load average (``pipeline.bench.scaling``). Target >= 1.7.
  ``profile_*_s``: one evaluation's pieces timed in process, and the rest of a 1-actor round's
  time per architecture (Ray and the driver).
- ``latency_cv_median``: OFA's stage widths (24, 40, 80, 112, 160) at 64 and 128 px; 10
  architectures, each timed in 5 fresh ONNX Runtime sessions interleaved round-robin (one thread,
  spinning off, timed until the median's relative standard error is < 1 %, at most 400 runs); per
  architecture the CV of its 5 medians; the median over architectures. Target <= 0.02. The
  headline rows are timed by wall time with a speed reference (``speed_reference: true``: one
  fixed architecture is timed after every block of runs and the figure is scaled by how much
  slower the machine ran than when the reference was first timed, which cancels the seconds-long
  slow spells of a shared machine); the ``*_no_reference`` rows are plain wall time, the hardware
  profiles' default; the ``*_thread_cpu`` rows use the inference thread's CPU time
  (``timer: thread_cpu``), which leaves out other processes' turns but is coarser on a virtual
  machine. The latency rows run first, before Ray's daemons start.
- ``latency_pred_within10``: the search's latency predictor (``LatencyPredictor`` with the cheap
  features the search gives it), 5-fold held out over 100 measured architectures of the same
  space (``predictor.held_out_error``, as ``MeasuredLatencyPredictor.held_out_error``): the share
  within +-10 %. Target >= 0.90. ``latency_pred_mape``: the mean relative error;
  ``latency_pred_within10_demo``: the same at the demo's widths and resolutions.
- ``archive_ingest_rows_per_s@N``: 20 batches of 500 rows upserted one by one into the archive
  actor already holding N rows (10k, 100k, 1M), each persisted before it is acknowledged; a
  batch's rows over the median batch's time (the detail gives all rows over all batches' time).
  Target >= 5,000. ``archive_rewrite_s@N``: one full rewrite (compaction) at that size.
- ``dispatch_overhead_ms``: 2,000 candidates over no-op evaluator actors on 8 simulated nodes,
  results streamed to an archive actor in batches of 50; wall time per candidate, the median of 5
  passes after an uncounted one. Target <= 5.
- ``cluster_scaling@4nodes``: 4 scaling rounds again on a simulated 4-node cluster, one
  evaluator per node (``evaluate.evaluator_placement: spread``) against one evaluator;
  ``cluster_rate_per_node``: that ratio over the nodes. The simulated nodes share this
  machine's cores, so the figure shows the ceiling the cores set, not a real cluster's.

``--quick`` shrinks every measurement (for the test); its figures mean nothing.
"""

from __future__ import annotations

import datetime
import os
import tempfile
import time
from pathlib import Path

import pandas as pd

from pipeline.atomic import write_parquet_atomic
from pipeline.config import PipelineConfig, load_config
from pipeline.errors import ConfigError
from pipeline.runtime import job_argument_parser, prepare_ray_environment, ray_session

OFA_WIDTHS, OFA_RESOLUTIONS = [24, 40, 80, 112, 160], [64, 128]
TARGETS = {
    "eval_scaling": (">=", 1.7),
    "latency_cv_median": ("<=", 0.02),
    "latency_pred_within10": (">=", 0.90),
    "archive_ingest_rows_per_s": (">=", 5000.0),
    "dispatch_overhead_ms": ("<=", 5.0),
}


PARTS = ("latency", "scaling", "archive", "dispatch", "cluster")
#: latency timings measured: (timer, speed reference, metric suffix); the first is the headline
LATENCY_VARIANTS = (("wall", True, ""), ("wall", False, "_no_reference"), ("thread_cpu", False, "_thread_cpu"))


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


def sizes(quick: bool) -> dict:
    if quick:
        return {"rounds": 2, "round_archs": 2, "cv_archs": 3, "cv_sessions": 2,
                "repeats": 5, "max_repeats": 20, "pred_archs": 6, "widths": None, "resolutions": None,
                "archive_rows": [1000], "batches": 2, "batch_rows": 100,
                "nodes": 2, "candidates": 100, "cluster_nodes": 2, "cluster_rounds": 2}
    return {"rounds": 6, "round_archs": 24, "cv_archs": 10, "cv_sessions": 5,
            "repeats": 30, "max_repeats": 400, "pred_archs": 100, "widths": OFA_WIDTHS,
            "resolutions": OFA_RESOLUTIONS, "archive_rows": [10_000, 100_000, 1_000_000], "batches": 20,
            "batch_rows": 500, "nodes": 8, "candidates": 2000, "cluster_nodes": 4, "cluster_rounds": 4}


def _space(config: PipelineConfig, widths=None, resolutions=None):
    from pipeline.supernet.builder import build_space

    update = {k: v for k, v in (("stage_widths", widths), ("resolutions", resolutions)) if v is not None}
    return build_space(config.supernet.model_copy(update=update))


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


def row(metric: str, value: float, detail: str, latency_ms: float = float("nan")) -> dict:
    op, target = TARGETS.get(metric.split("@")[0], ("info", float("nan")))
    met = True if op == "info" else (value >= target if op == ">=" else value <= target)
    return {"metric": metric, "value": float(value), "target": float(target), "direction": op, "met": bool(met),
            "detail": detail, "latency_median_ms": float(latency_ms)}


def scaling_rows(config: PipelineConfig, work: Path, size: dict) -> list[dict]:
    from pipeline.bench.scaling import RoundProfiler, eval_scaling

    checkpoint = write_checkpoint(config, work)
    space = _space(config)
    profiler = RoundProfiler(config, checkpoint, config.run.seed + 7)
    figures = eval_scaling(config, work, space, size["rounds"], size["round_archs"], profiler)
    rows = [row("eval_scaling", figures.ratio, figures.detail())]
    for name, value in figures.profile().items():
        what = {"round_s_per_arch": "1-actor round wall time per architecture",
                "ray_and_driver_s": "1-actor round time per architecture not spent computing"}.get(
                    name, "per architecture, in process after each 1-actor round, one thread")
        rows.append(row(f"profile_{name}", value, f"{what} (median of {len(figures.pieces)} rounds)"))
    return rows


def cluster_rows(config: PipelineConfig, work: Path, size: dict) -> list[dict]:
    """1 evaluator against one per node on a simulated cluster (on this machine the nodes share its cores)."""
    from pipeline.bench.dispatch import simulated_cluster
    from pipeline.bench.scaling import eval_scaling

    nodes = size["cluster_nodes"]
    settings = config.model_copy(deep=True)
    settings.evaluate.evaluator_placement = "spread"
    write_checkpoint(settings, work)
    # two logical CPUs per node: the idle 1-actor pool and the timed pool live side by side
    with simulated_cluster(nodes, config.ray.namespace, cpus_per_node=2):
        figures = eval_scaling(settings, work, _space(settings), size["cluster_rounds"], size["round_archs"],
                               many=nodes)
    cores = os.cpu_count() or 1
    return [row(f"cluster_scaling@{nodes}nodes", figures.ratio, f"{figures.detail()}; {cores} physical cores shared"),
            row(f"cluster_rate_per_node@{nodes}nodes", figures.ratio / nodes,
                f"{nodes}-actor / 1-actor rate divided by the {figures.nodes} nodes used")]


def archive_rows(work: Path, size: dict) -> list[dict]:
    from pipeline.bench.archive import archive_at_scale

    rows = []
    for count in size["archive_rows"]:
        figures = archive_at_scale(work / f"archive_{count}", count, size["batches"], size["batch_rows"])
        label = f"{count // 1000}k" if count < 1_000_000 else f"{count // 1_000_000}M"
        detail = (f"median of {size['batches']} batches of {size['batch_rows']} into {count} rows "
                  f"({figures.overall_rows_per_s:,.0f} rows/s over all batches); actor load {figures.load_s:.2f} s")
        rows.append(row(f"archive_ingest_rows_per_s@{label}", figures.ingest_rows_per_s, detail))
        rows.append(row(f"archive_rewrite_s@{label}", figures.rewrite_s, "one compaction: ranks + atomic rewrite"))
    return rows


def latency_rows(config: PipelineConfig, work: Path, size: dict) -> list[dict]:
    from pipeline.bench.latency import (
        bench_profile,
        latency_prediction,
        latency_repeatability,
        latency_worker,
        sample_archs,
    )

    space = _space(config, size["widths"], size["resolutions"])
    cv_archs = sample_archs(space, size["cv_archs"], config.run.seed + 1)
    pred_archs = sample_archs(space, size["pred_archs"], config.run.seed + 2)
    where = f"widths {tuple(space.stage_widths)} at {tuple(space.resolutions)} px"
    rows = []
    for timer, reference, suffix in LATENCY_VARIANTS:
        profile = bench_profile(size["repeats"], size["max_repeats"], timer, speed_reference=reference)
        worker = latency_worker(space, profile, work / "onnx_cache")
        how = f"{timer} timer{', speed reference' if reference else ''}"
        cv = latency_repeatability(worker, cv_archs, size["cv_sessions"])
        within, mape = latency_prediction(worker, pred_archs)
        rows += [row(f"latency_cv_median{suffix}", cv.value, f"{how}; {where}; {cv.detail}", cv.median_latency_ms),
                 row(f"latency_pred_within10{suffix}", within.value, f"{how}; {where}; {within.detail}",
                     within.median_latency_ms),
                 row(f"latency_pred_mape{suffix}", mape, f"{how}; mean held-out relative error",
                     within.median_latency_ms)]
        if not suffix:
            headline, headline_how = within, how  # the headline profile's predictor figure
    demo_space = _space(config)
    within = headline
    if demo_space != space:  # --quick measures the demo's space only
        timer, reference, _ = LATENCY_VARIANTS[0]
        demo = latency_worker(demo_space, bench_profile(size["repeats"], size["max_repeats"], timer,
                                                        speed_reference=reference), work / "onnx_cache_demo")
        within, _ = latency_prediction(demo, sample_archs(demo_space, size["pred_archs"], config.run.seed + 3))
    where = f"widths {tuple(demo_space.stage_widths)} at {tuple(demo_space.resolutions)} px"
    rows.append(row("latency_pred_within10_demo", within.value, f"{headline_how}; {where}; {within.detail}",
                    within.median_latency_ms))
    return rows


def main() -> int:
    from pipeline.bench.dispatch import dispatch_overhead

    parser = job_argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings (for the test)")
    parser.add_argument("--parts", default=",".join(PARTS),
                        help=f"comma-separated parts to run, of {', '.join(PARTS)} (default: all)")
    args = parser.parse_args()
    parts = [part.strip() for part in args.parts.split(",") if part.strip()]
    unknown = sorted(set(parts) - set(PARTS))
    if unknown or not parts:
        raise ConfigError(f"--parts: unknown part(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(PARTS)}")
    out = Path(args.out or "runs/bench_eval").resolve()
    out.mkdir(parents=True, exist_ok=True)
    config = load_config(args.config, bench_defaults(args.quick) + args.overrides)
    size = sizes(args.quick)
    prepare_ray_environment()
    load = [os.getloadavg()[0]]
    with tempfile.TemporaryDirectory(dir=out) as tmp:
        work = Path(tmp)
        # 3 logical CPUs: the 1-actor and the 2-actor pools stay alive side by side (one idles
        # while the other is timed), each actor reserving one CPU and running one thread.
        clock = time.perf_counter()

        def done(part: str) -> None:
            nonlocal clock
            print(f"  ({part}: {time.perf_counter() - clock:.0f} s)", flush=True)
            clock = time.perf_counter()

        # latency first, before Ray's daemons start: one-thread timings want the quietest machine
        rows = []
        if "latency" in parts:
            rows += latency_rows(config, work, size)
            done("latency")
        if {"scaling", "archive"} & set(parts):
            with ray_session(config.ray, num_cpus=max(3, config.ray.num_cpus or 3)):
                done("ray start")
                if "scaling" in parts:
                    rows += scaling_rows(config, work / "scaling", size)
                    done("scaling")
                if "archive" in parts:
                    rows += archive_rows(work, size)
                    done("archive")
        load.append(os.getloadavg()[0])
        if "dispatch" in parts:
            overhead, detail = dispatch_overhead(work, size["nodes"], size["candidates"], config.ray.namespace)
            rows.append(row("dispatch_overhead_ms", overhead, detail))
            done("dispatch")
        if "cluster" in parts:
            rows += cluster_rows(config, work / "cluster", size)
            done("simulated cluster")
        load.append(os.getloadavg()[0])
    table = pd.DataFrame(rows).assign(load_avg_1m=max(load), date=datetime.date.today().isoformat())
    target_file = out / "bench_eval.parquet"
    write_parquet_atomic(table, target_file)
    print(f"evaluation benchmark ({'quick' if args.quick else 'full'}; 1-min load average "
          f"{', '.join(f'{value:.2f}' for value in load)} at start, mid and end):")
    for item in rows:
        verdict = "    " if item["direction"] == "info" else ("ok  " if item["met"] else "MISS")
        target = "" if item["direction"] == "info" else f"{item['direction']} {item['target']:g}"
        latency = "" if item["latency_median_ms"] != item["latency_median_ms"] else \
            f"[latency_median_ms {item['latency_median_ms']:.2f}] "
        print(f"  {item['metric']:<32} {item['value']:>10.3f}  {target:<10} {verdict} {latency}{item['detail']}")
    print(f"wrote {target_file}")
    return 0
