"""The search job's command-line contract and the benchmark job (tiny settings)."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

from pipeline.errors import BudgetError, ConfigError, DataError

REPO = Path(__file__).resolve().parents[1]
FAST = ["--set", "search.surrogates=[ridge]", "--set", "search.surrogate_population=20",
        "--set", "search.surrogate_generations=3"]


def _run(*args: str, timeout: int = 300) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.run([sys.executable, *args], cwd=REPO, capture_output=True, text=True, timeout=timeout, env=env)


def _search(table: Path, out: Path, evals: int, *extra: str) -> subprocess.CompletedProcess:
    return _run("jobs/search.py", "--space", "natsbench", "--table", str(table), "--evals", str(evals),
                "--seed", "1", "--out", str(out), *FAST, *extra)


def _one_error_line(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode != 0
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), proc.stderr
    assert "Traceback" not in proc.stderr
    return lines[0]


def test_cli_writes_documented_columns_and_front(bench_table_path, tmp_path):
    proc = _search(bench_table_path, tmp_path / "run", 20)
    assert proc.returncode == 0, proc.stderr
    archive = pd.read_parquet(tmp_path / "run" / "archive.parquet")
    for column in ("arch", "arch_id", "top1", "params_m", "flops_m", "iteration", "source", "is_pareto"):
        assert column in archive.columns
    assert len(archive) == 20 and archive["arch"].str.startswith("|").all()
    table = pd.read_csv(bench_table_path).set_index("arch")
    assert (table.loc[archive["arch"], "accuracy"].to_numpy() == archive["top1"].to_numpy()).all()
    front = pd.read_parquet(tmp_path / "run" / "front.parquet")
    assert set(front["arch_id"]) == set(archive.loc[archive["is_pareto"], "arch_id"])
    for _, row in front.iterrows():  # nothing in the archive dominates a front row
        better = (archive["top1"] >= row["top1"]) & (archive["params_m"] <= row["params_m"])
        strictly = (archive["top1"] > row["top1"]) | (archive["params_m"] < row["params_m"])
        assert not (better & strictly).any()
    assert (tmp_path / "run" / "fronts" / "iter_000.parquet").is_file()
    again = _search(bench_table_path, tmp_path / "run", 20)
    assert "--resume" in _one_error_line(again)


def _job(name: str):
    spec = importlib.util.spec_from_file_location(f"job_{name}", REPO / "jobs" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _search_argv(table: Path, out: Path, evals: int) -> list[str]:
    return ["--space", "natsbench", "--table", str(table), "--evals", str(evals), "--seed", "1", "--out", str(out), *FAST]


def test_cli_missing_table_exits_with_one_line(tmp_path):
    line = _one_error_line(_search(tmp_path / "missing.csv", tmp_path / "run", 20))
    assert "does not exist" in line and not (tmp_path / "run").exists()


@pytest.mark.parametrize(
    "content, expected",
    [
        ("arch,accuracy,params_m,flops_m\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,abc,0.1,1\n", "not a finite"),
        ("arch,accuracy,params_m,flops_m\n|bogus~0|+|none~0|none~1|+|none~0|none~1|none~2|,90,0.1,1\n", "malformed"),
        ("arch,accuracy\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,90\n", "lacks column"),
    ],
)
def test_malformed_tables_are_one_data_error(tmp_path, content, expected):
    table = tmp_path / "table.csv"
    table.write_text(content)
    with pytest.raises(DataError, match=expected):
        _job("search").main(_search_argv(table, tmp_path / "run", 20))
    assert not (tmp_path / "run").exists()


def test_budget_below_initial_archive_and_ofav2_without_supernet(bench_table_path, tmp_path):
    search = _job("search")
    with pytest.raises(BudgetError, match="initial archive"):
        search.main(_search_argv(bench_table_path, tmp_path / "run", 5))
    assert not (tmp_path / "run").exists()
    with pytest.raises(ConfigError, match="supernet"):
        search.main(["--set", "search.space=ofav2", "--out", str(tmp_path / "sn")])
    with pytest.raises(ConfigError, match="flops"):
        search.main(_search_argv(bench_table_path, tmp_path / "obj", 20) + ["--set", "search.objectives=[top1:max, macs_m:min]"])


def test_bench_job_quick_runs(bench_table_path, tmp_path, capsys):
    assert _job("bench_search").main(["--table", str(bench_table_path), "--out", str(tmp_path), "--quick"]) == 0
    frame = pd.read_parquet(tmp_path / "bench_search.parquet")
    assert sorted(frame["method"]) == sorted(["natv2", "nsga2", "random", "optuna_tpe", "optuna_gp", "optuna_nsga2"])
    assert (frame["evaluations"] == 20).all() and frame["hv_ratio"].between(0, 1.0 + 1e-9).all()
    assert (frame["search_seconds"] >= 0).all() and (frame["search_seconds"] <= frame["seconds"]).all()
    assert (tmp_path / "hv_vs_evaluations.png").stat().st_size > 0
    assert "natv2" in capsys.readouterr().out


def test_derived_table_keeps_format_and_reranks(bench_table_path):
    from pipeline.bench.search import derive_table
    from pipeline.evaluate.table import load_table

    table = load_table(bench_table_path)
    derived = derive_table(table, 1)
    assert list(derived.columns) == list(table.columns)
    assert (derived[["arch", "params_m", "flops_m"]] == table[["arch", "params_m", "flops_m"]]).all().all()
    pd.testing.assert_frame_equal(derived, derive_table(table, 1))
    best = lambda t: set(t.loc[t.groupby(t["params_m"].round(4))["accuracy"].idxmax(), "arch"])  # noqa: E731
    assert len(best(table) & best(derived)) < len(best(table)) / 2


@pytest.mark.parametrize("method", ["random", "nsga2", "optuna_tpe", "optuna_nsga2"])
def test_one_run_to_the_largest_budget_scores_each_smaller_budget_as_its_own_run(bench_table_path, method):
    """A budget-agnostic method's first b evaluations are what a run at budget b evaluates, so the
    shared run's row at b equals a separate run's: same HV ratio and evaluation count."""
    from functools import partial

    from pipeline.bench.search import run_method, true_front
    from pipeline.evaluate.table import TableEvaluator, load_table

    table = load_table(bench_table_path)
    make, front = partial(TableEvaluator, table), true_front(table)
    shared = run_method(make, front, method, [12, 40], seed=3)
    alone = run_method(make, front, method, 12, seed=3)[0]
    assert [row["budget"] for row in shared] == [12, 40]
    assert shared[0]["hv_ratio"] == alone["hv_ratio"] and shared[0]["evaluations"] == alone["evaluations"] == 12
    assert shared[1]["evaluations"] == 40 and shared[1]["hv_ratio"] >= shared[0]["hv_ratio"]
    assert 0 <= shared[0]["search_seconds"] <= shared[0]["seconds"] <= shared[1]["seconds"]


def test_a_budget_planning_method_refuses_to_share_a_run(bench_table_path):
    from functools import partial

    from pipeline.bench.search import run_method, true_front
    from pipeline.evaluate.table import TableEvaluator, load_table

    table = load_table(bench_table_path)
    with pytest.raises(ValueError, match="once per budget"):
        run_method(partial(TableEvaluator, table), true_front(table), "natv2", [30, 60], seed=0)
