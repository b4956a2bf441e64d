"""INT8 against fp32 on this CPU, fp16 against fp32 on a GPU (the library side of ``jobs/bench_deploy.py``).

Four parts, run in the order asked (``PART_RUNNERS`` maps a part's name to its function, so a
further part plugs in by adding an entry):

- **latency**: ``subnets`` seeded random subnets of OFA's MobileNetV3 w1.0 space (stage widths
  24/40/80/112/160, kernels 3/5/7, expands 3/4/6, depths 2/3/4, 1,000 classes, random weights:
  latency does not depend on their values) at each resolution, exported with batch 1, quantised
  with ``pipeline.quantize.quantize_int8`` (calibrated on ``calibration_images`` seeded
  standard-normal images at that resolution: the calibration only sets the scales, which do not
  change the work done), and both files timed with ``measure_onnx`` on one CPU thread
  (``thread_cpu`` timer, no spinning, the fp32 file then the INT8 file of each subnet). Reported:
  the INT8/fp32 median-latency ratio per subnet and, per resolution, its median, min, quartiles
  and max.
- **accuracy**: ``accuracy_subnets`` seeded subnets of a trained supernet (default: the demo run's,
  ``runs/demo``; the file is copied, never written), each extracted, its BatchNorm recalibrated on
  the run's calibration images as the evaluator does, then bundled by
  ``pipeline.deploy_bundle.build_bundle`` with one int8 profile: ONNX Runtime's fp32 and INT8 top-1
  on the test split of the run's data set, and their agreement. Reported: the drop per subnet, the
  median and the worst drop.
- **fronts**: the demo run's supernet searched twice side by side, on fp32 and on INT8 latency
  (``pipeline.bench.precision_fronts.compare_precision_fronts``, ``front_evaluations`` each):
  how many front architectures differ, the hypervolume of each front in (top-1, INT8 latency), and
  the lowest INT8 latency each front reaches at each accuracy.
- **gpu** (asked for by name, not a default part): the latency part's subnets exported as fp32 and
  converted to fp16 (``pipeline.quantize.convert_fp16``), both timed on every GPU provider this
  node's ONNX Runtime has (``GPU_PROVIDERS``: CUDA, TensorRT), wall clock with inputs and outputs
  bound to the device, batch ``gpu_batch``. Reported: the fp16/fp32 ratio per subnet and its
  median and spread per provider and resolution. A node without a GPU provider is refused with
  one line before any part runs (``check_parts``).

``run_deploy_bench`` writes ``OUT/deploy_<part>.csv`` per part and ``OUT/bench_deploy.json``
(settings, host, summaries) atomically, and prints the tables.
"""

from __future__ import annotations

import json
import platform
import shutil
import socket
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from pipeline.atomic import write_text_atomic
from pipeline.bench.latency import sample_archs
from pipeline.config import HardwareProfile, load_config
from pipeline.data import load_splits_from_config
from pipeline.data.augment import eval_transform
from pipeline.deploy_bundle import BundleInputs, build_bundle, read_card
from pipeline.errors import ConfigError, ProfileError
from pipeline.evaluate.latency import measure_onnx
from pipeline.onnx_runtime import provider_name
from pipeline.quantize import convert_fp16, quantize_int8
from pipeline.supernet.bn import recalibrate_bn
from pipeline.supernet.builder import build_supernet
from pipeline.supernet.checkpoint import load_supernet
from pipeline.supernet.costs import count_costs
from pipeline.supernet.export import export_onnx
from pipeline.supernet.ofa_format import OFA_DEPTHS, OFA_EXPANDS, OFALayout

PROFILE = "cpu_one_thread"


@dataclass(frozen=True)
class DeployBenchSettings:
    """Sizes of the benchmark; the defaults keep a run near 10 minutes on a busy 2-core machine."""

    subnets: int = 20
    resolutions: tuple[int, ...] = (128, 224)
    warmup: int = 3
    repeats: int = 15
    max_repeats: int = 60
    target_rse: float = 0.02
    calibration_images: int = 8
    accuracy_subnets: int = 8
    accuracy_calibration_images: int = 64
    demo_run: str = "runs/demo"
    front_evaluations: int = 40  # per search of the fronts part
    gpu_batch: int = 1  # images per timed run of the gpu part
    seed: int = 0


def one_thread_profile(settings: DeployBenchSettings, precision: str = "fp32") -> HardwareProfile:
    """One intra-op thread on the CPU provider, timed by the inference thread's CPU time."""
    return HardwareProfile(name=PROFILE, threads=1, allow_spinning=False, timer="thread_cpu", warmup=settings.warmup,
                           repeats=settings.repeats, max_repeats=settings.max_repeats,
                           target_rse=settings.target_rse, precision=precision,
                           calibration_images=settings.accuracy_calibration_images)


