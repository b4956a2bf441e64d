"""jobs/report.py: regenerate a finished run's report page, and compare runs on one HTML page."""

from __future__ import annotations

import importlib.util
import re
import sys
from dataclasses import replace
from pathlib import Path

import pandas as pd
import pytest
from conftest import FAST as SHARED_FAST
from conftest import OBJECTIVES

from pipeline.errors import ConfigError
from pipeline.evaluate.table import TableEvaluator, load_table
from pipeline.search.driver import run_search

REPO = Path(__file__).resolve().parents[1]
FAST = replace(SHARED_FAST, max_evaluations=20, surrogates=("ridge",), surrogate_generations=3)


@pytest.fixture(scope="module")
def runs(bench_table_path, tmp_path_factory) -> list[Path]:
    table = load_table(bench_table_path)
    made = []
    for seed in (0, 1):
        run_dir = tmp_path_factory.mktemp(f"run{seed}")
        run_search(TableEvaluator(table), OBJECTIVES, replace(FAST), run_dir, seed=seed, run_id=f"r{seed}")
        made.append(run_dir)
    return made


def _report_main(monkeypatch, *argv: str) -> int:
    spec = importlib.util.spec_from_file_location("job_report", REPO / "jobs" / "report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    monkeypatch.setattr(sys, "argv", ["report.py", *argv])
    return module.main()


def _rows(page: str, table_id: str) -> int:
    table = re.search(rf'<table[^>]*id="{table_id}".*?</table>', page, re.S).group(0)
    return table.count("<tr>") - 1  # minus the header row


def test_report_regenerates_the_page_of_a_finished_run(runs, monkeypatch):
    assert _report_main(monkeypatch, "--out", str(runs[0])) == 0
    page = (runs[0] / "report.html").read_text()
    assert _rows(page, "front") == len(pd.read_parquet(runs[0] / "front.parquet"))
    assert "data:image/png;base64," in page and 'src="http' not in page and 'href="http' not in page  # no network


def test_compare_writes_one_sortable_row_per_run(runs, monkeypatch, tmp_path):
    assert _report_main(monkeypatch, "--compare", *map(str, runs), "--html", str(tmp_path / "c.html")) == 0
    page = (tmp_path / "c.html").read_text()
    assert _rows(page, "compare") == 2 and 'class="sortable"' in page and str(runs[1]) in page


def test_a_directory_without_an_archive_is_one_clear_error(monkeypatch, tmp_path):
    with pytest.raises(ConfigError, match="not a run directory"):
        _report_main(monkeypatch, "--compare", str(tmp_path), "--html", str(tmp_path / "c.html"))
    with pytest.raises(ConfigError, match="either --out"):
        _report_main(monkeypatch)
