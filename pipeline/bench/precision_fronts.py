"""Does searching on INT8 latency find other architectures than searching on fp32 latency?

``compare_precision_fronts`` runs the NATv2 search of one trained supernet twice in one Ray
session, with the pipeline's own search stage (``pipeline.stages.run_search_stage``) on two run
directories under ``out_dir``:

- ``fp32_latency``: objectives ``top1:max, latency_ms@cpu_fp32:min``;
- ``int8_latency``: objectives ``top1:max, latency_ms@cpu_int8:min``.

Both runs configure the same two one-thread CPU profiles, ``cpu_fp32`` (the exported model) and
``cpu_int8`` (that model quantised, ``pipeline.evaluate.int8``), so every candidate of both runs
has both latencies and ``top1@cpu_int8`` measured. Afterwards each run's final front is read back
and compared in the deployment's terms, (top-1, INT8 latency):

- how many architectures the two fronts share and how many differ;
- the hypervolume of each front in (top-1 max, ``latency_ms@cpu_int8`` min), both normalised by
  the ideal and nadir of the two fronts together (reference 1.1 per axis);
- for each top-1 level (the distinct top-1 values of the two fronts), the lowest INT8 latency each
  front reaches at that accuracy or better.

The fronts' rows go to ``OUT/bench_precision_fronts.parquet`` (column ``search`` names the run);
the tables are printed. ``ONNX`` models are cached in ``OUT/onnx_cache``, shared by both runs.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipeline.atomic import write_parquet_atomic
from pipeline.config import PipelineConfig, dump_config, load_config
from pipeline.evaluate.objectives import quantized_top1_metric
from pipeline.evaluate.profiles import latency_metric
from pipeline.run_dir import RunDir
from pipeline.search.pareto import normalized_hypervolume, pareto_mask

FP32_PROFILE, INT8_PROFILE = "cpu_fp32", "cpu_int8"
#: run name -> the latency objective its search minimises
SEARCHES = {"fp32_latency": latency_metric(FP32_PROFILE), "int8_latency": latency_metric(INT8_PROFILE)}
INT8_LATENCY = latency_metric(INT8_PROFILE)


def bench_overrides(evaluations: int, quick: bool) -> list[str]:
    """Settings applied before the caller's overrides: the two profiles and a small search."""
    timing = "warmup: 2, repeats: 5, max_repeats: 5" if quick else "warmup: 3, repeats: 15, max_repeats: 60"
    common = f"threads: 1, timer: thread_cpu, num_cpus: 0.5, {timing}"
    initial = max(4, evaluations // 3)
    return [
        "ray.num_cpus=2", "evaluate.num_evaluators=1", "evaluate.evaluator_num_cpus=1",
        f"evaluate.profiles=[{{name: {FP32_PROFILE}, {common}}}, "
        f"{{name: {INT8_PROFILE}, precision: int8, calibration_images: {16 if quick else 64}, {common}}}]",
        f"search.max_evaluations={evaluations}", f"search.initial_size={initial}",
        f"search.candidates_per_iteration={max(2, (evaluations - initial) // 4)}",
        "search.adaptation.enabled=false",
        # a cheap engine: the comparison needs the same one in both runs, not the best one. On 2
        # busy cores the demo's (LightGBM + GP, 5 folds, 40 x 10 surrogate NSGA) took ~3 min per
        # iteration, mostly counting the MACs of every surrogate candidate for the latency predictor
        "search.surrogates=[ridge, dtree]", "search.cv_folds=3",
        "search.surrogate_population=24", "search.surrogate_generations=6",
    ]


def _config(base: Path | None, overrides: Sequence[str], name: str, objective: str, checkpoint: Path,
            cache: Path, seed: int) -> PipelineConfig:
    return load_config(base, [*overrides, f"run.name={name}", f"run.seed={seed}",
                              f'search.objectives=["top1:max","{objective}:min"]',
                              f"evaluate.checkpoint={checkpoint}", f"evaluate.onnx_cache={cache}"])


def _run_searches(configs: dict[str, PipelineConfig], out_dir: Path) -> dict[str, float]:
    """Both searches in one Ray session; seconds each took."""
    from pipeline.preflight import check_pipeline_inputs
    from pipeline.runtime import ray_session
    from pipeline.stages import run_search_stage

    for name, config in configs.items():
        check_pipeline_inputs(config, ["search"], out_dir / name)  # bad input before Ray starts
    seconds = {}
    with ray_session(next(iter(configs.values())).ray):
        for name, config in configs.items():
            run_dir = RunDir(out_dir / name).check_location().root
            run_dir.mkdir(parents=True, exist_ok=True)
            dump_config(config, RunDir(run_dir).config_file)
            started = time.perf_counter()
            run_search_stage(config, run_dir, resume=False)
            seconds[name] = time.perf_counter() - started
    return seconds


def _front(run_dir: Path, objective: str) -> pd.DataFrame:
    """The run's final front (its own objectives), non-dominated rows only."""
    front = pd.read_parquet(run_dir / "front.parquet")
    front = front[front["status"] == "ok"].reset_index(drop=True)
    points = np.column_stack([-front["top1"].to_numpy(float), front[objective].to_numpy(float)])
    return front[pareto_mask(points)].reset_index(drop=True)


def _int8_points(front: pd.DataFrame) -> np.ndarray:
    return np.column_stack([-front["top1"].to_numpy(float), front[INT8_LATENCY].to_numpy(float)])


def compare_fronts(fronts: dict[str, pd.DataFrame]) -> dict[str, Any]:
    """Shared / differing architectures, hypervolume in (top-1, INT8 latency) and the lowest INT8
    latency per top-1 level, of the two runs' fronts (see the module docstring)."""
    fp32, int8 = fronts["fp32_latency"], fronts["int8_latency"]
    ids = {name: set(front["arch_id"]) for name, front in fronts.items()}
    both = np.vstack([_int8_points(fp32), _int8_points(int8)])
    ideal, nadir = both.min(axis=0), both.max(axis=0)
    levels = sorted(set(fp32["top1"]) | set(int8["top1"]), reverse=True)
    table = []
    for level in levels:
        lowest = {name: float(front.loc[front["top1"] >= level - 1e-9, INT8_LATENCY].min()) if (
            front["top1"] >= level - 1e-9).any() else float("nan") for name, front in fronts.items()}
        table.append({"top1_at_least": float(level), **{f"{name}_front_int8_ms": value for name, value in lowest.items()}})
    return {
        "front_sizes": {name: len(front) for name, front in fronts.items()},
        "shared": len(ids["fp32_latency"] & ids["int8_latency"]),
        "differing": len(ids["fp32_latency"] ^ ids["int8_latency"]),
        "only_in": {name: len(ids[name] - ids[other]) for name, other in
                    (("fp32_latency", "int8_latency"), ("int8_latency", "fp32_latency"))},
        "hypervolume_top1_int8_latency": {name: normalized_hypervolume(_int8_points(front), ideal, nadir)
                                          for name, front in fronts.items()},
        "int8_latency_by_top1": table,
    }


def _print(result: dict[str, Any]) -> None:
    print(f"fronts: fp32-latency search {result['front_sizes']['fp32_latency']}, int8-latency search "
          f"{result['front_sizes']['int8_latency']} architectures; shared {result['shared']}, "
          f"differing {result['differing']} (only fp32: {result['only_in']['fp32_latency']}, "
          f"only int8: {result['only_in']['int8_latency']})")
    hv = result["hypervolume_top1_int8_latency"]
    print(f"hypervolume in (top1, INT8 latency): fp32-latency front {hv['fp32_latency']:.4f}, "
          f"int8-latency front {hv['int8_latency']:.4f}")
    print(pd.DataFrame(result["int8_latency_by_top1"]).to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print(f"evaluations {result['evaluations']}, seconds {result['seconds']}")


def compare_precision_fronts(supernet_checkpoint: Path, out_dir: Path, config_path: Path | None = None,
                             overrides: Sequence[str] = (), seed: int = 0, evaluations: int = 40,
                             quick: bool = False) -> dict[str, Any]:
    """Search the supernet on fp32 and on INT8 latency, and compare the fronts (module docstring).

    ``config_path`` defaults to the ``config.yaml`` of the checkpoint's run directory
    (``RUN_DIR/supernet/supernet.pt``), which describes its data and space; ``overrides`` are
    ``key.path=value`` strings applied after the benchmark's own settings. The checkpoint is
    copied into ``out_dir`` and only read from there.
    """
    supernet_checkpoint, out_dir = Path(supernet_checkpoint), Path(out_dir).resolve()
    if config_path is None and (supernet_checkpoint.parent.parent / "config.yaml").is_file():
        config_path = supernet_checkpoint.parent.parent / "config.yaml"
    out_dir.mkdir(parents=True, exist_ok=True)
    checkpoint = out_dir / "supernet.pt"
    shutil.copy2(supernet_checkpoint, checkpoint)
    settings = [*bench_overrides(evaluations, quick), *overrides]
    configs = {name: _config(config_path, settings, name, objective, checkpoint, out_dir / "onnx_cache", seed)
               for name, objective in SEARCHES.items()}
    seconds = _run_searches(configs, out_dir)
    fronts = {name: _front(out_dir / name, objective) for name, objective in SEARCHES.items()}
    result = compare_fronts(fronts)
    archives = {name: pd.read_parquet(out_dir / name / "archive.parquet") for name in SEARCHES}
    result["evaluations"] = {name: int((frame["status"] == "ok").sum()) for name, frame in archives.items()}
    result["seconds"] = {name: round(value, 1) for name, value in seconds.items()}
    columns = ["arch_id", "arch", "top1", quantized_top1_metric(INT8_PROFILE), latency_metric(FP32_PROFILE),
               INT8_LATENCY, "params_m", "macs_m"]
    rows = pd.concat([front[columns].assign(search=name) for name, front in fronts.items()], ignore_index=True)
    write_parquet_atomic(rows, out_dir / "bench_precision_fronts.parquet")
    result["fronts"] = rows.to_dict(orient="records")
    _print(result)
    return result
