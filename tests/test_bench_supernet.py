"""The supernet benchmark job runs end to end on tiny settings and writes its columns."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def test_bench_supernet_quick(tmp_path):
    result = subprocess.run(
        [sys.executable, "jobs/bench_supernet.py", "--out", str(tmp_path), "--quick", "--batch", "2",
         "--resolution", "24", "--threads", "1", "--random", "1", "--classes", "5",
         "--stage-widths", "8", "8", "16", "16", "24"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    frame = pd.read_parquet(tmp_path / "bench_supernet.parquet")
    assert list(frame.columns[:5]) == ["variant", "arch_id", "train_step_ratio", "inference_ratio", "max_abs_diff"]
    assert len(frame) == 6 and set(frame["variant"]) == {"SE_B", "EE_D"}
    assert (frame["train_step_ratio"] > 0).all() and (frame["max_abs_diff"] <= 1e-5).all()
    assert "median train_step_ratio" in result.stdout


def test_bench_supernet_bad_variant(tmp_path):
    result = subprocess.run(
        [sys.executable, "jobs/bench_supernet.py", "--out", str(tmp_path), "--variants", "XX"],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 2 and result.stderr.strip() == "error: unknown variant 'XX'; expected one of: SE_B, EE_D"
    assert not (tmp_path / "bench_supernet.parquet").exists()
