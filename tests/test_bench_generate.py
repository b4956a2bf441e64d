"""jobs/bench_generate.py runs end to end with tiny settings and writes its Parquet."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from conftest import JOB_PYTHONPATH

from pipeline.schema import read_parquet

REPO = Path(__file__).resolve().parents[1]


def test_bench_generate_quick(tmp_path, bench_table_path):
    done = subprocess.run(
        [sys.executable, "jobs/bench_generate.py", "--table", str(bench_table_path), "--out", str(tmp_path),
         "--quick", "--seeds", "1", "--methods", "generate,random", "--workers", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", **JOB_PYTHONPATH},
    )
    assert done.returncode == 0, done.stderr
    frame = read_parquet(tmp_path / "bench_generate.parquet")
    assert set(frame["method"]) == {"generate", "random"} and len(frame) == 60  # 30 budgets never given to a fit
    assert (frame["evaluations"] <= 40).all()
    assert (frame.loc[frame["method"] == "generate", "evaluations_for_budgets"] == 0).all()
    assert (tmp_path / "generators" / "seed_0" / "manifest.json").is_file()
    assert "one_budget_s" in done.stdout
    assert (frame["regret"] >= -1e-9).all()  # nothing beats the table's best under the budget
    assert "mean_regret" in read_parquet(tmp_path / "bench_generate_summary.parquet").columns
    assert "generate" in done.stdout


def test_bench_generate_on_a_derived_table(tmp_path, bench_table_path):
    done = subprocess.run(
        [sys.executable, "jobs/bench_generate.py", "--table", str(bench_table_path), "--out", str(tmp_path),
         "--quick", "--seeds", "1", "--methods", "random", "--workers", "1", "--derive", "1"],
        cwd=REPO, capture_output=True, text=True, timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", **JOB_PYTHONPATH},
    )
    assert done.returncode == 0, done.stderr
    frame = read_parquet(tmp_path / "bench_generate.parquet")
    assert len(frame) == 30 and (frame["regret"] >= -1e-9).all()  # regret against the derived table's best
    assert "derived with seed 1" in done.stdout
