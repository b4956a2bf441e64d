"""Archive benchmark: ingest through the archive actor, and the cost of a full rewrite, at scale.

For each size N an archive of N synthetic rows is written as ``archive.parquet`` (as a long
search would have left it), the archive actor is started on it (it loads the file), and
``batches`` batches of ``batch_rows`` new rows are upserted one after another, each persisted
before it is acknowledged. Reported per size: ingest rows/s (a batch's rows over the median
batch's time, and over all batches' time), the actor's load time, and the cost
of one full rewrite of the archive (a compaction: ranks recomputed, ``archive.parquet`` rewritten
atomically), which is what every batch cost before the append log.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.atomic import write_parquet_atomic
from pipeline.evaluate.interface import Objective
from pipeline.schema import LATENCY_PREFIX

OBJECTIVES = (Objective("top1", "max"), Objective(f"{LATENCY_PREFIX}local_one_thread", "min"))


@dataclass(frozen=True)
class ArchiveFigures:
    rows: int
    ingest_rows_per_s: float  # a batch's rows over the median batch's time (robust to a stray pause)
    overall_rows_per_s: float  # all rows over all batches' time
    load_s: float
    rewrite_s: float


def synthetic_rows(count: int, start: int, seed: int) -> pd.DataFrame:
    """``count`` archive rows with distinct ids from ``start`` (vectorised: a million in a second)."""
    rng = np.random.default_rng(seed)
    ids = np.char.add("arch", np.arange(start, start + count).astype(str))
    return pd.DataFrame({
        "run_id": "bench", "arch_id": ids, "arch": '{"kernels":[3,5,7,3]}', "space": "ofav2",
        "iteration": np.arange(count) // 100, "source": "search", "top1": rng.uniform(50, 90, count),
        "params_m": rng.uniform(0.1, 3, count), "macs_m": rng.uniform(5, 300, count),
        OBJECTIVES[1].name: rng.uniform(0.5, 5, count), "status": "ok", "error": "",
        "evaluated_at": "2026-01-01T00:00:00+00:00",
    })


def archive_at_scale(work: Path, rows: int, batches: int, batch_rows: int, seed: int = 0) -> ArchiveFigures:
    """Ingest ``batches`` x ``batch_rows`` rows into an archive actor already holding ``rows`` rows."""
    import ray

    from pipeline.search.archive import start_archive

    work.mkdir(parents=True, exist_ok=True)
    write_parquet_atomic(synthetic_rows(rows, 0, seed), work / "archive.parquet", {})
    new = [synthetic_rows(batch_rows, rows + i * batch_rows, seed + 1 + i).to_dict("records") for i in range(batches)]
    start = time.perf_counter()
    archive = start_archive(work, "bench", "ofav2", list(OBJECTIVES), name=f"bench-archive-{rows}")
    load_s = time.perf_counter() - start
    try:
        batch_s = []
        for batch in new:  # one at a time, as the evaluator's stream does: each waits for its ack
            start = time.perf_counter()
            ray.get(archive.upsert.remote(batch))
            batch_s.append(time.perf_counter() - start)
        assert ray.get(archive.size.remote()) == rows + batches * batch_rows
        start = time.perf_counter()
        ray.get(archive.close.remote())
        rewrite_s = time.perf_counter() - start
    finally:
        ray.kill(archive, no_restart=True)
    return ArchiveFigures(rows, batch_rows / statistics.median(batch_s), batches * batch_rows / sum(batch_s),
                          load_s, rewrite_s)
