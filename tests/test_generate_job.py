"""jobs/generate.py: documented columns, evaluation count, one-line errors for bad budgets."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import JOB_PYTHONPATH

from pipeline.schema import read_metadata, read_parquet

REPO = Path(__file__).resolve().parents[1]
FAST = [
    "--set", "generate.training_steps=40", "--set", "generate.round_steps=5", "--set", "generate.evaluator_steps=100",
    "--set", "generate.evaluator_round_steps=20", "--set", "generate.samples_per_budget=32",
    "--set", "generate.refit_every=3",
]
COLUMNS = ["budget", "budget_metric", "arch", "arch_id", "predicted_top1", "top1", "params_m", "flops_m", "meets_budget"]


def run(*args: str) -> subprocess.CompletedProcess:
    """The job as a user runs it: a fresh process."""
    return subprocess.run([sys.executable, "jobs/generate.py", *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin", **JOB_PYTHONPATH})


def run_in_process(capsys, *args: str) -> tuple[int, str]:
    """The job's main under ``run_job`` in this process (no re-import); returns (exit status, stderr)."""
    from pipeline.runtime import run_job

    spec = importlib.util.spec_from_file_location("generate_job", REPO / "jobs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        run_job(lambda: module.main(list(args)))
    return int(exit_info.value.code or 0), capsys.readouterr().err


def test_generate_writes_the_documented_columns_within_the_evaluation_budget(tmp_path, bench_table_path):
    """The per-budget search mode (verified answers); the default generate mode is in test_pnag_generator.py."""
    out = tmp_path / "gen"
    done = run("--space", "natsbench", "--table", str(bench_table_path), "--evals", "30", "--budgets", "0.2,0.6",
               "--budget-metric", "params_m", "--seed", "1", "--out", str(out), "--mode", "search", *FAST)
    assert done.returncode == 0, done.stderr
    frame = read_parquet(out / "generated.parquet")
    assert all(c in frame.columns for c in COLUMNS)
    assert frame["budget"].tolist() == [0.2, 0.6]
    assert (frame["source"] == "generator").all() and (frame["budget_metric"] == "params_m").all()
    assert frame["meets_budget"].all() and (frame["params_m"] <= frame["budget"]).all()
    assert frame["top1"].notna().all()  # verified: true accuracy
    assert (frame["evaluations"] <= 30).all()
    assert read_metadata(out / "generated.parquet")["evaluations"] <= 30
    assert (frame["mode"] == "search").all()


@pytest.mark.parametrize(
    "budgets, metric, needle",
    [("", "params_m", "empty"), ("-0.2", "params_m", "positive"), ("0.01", "params_m", "below the smallest"),
     ("0.5", "latency_ms@nowhere", "unknown budget metric"), ("0.5,abc", "params_m", "not a number")],
)
def test_bad_budgets_exit_non_zero_with_one_line(tmp_path, capsys, bench_table_path, budgets, metric, needle):
    out = tmp_path / "bad"
    status, stderr = run_in_process(capsys, "--space", "natsbench", "--table", str(bench_table_path), "--evals", "30",
                                    "--budgets", budgets, "--budget-metric", metric, "--out", str(out))
    assert status != 0
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and needle in lines[0], stderr
    assert not (out / "generated.parquet").exists()


def test_generate_from_a_finished_ofav2_run(tmp_path, capsys):
    """--from-run: learns from archive.parquet, exact costs from the run's supernet, no evaluations."""
    import numpy as np

    from pipeline.evaluate.interface import EvaluationResult, Objective
    from pipeline.schema import result_row
    from pipeline.search.archive_store import ArchiveStore
    from pipeline.space.ofav2 import OFAv2Space
    from pipeline.supernet.checkpoint import save_supernet
    from pipeline.supernet.costs import ArchCostCounter
    from pipeline.supernet.network import OFAv2Supernet

    space = OFAv2Space(stage_widths=[8, 8, 16, 16, 24], resolutions=[32])
    net = OFAv2Supernet(space, 10, seed=0)
    save_supernet(tmp_path / "supernet" / "supernet.pt", net)
    counter = ArchCostCounter(net)
    rng = np.random.default_rng(0)
    store = ArchiveStore(tmp_path, "run", "ofav2", [Objective("top1", "max"), Objective("params_m", "min")],
                         config={"supernet": space.options()})
    rows = []
    for _ in range(12):
        arch = space.sample_initial(rng)
        costs = counter(arch)
        top1 = 50 + 10 * np.log(costs["params_m"] * 100) + rng.normal(0, 0.5)  # larger nets are better here
        result = EvaluationResult(arch, space.arch_id(arch), {"top1": float(top1), **costs})
        rows.append(result_row(result, run_id="run", space="ofav2", arch_text=space.to_text(arch), iteration=0,
                               source="init"))
    store.upsert(rows)
    smallest, largest = counter(space.smallest())["params_m"], counter(space.largest())["params_m"]
    budgets = f"{(smallest * largest) ** 0.5:.4f},{largest * 0.8:.4f}"
    status, stderr = run_in_process(capsys, "--from-run", str(tmp_path), "--budgets", budgets, "--seed", "0", *FAST,
                                    "--set", "generate.evaluator_steps=50", "--set", "generate.training_steps=8",
                                    "--set", "generate.pool_size=200")
    assert status == 0, stderr
    frame = read_parquet(tmp_path / "generated.parquet")
    assert len(frame) == 2 and (frame["evaluations"] == 0).all()
    for text, params, budget, meets in frame[["arch", "params_m", "budget", "meets_budget"]].itertuples(index=False):
        arch = space.from_text(text)  # a valid member of the run's space
        assert params == counter(arch)["params_m"]  # exact cost, counted on the supernet
        assert meets == (params <= budget)
    assert frame["meets_budget"].all()
    status, stderr = run_in_process(capsys, "--from-run", str(tmp_path), "--budgets", f"{smallest / 2:.6f}", *FAST)
    assert status != 0 and "below the smallest" in stderr.strip().splitlines()[0]
    # the run's own config.yaml is used when no --config is given (here: a MACs budget metric)
    from pipeline.config import dump_config, load_config

    dump_config(load_config(None, ["generate.budget_metrics=[macs_m]"]), tmp_path / "config.yaml")
    macs = counter(space.largest())["macs_m"] * 0.8
    status, stderr = run_in_process(capsys, "--from-run", str(tmp_path), "--budgets", f"{macs:.4f}", "--seed", "0",
                                    *FAST, "--set", "generate.evaluator_steps=50", "--set", "generate.training_steps=8",
                                    "--set", "generate.pool_size=200")
    assert status == 0, stderr
    frame = read_parquet(tmp_path / "generated.parquet")
    assert list(frame["budget_metric"]) == ["macs_m"] and (frame["macs_m"] <= macs).all()
    status, stderr = run_in_process(capsys, "--from-run", str(tmp_path), "--budgets", f"{macs:.4f}", "--evals", "5")
    assert status != 0 and "--evals applies to" in stderr.strip().splitlines()[0]
