"""The OFAv2 benchmark job runs end to end on tiny settings and writes its table."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd

REPO = Path(__file__).resolve().parents[1]


def test_bench_ofav2_quick(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "bench_ofav2.py"), "--quick", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "ratio" in result.stdout and "EE_DP + dynamic teacher" in result.stdout
    table = pd.read_parquet(tmp_path / "bench_ofav2.parquet")
    ablation = table[table["kind"] == "ablation"]
    assert set(ablation["variant"]) == {"baseline (SE_B, fixed teacher)", "baseline + dynamic teacher",
                                        "EE_D + dynamic teacher", "EE_DP + dynamic teacher"}
    phases = ablation.groupby("variant")["phase"].apply(list).to_dict()
    assert phases["baseline (SE_B, fixed teacher)"] == ["full", "kernel", "depth", "expand"]
    assert phases["EE_DP + dynamic teacher"] == ["full", "kernel", "level", "height", "depth", "expand"]
    assert ablation["top1_best"].between(0, 100).all()
    speed = table[table["kind"] == "throughput"]
    assert sorted(speed["workers"].dropna().astype(int)) == [1, 2, 2]
    assert (speed["images_per_s"].dropna() > 0).all() and speed["ratio_2w_1w"].dropna().iloc[0] > 0
    assert not list(tmp_path.glob("tmp*"))  # the training runs were cleaned up