def ofa_w10_supernet(resolutions: Sequence[int], seed: int):
    """OFA's MobileNetV3 w1.0 supernet layout (``d234_e346_k357``), 1,000 classes, seeded random weights."""
    layout = OFALayout(width_mult=1.0, kernel_choices=(3, 5, 7), expand_choices=OFA_EXPANDS,
                       depth_choices=OFA_DEPTHS, num_classes=1000)
    return build_supernet(layout.space_options(tuple(resolutions)), 1000, seed=seed).eval()


def _latency_row(net, arch: dict, index: int, work: Path, settings: DeployBenchSettings) -> dict[str, Any]:
    resolution = int(arch["resolution"])
    module = net.extract(arch).eval()
    costs = count_costs(module, resolution)
    fp32 = export_onnx(module, work / f"s{index}_r{resolution}.fp32.onnx", resolution)
    calibration = np.random.default_rng(settings.seed + index).standard_normal(
        (settings.calibration_images, 3, resolution, resolution)).astype(np.float32)
    int8 = quantize_int8(fp32, work / f"s{index}_r{resolution}.int8.onnx", calibration)
    profile = one_thread_profile(settings)
    fp32_stats = measure_onnx(fp32, profile, resolution, seed=settings.seed)
    int8_stats = measure_onnx(int8, profile, resolution, seed=settings.seed)
    return {"subnet": index, "resolution": resolution, "arch_id": net.space.arch_id(arch),
            "macs_m": costs["macs_m"], "params_m": costs["params_m"],
            "fp32_ms": fp32_stats.median_ms, "int8_ms": int8_stats.median_ms,
            "int8_ratio": int8_stats.median_ms / fp32_stats.median_ms,
            "fp32_repeats": fp32_stats.repeats, "int8_repeats": int8_stats.repeats,
            "fp32_cv": fp32_stats.cv, "int8_cv": int8_stats.cv}


def ofa_subnets(net, settings: DeployBenchSettings, resolution: int) -> list[dict]:
    """The ``subnets`` seeded OFA subnets at ``resolution`` that the latency and gpu parts both time."""
    return [dict(arch, resolution=resolution)
            for arch in sample_archs(net.space, settings.subnets, settings.seed + resolution)]


def latency_part(settings: DeployBenchSettings, work: Path) -> pd.DataFrame:
    """INT8/fp32 latency per OFA w1.0 subnet and resolution, one CPU thread."""
    net = ofa_w10_supernet(settings.resolutions, settings.seed)
    rows = []
    for resolution in settings.resolutions:
        archs = ofa_subnets(net, settings, resolution)
        for index, arch in enumerate(archs):
            row = _latency_row(net, arch, index, work, settings)
            rows.append(row)
            print(f"latency {resolution}px subnet {index + 1}/{len(archs)}: {row['macs_m']:.0f} MMACs, fp32 "
                  f"{row['fp32_ms']:.2f} ms, INT8 {row['int8_ms']:.2f} ms, ratio {row['int8_ratio']:.3f}", flush=True)
    return pd.DataFrame(rows)


#: the GPU providers the gpu part times fp16 against fp32 on, those this node has
GPU_PROVIDERS = ("cuda", "tensorrt")
GPU_REFUSAL = ("the gpu part needs ONNX Runtime's CUDAExecutionProvider or TensorrtExecutionProvider, which this "
               "node lacks (install onnxruntime-gpu on a node with a GPU)")


def gpu_providers(available: Sequence[str] | None = None) -> list[str]:
    """The short names of ``GPU_PROVIDERS`` whose ONNX Runtime provider this node has."""
    if available is None:
        import onnxruntime

        available = onnxruntime.get_available_providers()
    return [short for short in GPU_PROVIDERS if provider_name(short) in available]


def gpu_profile(settings: DeployBenchSettings, provider: str) -> HardwareProfile:
    """Wall-clock timing on ``provider`` (device-bound inputs and outputs: ``measure_onnx``)."""
    return HardwareProfile(name=f"{provider}_bench", provider=provider, batch_size=settings.gpu_batch,
                           warmup=max(settings.warmup, 10), repeats=settings.repeats,
                           max_repeats=settings.max_repeats, target_rse=settings.target_rse)


