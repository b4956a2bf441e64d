"""The OFA-import benchmark job runs its exactness and import-cost parts on tiny settings.

The warm-start part trains three supernets; the same training path (``train.init_from`` through the
training job) is run by ``tests/test_ofa_jobs.py``.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]


def test_bench_ofa_import_quick(tmp_path):
    result = subprocess.run(
        [sys.executable, str(REPO / "jobs" / "bench_ofa_import.py"), "--quick", "--parts", "exactness,import",
         "--out", str(tmp_path)], capture_output=True, text=True, timeout=600, cwd=REPO,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    table = pd.read_parquet(tmp_path / "bench_ofa_import.parquet")
    exact = table[table["kind"] == "exactness"]
    assert sorted(exact["width_mult"]) == [1.0, 1.2]
    assert (exact[["worst_rel_supernet", "worst_rel_extracted"]] < 1e-5).all().all()
    cost = table[table["kind"] == "import"].iloc[0]
    assert cost["num_classes"] == 1000 and cost["import_s"] > 0 and cost["peak_mib"] > 100
    assert "worst relative logit difference" in result.stdout and "peak memory" in result.stdout
    assert not list(tmp_path.glob("tmp*"))


def test_bench_ofa_import_rejects_an_unknown_part(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "jobs" / "bench_ofa_import.py"), "--parts", "speed",
                             "--out", str(tmp_path)], capture_output=True, text=True, timeout=120, cwd=REPO)
    assert result.returncode == 2 and result.stderr.strip().startswith("error: --parts: unknown part(s)")
