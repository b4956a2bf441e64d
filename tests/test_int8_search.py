"""INT8 as a hardware dimension of the search: profile precision, INT8 latency, top-1 after
quantisation (measured, never copied), the objectives that name them, and bad input."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pandas as pd
import pytest
import torch

from pipeline.config import HardwareProfile, load_config
from pipeline.errors import ConfigError
from pipeline.space.ofav2 import OFAv2Space

pytestmark = pytest.mark.usefixtures("one_torch_thread")
REPO = Path(__file__).resolve().parents[1]
TINY = {"stage_widths": (8, 8, 16, 16, 24), "resolutions": (16, 20)}
DATA = {"dataset": "synthetic", "synthetic_images": 120, "synthetic_classes": 4}
INT8 = {"name": "cpu_int8", "threads": 1, "precision": "int8", "calibration_images": 8, "warmup": 1,
        "repeats": 3, "max_repeats": 3}


def test_profile_precision_is_validated():
    assert HardwareProfile(name="p").precision == "fp32"
    assert HardwareProfile(name="p", precision="int8", provider="tensorrt").calibration_images == 64
    with pytest.raises(ValueError, match="int8 needs provider cpu or tensorrt"):
        HardwareProfile(name="gpu", provider="cuda", precision="int8")
    assert HardwareProfile(name="gpu", provider="cuda", precision="fp16").precision == "fp16"
    with pytest.raises(ValueError, match="fp16 needs provider cuda or tensorrt, not 'cpu'"):
        HardwareProfile(name="cpu", provider="cpu", precision="fp16")
    with pytest.raises(ValueError, match="reserved"):
        HardwareProfile(name="exit2", precision="int8")
    with pytest.raises(ConfigError, match="evaluate.profiles.0.precision"):
        load_config(None, ["evaluate.profiles=[{name: p, precision: int4}]"])


def test_quantized_top1_objective_needs_a_quantized_profile():
    from pipeline.evaluate.objectives import ofav2_objectives

    profiles = "evaluate.profiles=[{name: cpu_fp32, threads: 1}, {name: cpu_int8, threads: 1, precision: int8}]"
    ok = load_config(None, [profiles, 'search.objectives=["top1@cpu_int8:max","latency_ms@cpu_int8:min"]'])
    assert [o.name for o in ofav2_objectives(ok)] == ["top1@cpu_int8", "latency_ms@cpu_int8"]
    mixed = load_config(None, [profiles, 'search.objectives=["top1:max","latency_ms@cpu_int8:min"]'])
    assert len(ofav2_objectives(mixed)) == 2
    bad = load_config(None, [profiles, 'search.objectives=["top1@cpu_fp32:max","latency_ms@cpu_int8:min"]'])
    with pytest.raises(ConfigError, match="top1@cpu_fp32.*'cpu_fp32' runs fp32"):
        ofav2_objectives(bad)
    unknown = load_config(None, [profiles, 'search.objectives=["top1@tpu:max","params_m:min"]'])
    with pytest.raises(ConfigError, match="unknown hardware profile"):
        ofav2_objectives(unknown)


def test_int8_latency_row_is_filled_by_the_latency_worker(tmp_path):
    from pipeline.evaluate.actors import LatencyWorker

    worker = LatencyWorker(OFAv2Space(**TINY).options(), 4, INT8, str(tmp_path), data=DATA, seed=0)
    arch = worker.space.sample(np.random.default_rng(1))
    result = worker.run(arch)
    metrics = result["metrics"]
    assert set(metrics) == {"latency_ms@cpu_int8", "latency_p90_ms@cpu_int8", "latency_cv@cpu_int8"}
    assert all(np.isfinite(value) and value >= 0 for value in metrics.values()) and metrics["latency_ms@cpu_int8"] > 0
    assert result["onnx_cached"] is False
    int8_files = list(tmp_path.glob("*_cpu_int8.int8.onnx"))
    assert len(int8_files) == 1 and int8_files[0].name.endswith(f"_r{arch['resolution']}_b1_cpu_int8.int8.onnx")
    assert {"QuantizeLinear", "DequantizeLinear"} <= {n.op_type for n in onnx.load(str(int8_files[0])).graph.node}
    assert worker.run(arch)["onnx_cached"] is True  # the quantised model is reused, not rebuilt
    fp32 = LatencyWorker(OFAv2Space(**TINY).options(), 4, INT8 | {"name": "cpu_fp32", "precision": "fp32"},
                         str(tmp_path))
    assert fp32.onnx_path(arch)[0].name.endswith(f"_r{arch['resolution']}_b1.onnx")


def test_int8_latency_worker_without_data_is_a_clear_error(tmp_path):
    from pipeline.errors import ProfileError
    from pipeline.evaluate.actors import LatencyWorker

    worker = LatencyWorker(OFAv2Space(**TINY).options(), 4, INT8, str(tmp_path))
    with pytest.raises(ProfileError, match="no data config"):
        worker.run(worker.space.sample(np.random.default_rng(1)))


def _skewed_arch() -> dict:
    return OFAv2Space(**TINY).sample(np.random.default_rng(5)) | {"exit": 4, "resolution": 20}


@pytest.fixture(scope="module")
def skewed_run(tmp_path_factory):
    """A tiny supernet trained briefly on one architecture (so it predicts well), then with two
    channels' BN scales of the first stages blown up: one activation range dominates, and INT8
    quantisation loses the other channels' resolution, so its accuracy differs from fp32's."""
    import torch.nn.functional as F

    from pipeline.data import eval_transform, load_splits_from_config
    from pipeline.supernet import OFAv2Supernet
    from pipeline.supernet.checkpoint import save_supernet

    torch.manual_seed(0)
    net = OFAv2Supernet(OFAv2Space(**TINY), 4, seed=0)
    splits = load_splits_from_config(load_config(None, [f"data.{k}={v}" for k, v in DATA.items()]).data, seed=0)
    images = eval_transform(splits.train_images, splits.mean, splits.std, 20)
    net.set_active(_skewed_arch())
    net.train()
    optimiser = torch.optim.SGD(net.parameters(), lr=0.05, momentum=0.9)
    generator = torch.Generator().manual_seed(0)
    for _ in range(80):
        index = torch.randint(len(images), (32,), generator=generator)
        loss = F.cross_entropy(net(images[index]), splits.train_labels[index])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    with torch.no_grad():
        for module in list(net.modules())[:12]:
            if isinstance(module, torch.nn.BatchNorm2d):
                module.weight[:2] *= 200.0
    run_dir = tmp_path_factory.mktemp("int8run")
    save_supernet(run_dir / "supernet" / "supernet.pt", net)
    return run_dir


def test_top1_after_quantization_is_measured_and_matches_a_recomputation(skewed_run, tmp_path):
    from pipeline.data import calibration_subset, eval_transform, load_splits_from_config
    from pipeline.evaluate.actors import AccuracyWorker
    from pipeline.quantize import onnx_predictions, quantize_int8
    from pipeline.supernet.bn import recalibrate_bn
    from pipeline.supernet.checkpoint import load_supernet
    from pipeline.supernet.export import export_onnx

    config = load_config(None, [f"data.{key}={value}" for key, value in DATA.items()] + [
        "evaluate.calibration_images=24", "evaluate.calibration_batch_size=8", "evaluate.eval_batch_size=16",
        "evaluate.calibration_seed=3", "evaluate.profiles=[{name: cpu_int8, threads: 1, precision: int8, "
        "calibration_images: 4}, {name: cpu_fp32, threads: 1}]"])
    checkpoint = skewed_run / "supernet" / "supernet.pt"
    worker = AccuracyWorker(str(checkpoint), config.data.model_dump(), 0, config.evaluate.model_dump(),
                            str(tmp_path / "cache"))
    arch = _skewed_arch()
    metrics = worker.run(arch)["metrics"]
    assert "top1@cpu_fp32" not in metrics  # fp32 profiles have top1 itself
    assert metrics["top1@cpu_int8"] != metrics["top1"]
    # independent recomputation: recalibrate a fresh copy, extract, export, quantise, count hits
    net, _ = load_supernet(checkpoint)
    splits = load_splits_from_config(config.data, seed=0)
    resolution = arch["resolution"]
    recalibrate_bn(net, worker.scorer.calibration_batches(resolution), arch=arch)
    fp32 = export_onnx(net.extract(arch).eval(), tmp_path / "fp32.onnx", resolution, batch_size=2, dynamic_batch=True)
    calibration = eval_transform(calibration_subset(splits, 4, 3), splits.mean, splits.std, resolution).numpy()
    int8 = quantize_int8(fp32, tmp_path / "int8.onnx", calibration)
    val = eval_transform(splits.val_images, splits.mean, splits.std, resolution).numpy()
    correct = int((onnx_predictions(int8, val) == splits.val_labels.numpy()).sum())
    assert metrics["top1@cpu_int8"] == pytest.approx(100.0 * correct / len(val))
    # a retried candidate reuses the trained quantised model of its round
    cached = list((tmp_path / "cache" / "trained").glob("*_cpu_int8_round0_*.int8.onnx"))
    assert len(cached) == 1
    stamp = cached[0].stat().st_mtime_ns
    assert worker.run(arch)["metrics"]["top1@cpu_int8"] == metrics["top1@cpu_int8"]
    assert cached[0].stat().st_mtime_ns == stamp


def _tiny_run(tmp: Path) -> Path:
    from pipeline.supernet import OFAv2Supernet
    from pipeline.supernet.checkpoint import save_supernet

    run_dir = tmp / "run"
    space = OFAv2Space(stage_widths=(8, 8, 16, 16, 24), resolutions=(16, 20))
    save_supernet(run_dir / "supernet" / "supernet.pt", OFAv2Supernet(space, num_classes=4, seed=0))
    return run_dir


BAD = [
    ("unknown precision", ["--set", "evaluate.profiles=[{name: cpu_x, precision: int4}]"], "precision"),
    ("int8 on cuda", ["--set", "evaluate.profiles=[{name: gpu_int8, provider: cuda, precision: int8}]"],
     "int8 needs provider cpu or tensorrt"),
    ("fp16 on cpu", ["--set", "evaluate.profiles=[{name: cpu_fp16, provider: cpu, precision: fp16}]"],
     "fp16 needs provider cuda or tensorrt"),
    ("top1 of an fp32 profile", ["--set", 'search.objectives=["top1@local_one_thread:max","params_m:min"]'],
     "top1@local_one_thread"),
]


@pytest.mark.slow
@pytest.mark.parametrize("argv, expect", [case[1:] for case in BAD], ids=[case[0] for case in BAD])
def test_bad_int8_input_is_one_line_before_ray(argv, expect, tmp_path):
    run_dir = _tiny_run(tmp_path)  # a trained-looking run, so only the profile or objective is wrong
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    completed = subprocess.run(
        [sys.executable, "jobs/search.py", "--config", "jobs/configs/pipeline_tiny.yaml", *argv,
         "--out", str(run_dir)], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)
    assert completed.returncode == 2, completed.stderr[-2000:]
    assert "Traceback" not in completed.stdout + completed.stderr
    errors = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1 and expect in errors[0], completed.stderr[-2000:]
    assert "Ray" not in completed.stderr.replace(errors[0], "")  # nothing started Ray
    assert not (run_dir / "archive.parquet").exists()


@pytest.mark.slow
def test_search_on_int8_objectives_end_to_end_through_ray(tmp_path):
    run_dir = _tiny_run(tmp_path)
    profiles = ("evaluate.profiles=[{name: cpu_int8, threads: 1, precision: int8, calibration_images: 8, "
                "warmup: 1, repeats: 3, max_repeats: 3, num_cpus: 0.5}]")
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    completed = subprocess.run(
        [sys.executable, "jobs/search.py", "--config", "jobs/configs/pipeline_tiny.yaml", "--set", profiles,
         "--set", 'search.objectives=["top1@cpu_int8:max","latency_ms@cpu_int8:min"]',
         "--set", "search.max_evaluations=10", "--set", "search.initial_size=6",
         "--set", "evaluate.onnx_cache=" + str(tmp_path / "cache"), "--out", str(run_dir)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
    assert completed.returncode == 0, completed.stderr[-3000:]
    archive = pd.read_parquet(run_dir / "archive.parquet")
    ok = archive[archive["status"] == "ok"]
    assert len(ok) >= 6
    for column in ("top1", "top1@cpu_int8", "latency_ms@cpu_int8", "latency_p90_ms@cpu_int8", "latency_cv@cpu_int8",
                   "latency_node@cpu_int8"):
        assert ok[column].notna().all(), column
    front = pd.read_parquet(run_dir / "front.parquet")
    assert front["top1@cpu_int8"].notna().all() and front["latency_ms@cpu_int8"].notna().all()
    assert list((tmp_path / "cache").glob("*_cpu_int8.int8.onnx"))
    assert list((tmp_path / "cache" / "trained").glob("*_cpu_int8_round0_*.int8.onnx"))


@pytest.mark.slow
def test_precision_fronts_bench_fills_its_figures_with_measurements(tmp_path):
    from pipeline.bench.precision_fronts import compare_precision_fronts

    run_dir = _tiny_run(tmp_path)
    result = compare_precision_fronts(run_dir / "supernet" / "supernet.pt", tmp_path / "bench",
                                      config_path=REPO / "jobs/configs/pipeline_tiny.yaml", evaluations=8, quick=True,
                                      overrides=["search.initial_size=4", "search.candidates_per_iteration=2"])
    assert set(result["front_sizes"]) == {"fp32_latency", "int8_latency"} and min(result["front_sizes"].values()) >= 1
    assert result["shared"] + result["differing"] >= max(result["front_sizes"].values())
    assert all(0.0 <= value <= 1.1 ** 2 for value in result["hypervolume_top1_int8_latency"].values())
    assert result["evaluations"] == {"fp32_latency": 8, "int8_latency": 8}
    table = pd.DataFrame(result["int8_latency_by_top1"])
    assert len(table) >= 1 and table[["fp32_latency_front_int8_ms", "int8_latency_front_int8_ms"]].max().min() > 0
    rows = pd.read_parquet(tmp_path / "bench" / "bench_precision_fronts.parquet")
    for column in ("top1", "top1@cpu_int8", "latency_ms@cpu_fp32", "latency_ms@cpu_int8"):
        assert rows[column].notna().all() and (rows[column] >= 0).all(), column
    assert (rows["latency_ms@cpu_int8"] > 0).all()


def test_fp16_profile_top1_is_measured_on_the_converted_model(skewed_run, tmp_path):
    """A CUDA fp16 profile: the evaluator (on CPU) measures the converted file's top-1, which an
    independent conversion and count reproduce; its latency actor builds the fp16 file and, on a
    node without CUDA, says so instead of timing the CPU."""
    from pipeline.data import eval_transform, load_splits_from_config
    from pipeline.errors import ProfileError
    from pipeline.evaluate.actors import AccuracyWorker, LatencyWorker
    from pipeline.quantize import convert_fp16, onnx_predictions
    from pipeline.supernet.bn import recalibrate_bn
    from pipeline.supernet.checkpoint import load_supernet
    from pipeline.supernet.export import export_onnx

    gpu = {"name": "gpu_fp16", "provider": "cuda", "precision": "fp16", "threads": 1, "warmup": 1, "repeats": 3,
           "max_repeats": 3}
    config = load_config(None, [f"data.{key}={value}" for key, value in DATA.items()] + [
        "evaluate.calibration_images=24", "evaluate.calibration_batch_size=8", "evaluate.eval_batch_size=16",
        f"evaluate.profiles=[{gpu}]".replace("'", "")])
    checkpoint = skewed_run / "supernet" / "supernet.pt"
    worker = AccuracyWorker(str(checkpoint), config.data.model_dump(), 0, config.evaluate.model_dump(),
                            str(tmp_path / "cache"))
    arch = _skewed_arch()
    metrics = worker.run(arch)["metrics"]
    net, _ = load_supernet(checkpoint)
    splits = load_splits_from_config(config.data, seed=0)
    resolution = arch["resolution"]
    recalibrate_bn(net, worker.scorer.calibration_batches(resolution), arch=arch)
    fp32 = export_onnx(net.extract(arch).eval(), tmp_path / "fp32.onnx", resolution, batch_size=2, dynamic_batch=True)
    fp16 = convert_fp16(fp32, tmp_path / "fp16.onnx")
    val = eval_transform(splits.val_images, splits.mean, splits.std, resolution).numpy()
    correct = int((onnx_predictions(fp16, val) == splits.val_labels.numpy()).sum())
    assert metrics["top1@gpu_fp16"] == pytest.approx(100.0 * correct / len(val))
    assert len(list((tmp_path / "cache" / "trained").glob("*_gpu_fp16_round0_*.fp16.onnx"))) == 1

    latency = LatencyWorker(OFAv2Space(**TINY).options(), 4, gpu, str(tmp_path / "latency"))
    path, _, cached = latency.onnx_path(arch)
    assert path.name.endswith("_gpu_fp16.fp16.onnx") and not cached
    assert onnx.TensorProto.FLOAT16 in {t.data_type for t in onnx.load(str(path)).graph.initializer}
    with pytest.raises(ProfileError, match="CUDAExecutionProvider"):
        latency.run(arch)