def precision_rows(net, archs: Sequence[dict], providers: Sequence[str], work: Path,
                   settings: DeployBenchSettings) -> list[dict[str, Any]]:
    """fp32 and fp16 median latency of each arch on each provider, one row per (provider, arch)."""
    rows = []
    for index, arch in enumerate(archs):
        resolution = int(arch["resolution"])
        fp32 = export_onnx(net.extract(arch).eval(), work / f"s{index}_r{resolution}.fp32.onnx", resolution,
                           batch_size=settings.gpu_batch)
        fp16 = convert_fp16(fp32, work / f"s{index}_r{resolution}.fp16.onnx")
        for provider in providers:
            profile = gpu_profile(settings, provider)
            fp32_ms = measure_onnx(fp32, profile, resolution, seed=settings.seed).median_ms
            fp16_ms = measure_onnx(fp16, profile, resolution, seed=settings.seed).median_ms
            rows.append({"provider": provider, "subnet": index, "resolution": resolution,
                         "arch_id": net.space.arch_id(arch), "fp32_ms": fp32_ms, "fp16_ms": fp16_ms,
                         "fp16_ratio": fp16_ms / fp32_ms})
            print(f"gpu {provider} {resolution}px subnet {index + 1}/{len(archs)}: fp32 {fp32_ms:.3f} ms, "
                  f"fp16 {fp16_ms:.3f} ms, ratio {fp16_ms / fp32_ms:.3f}", flush=True)
    return rows


def gpu_part(settings: DeployBenchSettings, work: Path) -> pd.DataFrame:
    """fp16/fp32 latency of the latency part's OFA w1.0 subnets on this node's GPU providers."""
    providers = gpu_providers()
    if not providers:
        raise ProfileError(GPU_REFUSAL)
    net = ofa_w10_supernet(settings.resolutions, settings.seed)
    rows = []
    for resolution in settings.resolutions:
        rows += precision_rows(net, ofa_subnets(net, settings, resolution), providers, work, settings)
    return pd.DataFrame(rows)


def ratio_summary(frame: pd.DataFrame, column: str, by: str) -> pd.DataFrame:
    """Median, min, quartiles and max of ``column`` per ``by`` value."""
    grouped = frame.groupby(by)[column]
    return pd.DataFrame({
        "n": grouped.size(), "median": grouped.median(), "min": grouped.min(),
        "q1": grouped.quantile(0.25), "q3": grouped.quantile(0.75), "max": grouped.max(),
    }).reset_index()


def _calibrated(net, arch: dict, splits, count: int, batch: int) -> torch.nn.Module:
    """The extracted subnet with BN recalibrated on the first ``count`` training images (the evaluator's rule)."""
    module = net.extract(arch)
    resolution = int(arch["resolution"])
    images, _ = splits.train.take(np.arange(min(count, len(splits.train))))
    recalibrate_bn(module, [eval_transform(images[i:i + batch], splits.mean, splits.std, resolution, splits.eval_crop)
                            for i in range(0, len(images), batch)])
    return module.eval()


def accuracy_part(settings: DeployBenchSettings, work: Path) -> pd.DataFrame:
    """fp32 against INT8 top-1 (ONNX Runtime, test split) of subnets of the demo run's supernet."""
    run = Path(settings.demo_run)
    copy = work / "supernet.pt"
    shutil.copyfile(run / "supernet" / "supernet.pt", copy)
    config = load_config(run / "config.yaml")
    net, _ = load_supernet(copy)
    splits = load_splits_from_config(config.data, seed=config.run.seed)
    profile = one_thread_profile(settings, precision="int8")
    rows = []
    for index, arch in enumerate(sample_archs(net.space, settings.accuracy_subnets, settings.seed)):
        module = _calibrated(net, arch, splits, config.evaluate.calibration_images,
                             config.evaluate.calibration_batch_size)
        arch_id = net.space.arch_id(arch)
        build_bundle(module, BundleInputs(directory=work / "bundles" / arch_id, arch=arch, arch_id=arch_id,
                                          splits=splits, profiles=[profile], seed=settings.seed))
        card = read_card(work / "bundles" / arch_id)
        fp32, int8 = card["models"]["fp32"], card["models"][f"int8@{PROFILE}"]
        row = {"subnet": index, "arch_id": arch_id, "resolution": int(arch["resolution"]), "exit": arch.get("exit"),
               "eval_split": card["eval_split"], "eval_images": card["eval_images"],
               "fp32_top1": fp32["test_top1"], "int8_top1": int8["test_top1"],
               "top1_drop": fp32["test_top1"] - int8["test_top1"],
               "agreement": int8["parity"]["top1_agreement_with_fp32_pct"],
               "fp32_parity": fp32["parity"]["max_abs_logit_diff_vs_torch"]}
        rows.append(row)
        print(f"accuracy subnet {index + 1}: fp32 {row['fp32_top1']:.2f} %, INT8 {row['int8_top1']:.2f} %, "
              f"drop {row['top1_drop']:+.2f} points, agreement {row['agreement']:.1f} %", flush=True)
    return pd.DataFrame(rows)


