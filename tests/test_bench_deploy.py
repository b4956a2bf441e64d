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


def test_parts_are_a_registry_with_latency_accuracy_and_fronts():
    assert {"latency", "accuracy", "fronts"} <= set(PART_RUNNERS)


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
