"""jobs/generate.py: documented columns, evaluation count, one-line errors for bad budgets."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.search.records import read_metadata, read_parquet

REPO = Path(__file__).resolve().parents[1]
FAST = [
    "--set", "generate.training_steps=40", "--set", "generate.round_steps=5", "--set", "generate.evaluator_steps=100",
    "--set", "generate.evaluator_round_steps=20", "--set", "generate.samples_per_budget=32",
    "--set", "generate.refit_every=3",
]
COLUMNS = ["budget", "budget_metric", "arch", "arch_id", "predicted_top1", "top1", "params_m", "flops_m", "meets_budget"]


def run(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "jobs/generate.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})


def test_generate_writes_the_documented_columns_within_the_evaluation_budget(tmp_path, bench_table_path):
    out = tmp_path / "gen"
    done = run("--space", "natsbench", "--table", str(bench_table_path), "--evals", "30", "--budgets", "0.2,0.6",
               "--budget-metric", "params_m", "--seed", "1", "--out", str(out), *FAST)
    assert done.returncode == 0, done.stderr
    frame = read_parquet(out / "generated.parquet")
    assert all(c in frame.columns for c in COLUMNS)
    assert frame["budget"].tolist() == [0.2, 0.6]
    assert (frame["source"] == "generator").all() and (frame["budget_metric"] == "params_m").all()
    assert frame["meets_budget"].all() and (frame["params_m"] <= frame["budget"]).all()
    assert frame["top1"].notna().all()  # verified: true accuracy
    assert (frame["evaluations"] <= 30).all()
    assert read_metadata(out / "generated.parquet")["evaluations"] <= 30


@pytest.mark.parametrize(
    "budgets, metric, needle",
    [("", "params_m", "empty"), ("-0.2", "params_m", "positive"), ("0.01", "params_m", "below the smallest"),
     ("0.5", "latency_ms@nowhere", "unknown budget metric"), ("0.5,abc", "params_m", "not a number")],
)
def test_bad_budgets_exit_non_zero_with_one_line(tmp_path, bench_table_path, budgets, metric, needle):
    out = tmp_path / "bad"
    done = run("--space", "natsbench", "--table", str(bench_table_path), "--evals", "30", "--budgets", budgets,
               "--budget-metric", metric, "--out", str(out))
    assert done.returncode != 0
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], done.stderr
    assert not (out / "generated.parquet").exists()
