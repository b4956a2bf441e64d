"""The evaluation benchmark job runs end to end at tiny settings and writes its table."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
TARGETED = ["eval_scaling", "archive_ingest_rows_per_s@1k", "latency_cv_median",
            "latency_pred_within10", "dispatch_overhead_ms"]
LATENCY = ["latency_cv_median", "latency_pred_within10", "latency_pred_mape", "latency_pred_within10_demo"]


def test_bench_eval_quick_writes_every_metric(tmp_path):
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    done = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "bench_eval.py"), "--out", str(tmp_path), "--quick"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=600,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_parquet(tmp_path / "bench_eval.parquet").set_index("metric")
    assert set(TARGETED + LATENCY) <= set(table.index)
    assert table.loc[TARGETED, "target"].notna().all() and (table.loc[TARGETED, "direction"] != "info").all()
    assert table.loc[LATENCY, "latency_median_ms"].gt(0).all()  # every latency figure says what it measured
    assert table.loc[[m for m in table.index if m.startswith("profile_")], "value"].notna().all()
    assert table["value"].notna().all() and (table.loc[["eval_scaling", "archive_ingest_rows_per_s@1k",
                                                         "dispatch_overhead_ms"], "value"] > 0).all()
    assert table["load_avg_1m"].notna().all() and table["date"].notna().all()
    cluster = table.loc["cluster_scaling@2nodes"]
    assert cluster["value"] > 0 and "on 2 node(s)" in cluster["detail"]  # one evaluator per simulated node
    assert "dispatch_overhead_ms" in done.stdout and "latency_median_ms" in done.stdout
    assert [p.name for p in tmp_path.iterdir()] == ["bench_eval.parquet"]  # the work folder is gone


@pytest.mark.parametrize("arguments, message", [
    (["--set", "evaluate.nonsense=1"], "error: config: unknown key 'evaluate.nonsense'"),
    (["--parts", "scaling,latencyy"],
     "error: --parts: unknown part(s) latencyy; choose from latency, scaling, archive, dispatch, cluster"),
], ids=["bad_override", "unknown_part"])
def test_bench_eval_bad_input_is_one_line_and_writes_nothing(tmp_path, arguments, message):
    done = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "bench_eval.py"), "--out", str(tmp_path), "--quick", *arguments],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 2
    assert done.stderr.strip() == message
    assert not (tmp_path / "bench_eval.parquet").exists()
