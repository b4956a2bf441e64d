"""``bench_deploy`` at a tiny size: the output files hold measured INT8/fp32 ratios and top-1 figures."""

from __future__ import annotations

import json

import pandas as pd
import pytest
import torch

from pipeline.bench.deploy import PART_RUNNERS, DeployBenchSettings, run_deploy_bench
from pipeline.config import PipelineConfig
from pipeline.supernet.builder import build_supernet
from pipeline.supernet.checkpoint import save_supernet


def test_parts_are_a_registry_with_latency_accuracy_fronts_and_gpu():
    assert {"latency", "accuracy", "fronts", "gpu"} <= set(PART_RUNNERS)


@pytest.mark.slow
def test_tiny_bench_writes_measured_ratios_and_drops(tmp_path):
    torch.manual_seed(0)
    demo = tmp_path / "demo"
    config = PipelineConfig.model_validate({
        "data": {"dataset": "synthetic", "synthetic_images": 200, "synthetic_classes": 4},
        "supernet": {"stage_widths": [8, 8, 16, 16, 16], "resolutions": [16]},
        "evaluate": {"calibration_images": 64},
    })
    save_supernet(demo / "supernet" / "supernet.pt", build_supernet(config.supernet, 4))
    import yaml

    (demo / "config.yaml").write_text(yaml.safe_dump(config.model_dump(mode="json")))
    settings = DeployBenchSettings(subnets=2, resolutions=(128,), warmup=1, repeats=3, max_repeats=3,
                                   accuracy_subnets=2, demo_run=str(demo))
    summary = run_deploy_bench(tmp_path / "out", settings, parts=("latency", "accuracy"))
    latency = pd.read_csv(tmp_path / "out" / "deploy_latency.csv")
    assert len(latency) == 2 and (latency["resolution"] == 128).all()
    assert (latency["fp32_ms"] > 0).all() and (latency["int8_ms"] > 0).all()
    assert latency["int8_ratio"].to_numpy() == pytest.approx((latency["int8_ms"] / latency["fp32_ms"]).to_numpy())
    accuracy = pd.read_csv(tmp_path / "out" / "deploy_accuracy.csv")
    assert len(accuracy) == 2 and accuracy["fp32_top1"].between(0, 100).all()
    assert accuracy["top1_drop"].to_numpy() == pytest.approx((accuracy["fp32_top1"] - accuracy["int8_top1"]).to_numpy())
    stored = json.loads((tmp_path / "out" / "bench_deploy.json").read_text())
    assert stored["results"]["latency"]["int8_ratio"][0]["median"] == pytest.approx(latency["int8_ratio"].median())
    assert summary["results"]["accuracy"]["worst_drop"] == pytest.approx(accuracy["top1_drop"].max())
    assert not (tmp_path / "out" / "work").exists()


def test_gpu_providers_are_the_gpu_ones_this_node_has():
    from pipeline.bench.deploy import gpu_providers

    assert gpu_providers(["CPUExecutionProvider"]) == []
    assert gpu_providers(["CUDAExecutionProvider", "CPUExecutionProvider"]) == ["cuda"]
    assert gpu_providers(["TensorrtExecutionProvider", "CUDAExecutionProvider", "CPUExecutionProvider"]) == [
        "cuda", "tensorrt"]


def test_precision_rows_time_the_fp32_file_and_its_fp16_conversion(tmp_path):
    """The gpu part's measuring code, with the CPU provider standing in for a GPU one: each row
    times two different files (the second really float16) and the ratio is their quotient."""
    import onnx

    from pipeline.bench.deploy import precision_rows
    from pipeline.bench.latency import sample_archs

    config = PipelineConfig.model_validate({"supernet": {"stage_widths": [8, 8, 16, 16, 16], "resolutions": [32]}})
    net = build_supernet(config.supernet, 4).eval()
    archs = sample_archs(net.space, 2, 0)
    settings = DeployBenchSettings(warmup=1, repeats=3, max_repeats=3, target_rse=0.5)
    rows = pd.DataFrame(precision_rows(net, archs, ["cpu"], tmp_path, settings))
    assert len(rows) == 2 and (rows["provider"] == "cpu").all()
    assert (rows[["fp32_ms", "fp16_ms"]] > 0).all().all()
    assert rows["fp16_ratio"].to_numpy() == pytest.approx((rows["fp16_ms"] / rows["fp32_ms"]).to_numpy())
    fp16 = onnx.load(str(next(tmp_path.glob("*.fp16.onnx"))))
    assert {init.data_type for init in fp16.graph.initializer} & {onnx.TensorProto.FLOAT16}


def test_gpu_part_without_a_gpu_is_one_line_before_any_part_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this node has a GPU provider")
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(repo / "jobs" / "bench_deploy.py"), "--parts", "latency,gpu",
                             "--out", str(out)], capture_output=True, text=True, timeout=120, cwd=repo)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: the gpu part needs ONNX Runtime's CUDAExecutionProvider or TensorrtExecutionProvider, which this "
        "node lacks (install onnxruntime-gpu on a node with a GPU)"]
    assert "latency" not in result.stdout and not out.exists()
