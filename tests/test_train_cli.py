"""jobs/train_supernet.py as a user runs it: an EE_DP supernet on 2 gloo workers, a driver that
dies mid-run, and ``--resume`` continuing from the last completed epoch."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd

from pipeline.train.loop import FAULT_EPOCH_VARIABLE

REPO = Path(__file__).resolve().parents[1]
SETTINGS = [
    "run.name=cli", "ray.num_cpus=2", "data.dataset=synthetic", "data.synthetic_images=96",
    "data.synthetic_classes=4", "data.batch_size=16", "supernet.parallel_blocks=true",
    "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16,20]", "train.epochs_scale=0.005",
    "train.steps_per_epoch=2", "train.eval_subnets=0", "train.calibration_images=16", "train.eval_images=16",
    "train.num_workers=2", "train.threads_per_worker=1", "train.distillation=dynamic",
]
EE_DP_PHASES = ["full", "kernel", "level", "level"] + ["height"] * 4 + ["depth"] * 2 + ["expand"] * 2


def _train(out: Path, *extra: str, fail_at_epoch: int) -> subprocess.CompletedProcess:
    args = [a for s in SETTINGS for a in ("--set", s)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {FAULT_EPOCH_VARIABLE: str(fail_at_epoch)}
    return subprocess.run([sys.executable, "jobs/train_supernet.py", *args, "--out", str(out), *extra],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=600)


def test_two_worker_ee_dp_run_dies_and_resumes_from_its_last_epoch(tmp_path):
    out = tmp_path / "run"
    died = _train(out, "--set", "train.max_failures=0", fail_at_epoch=5)
    assert died.returncode != 0, died.stdout[-2000:]
    partial = pd.read_parquet(out / "train_metrics.parquet")
    assert partial["epoch"].tolist() == [1, 2, 3, 4, 5]  # rank 0 published epoch 5 before the other rank died
    resumed = _train(out, "--resume", "--set", "train.max_failures=0", fail_at_epoch=5)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    history = pd.read_parquet(out / "train_metrics.parquet")
    assert history["epoch"].tolist() == list(range(1, len(EE_DP_PHASES) + 1))
    assert history["phase"].tolist() == EE_DP_PHASES and (history["world_size"] == 2).all()
    kept = ["epoch", "phase", "loss", "lr"]
    pd.testing.assert_frame_equal(history[kept].iloc[:4], partial[kept].iloc[:4])  # not retrained
    assert "epoch 1/" not in resumed.stdout + resumed.stderr  # it continued rather than starting over


def test_ctrl_c_during_training_says_interrupted(tmp_path):
    """Ctrl-C while Ray Train runs (Ray Train's own SIGINT handler aborts the run): one line, exit 130."""
    import signal
    import time

    args = [a for s in SETTINGS + ["train.steps_per_epoch=40"] for a in ("--set", s)]
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"} | {"PYTHONUNBUFFERED": "1"}
    job = subprocess.Popen([sys.executable, "jobs/train_supernet.py", *args, "--out", str(tmp_path / "run")],
                           cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 300
        for line in job.stdout:  # type: ignore[union-attr]
            if "epoch 1/" in line or time.monotonic() > deadline:
                break
        assert "epoch 1/" in line, "training never printed its first epoch"
        job.send_signal(signal.SIGINT)
        stdout, stderr = job.communicate(timeout=120)
    finally:
        if job.poll() is None:
            job.kill()
    assert job.returncode == 130, stderr[-2000:]
    assert stderr.strip().splitlines()[-1] == "interrupted" and "Traceback" not in stderr
