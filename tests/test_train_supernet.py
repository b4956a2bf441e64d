"""Supernet training end to end on tiny settings: every phase, resume, worker failure, 2 workers.

Tiny means synthetic 4-class data, stage widths (8, 8, 16, 16, 24), resolutions 16/20 and a
schedule scaled so every part is one epoch of at most two steps.
"""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
import torch

from pipeline.config import PipelineConfig, load_config
from pipeline.errors import CheckpointError
from pipeline.supernet.checkpoint import load_supernet
from pipeline.train import train_supernet
from pipeline.train.loop import FAULT_EPOCH_VARIABLE
from pipeline.train.state import STATE_FILE, load_state

REPO = Path(__file__).resolve().parents[1]
TINY = [
    "data.dataset=synthetic", "data.synthetic_images=96", "data.synthetic_classes=4", "data.batch_size=16",
    "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20]",
    "train.epochs_scale=0.005", "train.steps_per_epoch=2", "train.eval_subnets=1",
    "train.calibration_images=32", "train.eval_images=32", "train.num_workers=0", "train.threads_per_worker=1",
]
EE_D_PHASES = ["full", "kernel"] + ["height"] * 4 + ["depth"] * 2 + ["expand"] * 2
COMPARED = ["phase", "part", "epoch", "loss", "lr", "top1_max", "top1_min", "top1_s1", "teacher"]


def tiny_config(*overrides: str) -> PipelineConfig:
    return load_config(overrides=TINY + list(overrides))


@pytest.fixture(scope="module")
def ee_d_run(tmp_path_factory) -> tuple[Path, dict]:
    run_dir = tmp_path_factory.mktemp("ee_d")
    metrics = train_supernet(tiny_config("train.distillation=dynamic"), run_dir)
    return run_dir, metrics


def test_ee_d_runs_every_phase_in_process(ee_d_run):
    run_dir, metrics = ee_d_run
    history = pd.read_parquet(run_dir / "train_metrics.parquet")
    assert history["phase"].tolist() == EE_D_PHASES
    assert history["epoch"].tolist() == list(range(1, 11))
    # the dynamic teacher is the previous phase's best maximal network
    assert history["teacher"].tolist() == ["", "full"] + ["kernel"] * 4 + ["height"] * 2 + ["depth"] * 2
    assert all(math.isfinite(v) for v in history["loss"])
    for column in ("top1_max", "top1_min", "top1_s1", "top1_best"):
        assert history[column].between(0, 100).all()
    assert (history["top1_best"] >= history[["top1_max", "top1_min"]].max(axis=1)).all()
    assert metrics["epoch"] == 10 and metrics["phase"] == "expand"
    net, extra = load_supernet(run_dir / "supernet" / "supernet.pt")
    assert extra["epoch"] == 10 and extra["phase"] == "expand"
    net.set_active(net.space.smallest())
    net.eval()
    assert net(torch.zeros(2, 3, 16, 16)).shape == (2, 4)


def test_driver_restart_resumes_and_matches_uninterrupted_run(ee_d_run, tmp_path, monkeypatch):
    reference = pd.read_parquet(ee_d_run[0] / "train_metrics.parquet")
    monkeypatch.setenv(FAULT_EPOCH_VARIABLE, "4")
    config = tiny_config("train.distillation=dynamic")
    with pytest.raises(RuntimeError, match="injected fault"):
        train_supernet(config, tmp_path)
    partial = pd.read_parquet(tmp_path / "train_metrics.parquet")
    assert partial["epoch"].tolist() == [1, 2, 3, 4]  # the failed 5th epoch left nothing behind
    metrics = train_supernet(config, tmp_path, resume=True)
    resumed = pd.read_parquet(tmp_path / "train_metrics.parquet")
    pd.testing.assert_frame_equal(resumed[COMPARED], reference[COMPARED])
    assert metrics["loss"] == pytest.approx(float(reference["loss"].iloc[-1]))
    # resuming with different settings is refused with one clear line
    with pytest.raises(CheckpointError, match="different 'seed'"):
        train_supernet(tiny_config("train.distillation=dynamic", "run.seed=1"), tmp_path, resume=True)


def test_ee_dp_with_cream_runs_every_phase_in_process(tmp_path):
    config = tiny_config("supernet.parallel_blocks=true", "train.distillation=cream",
                         "train.cream.warmup_epochs=0", "train.cream.board_size=3",
                         "train.cream.meta_update_interval=1", "train.cream.held_out_images=12")
    train_supernet(config, tmp_path)
    history = pd.read_parquet(tmp_path / "train_metrics.parquet")
    assert history["phase"].tolist() == ["full", "kernel", "level", "level"] + EE_D_PHASES[2:]
    assert history["board_size"].iloc[-1] == 3
    assert all(math.isfinite(v) for v in history["loss"])
    checkpoint = sorted((tmp_path / "train").glob("*/local_checkpoint_*"))[-1]
    state = load_state(checkpoint, {})
    assert len(state.board["entries"]) == 3 and state.meta is not None


def test_two_workers_survive_a_killed_worker(ray_local, tmp_path, monkeypatch):
    monkeypatch.setenv(FAULT_EPOCH_VARIABLE, "3")
    config = tiny_config("train.num_workers=2", "train.distillation=fixed",
                         "train.max_failures=1", "train.eval_subnets=0", "train.calibration_images=16")
    metrics = train_supernet(config, tmp_path)
    assert metrics["epoch"] == 10 and metrics["world_size"] == 2
    history = pd.read_parquet(tmp_path / "train_metrics.parquet")
    assert history["epoch"].tolist() == list(range(1, 11))
    assert history["phase"].tolist() == EE_D_PHASES
    assert set(history["teacher"].iloc[1:]) == {"full"}  # the fixed teacher never changes
    run = tmp_path / "train" / metrics["run_name"]
    assert (run / "fault_injected").is_file()  # the worker really died once
    latest = max((p for p in run.glob("checkpoint_*") if p.is_dir()), key=lambda p: p.name)
    assert (latest / STATE_FILE).is_file()
    state = load_state(latest, {})
    assert state.global_epoch == 10 and [row["epoch"] for row in state.history] == list(range(1, 11))


def test_job_rejects_bad_config_with_one_line(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "train_supernet.py"), "--set", "train.bogus=1", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    assert result.returncode == 2
    assert result.stderr.strip() == "error: config: unknown key 'train.bogus'"
