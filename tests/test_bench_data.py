"""The streamed-data benchmark runs end to end at a tiny size and reports measured figures."""

from __future__ import annotations

import pytest

from pipeline.bench.data import augment_rate, build_folder, decode_rate, probe, summary
from pipeline.data.streamed import imagenet_listing


def test_build_folder_counts_and_reuse(tmp_path):
    root = build_folder(tmp_path / "f", 50, size=40, classes=4, val_images=8)
    wnids, train, _ = imagenet_listing(str(root))
    assert len(wnids) == 4 and len(train.paths) == 50
    stamp = (root / ".complete").stat().st_mtime_ns
    build_folder(tmp_path / "f", 50, size=40, classes=4, val_images=8)
    assert (root / ".complete").stat().st_mtime_ns == stamp, "a complete folder is reused, not rewritten"


def test_rates_are_measured(tmp_path):
    root = build_folder(tmp_path / "f", 300, size=48, classes=3, val_images=6)
    assert decode_rate(root, workers=1, image_size=48, batches=2, batch=16) > 0
    assert augment_rate(image_size=48, resolution=40, batches=2, batch=8) > 0


@pytest.mark.slow
@pytest.mark.parametrize(("role", "stream"), [("train", "on"), ("evaluator", "off")])
def test_memory_probes_measure_a_fresh_process(tmp_path, role, stream):
    root = build_folder(tmp_path / "f", 90, size=40, classes=3, val_images=6)
    figures = probe(role, root, stream, 32, tmp_path, steps=2, batch=16) if role == "train" else \
        probe(role, root, stream, 32, tmp_path, calibration_images=16, val_images=10)
    assert figures["peak_rss_mib"] > 50
    if role == "train":
        assert figures["images_seen"] == 32 and figures["worker_peak_rss_mib"] > 0, "loader workers were measured"
    else:
        assert 0.0 <= figures["top1"] <= 100.0


def test_summary_reports_growth_per_role_and_path():
    rows = [{"part": "memory", "role": role, "stream": stream, "images": size,
             "peak_rss_mib": 100.0 * (size / 10 if stream == "off" else 1.05), "worker_peak_rss_mib": 0.0}
            for role in ("train", "evaluator") for stream in ("on", "off") for size in (10, 80)]
    figures = summary(rows)
    assert figures["memory_growth_train_in_memory"] == pytest.approx(7.0)
    assert figures["memory_growth_evaluator_streamed"] == pytest.approx(0.0)


def test_gpu_part_rows_compare_fp32_with_bf16_against_the_data_path(tmp_path):
    """The gpu part's rows, with the CPU standing in for the GPU at a tiny size: both precisions
    train through the loop's own precision handling, and each ratio is the data rate over it."""
    from pipeline.bench.data import gpu, summary

    rows = gpu(tmp_path, workers=1, image_size=64, resolution=32, batches=1, train_steps=1, batch=2, device="cpu")
    assert [row["precision"] for row in rows] == ["fp32", "bf16"]
    for row in rows:
        assert row["train_img_s"] > 0 and row["ratio"] == pytest.approx(row["data_img_s"] / row["train_img_s"])
        assert not row["channels_last"], "channels_last is a CUDA-only choice"
    figures = summary(rows)
    assert figures["gpu_bf16_speedup"] == pytest.approx(rows[1]["train_img_s"] / rows[0]["train_img_s"])


def test_gpu_part_without_cuda_is_one_line_before_any_part_runs(tmp_path):
    import subprocess
    import sys
    from pathlib import Path

    import torch

    if torch.cuda.is_available():
        pytest.skip("this node has CUDA")
    repo = Path(__file__).resolve().parents[1]
    out = tmp_path / "out"
    result = subprocess.run([sys.executable, str(repo / "jobs" / "bench_data.py"), "--out", str(out), "--parts",
                             "throughput", "gpu", "--quick"], capture_output=True, text=True, timeout=120, cwd=repo)
    assert result.returncode == 2, result.stderr[-2000:]
    assert result.stderr.strip().splitlines() == [
        "error: the gpu part needs a CUDA device, which torch does not see on this node"]
    assert not out.exists()