def fronts_part(settings: DeployBenchSettings, work: Path) -> pd.DataFrame:
    """The demo run's supernet searched on fp32 and on INT8 latency side by side
    (``pipeline.bench.precision_fronts``): both final fronts, one row per architecture."""
    from pipeline.bench.precision_fronts import compare_precision_fronts

    run = Path(settings.demo_run)
    result = compare_precision_fronts(run / "supernet" / "supernet.pt", work, config_path=run / "config.yaml",
                                      seed=settings.seed, evaluations=settings.front_evaluations)
    return pd.DataFrame(result["fronts"])


#: the parts by name; a further part is one more entry (a function of settings and a scratch folder)
PART_RUNNERS: dict[str, Callable[[DeployBenchSettings, Path], pd.DataFrame]] = {
    "latency": latency_part,
    "accuracy": accuracy_part,
    "fronts": fronts_part,
    "gpu": gpu_part,
}
DEFAULT_PARTS = ("latency", "accuracy", "fronts")


def check_parts(parts: Sequence[str]) -> None:
    """``ConfigError`` for an unknown or empty part list, ``ProfileError`` for gpu without a GPU
    provider: before any part runs, so a long run never fails at its last part."""
    unknown = [part for part in parts if part not in PART_RUNNERS]
    if unknown or not parts:
        raise ConfigError(f"--parts: unknown part(s) {unknown}; choose from {', '.join(PART_RUNNERS)}")
    if "gpu" in parts and not gpu_providers():
        raise ProfileError(GPU_REFUSAL)


def _summaries(part: str, frame: pd.DataFrame) -> dict[str, Any]:
    if part == "latency" and not frame.empty:
        return {"int8_ratio": ratio_summary(frame, "int8_ratio", "resolution").to_dict("records")}
    if part == "fronts" and not frame.empty:
        from pipeline.bench.precision_fronts import compare_fronts

        return compare_fronts({name: group for name, group in frame.groupby("search")})
    if part == "gpu" and not frame.empty:
        return {"fp16_ratio": {provider: ratio_summary(rows, "fp16_ratio", "resolution").to_dict("records")
                               for provider, rows in frame.groupby("provider")}}
    if part == "accuracy" and not frame.empty:
        return {"median_drop": float(frame["top1_drop"].median()), "worst_drop": float(frame["top1_drop"].max()),
                "median_agreement": float(frame["agreement"].median()), "subnets": len(frame)}
    return {}


def _print_tables(part: str, frame: pd.DataFrame) -> None:
    with pd.option_context("display.width", 160, "display.max_columns", 20):
        if part == "latency" and not frame.empty:
            print("\nINT8/fp32 latency ratio, one CPU thread (below 1: INT8 faster)")
            print(ratio_summary(frame, "int8_ratio", "resolution").to_string(index=False, float_format="%.3f"))
        elif part == "accuracy" and not frame.empty:
            print("\nfp32 against INT8 top-1 (ONNX Runtime), points")
            print(frame[["arch_id", "resolution", "fp32_top1", "int8_top1", "top1_drop", "agreement"]]
                  .to_string(index=False, float_format="%.2f"))
            print(f"median drop {frame['top1_drop'].median():+.2f}, worst drop {frame['top1_drop'].max():+.2f} "
                  f"points over {len(frame)} subnets")
        elif part == "gpu" and not frame.empty:
            for provider, rows in frame.groupby("provider"):
                print(f"\nfp16/fp32 latency ratio on {provider} (below 1: fp16 faster)")
                print(ratio_summary(rows, "fp16_ratio", "resolution").to_string(index=False, float_format="%.3f"))
        elif part != "fronts":  # compare_precision_fronts printed its own tables
            print(f"\n{part}\n{frame.to_string(index=False)}")


def run_deploy_bench(out: str | Path, settings: DeployBenchSettings = DeployBenchSettings(),
                     parts: Sequence[str] = DEFAULT_PARTS) -> dict[str, Any]:
    """Run ``parts`` and write their CSV files and ``bench_deploy.json`` into ``out``; returns the JSON."""
    check_parts(parts)
    out = Path(out)
    work = out / "work"
    summary: dict[str, Any] = {"settings": asdict(settings), "parts": list(parts), "host": socket.gethostname(),
                               "machine": platform.processor() or platform.machine(), "results": {}}
    for part in parts:
        started = time.perf_counter()
        folder = work / part
        folder.mkdir(parents=True, exist_ok=True)
        frame = PART_RUNNERS[part](settings, folder)
        write_text_atomic(out / f"deploy_{part}.csv", frame.to_csv(index=False))
        summary["results"][part] = {**_summaries(part, frame), "seconds": time.perf_counter() - started}
        _print_tables(part, frame)
    shutil.rmtree(work, ignore_errors=True)
    write_text_atomic(out / "bench_deploy.json", json.dumps(summary, indent=2, default=str) + "\n")
    return summary
