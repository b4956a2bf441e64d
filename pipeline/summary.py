"""The few lines every job ends with: where the run is, its front's best rows, the files written."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pandas as pd

from pipeline.run_dir import RunDir
from pipeline.schema import LATENCY_PREFIX, deployed_top1_columns

#: the result files a summary lists when they exist, in the order the stages write them
RESULT_FILES = ("config.yaml", "supernet/supernet.pt", "train_metrics.parquet", "archive.parquet",
                "front.parquet", "generated.parquet", "finetuned.parquet", "report.html")


def best_rows(front: pd.DataFrame, count: int = 3, objectives: Sequence[str] = ()) -> list[str]:
    """The ``count`` rows of highest top-1, each as ``top-1 .. params .. latency ..``; the latency
    shown is the searched one (in ``objectives``) when there is one."""
    latencies = [c for c in front.columns if c.startswith(LATENCY_PREFIX)]
    latency = next((c for c in latencies if c in objectives), latencies[0] if latencies else None)
    deployed = [c for c in deployed_top1_columns(front.columns) if c in objectives]
    rows = front.sort_values("top1", ascending=False).head(count) if "top1" in front else front.head(count)
    lines = []
    for _, row in rows.iterrows():
        parts = [f"top-1 {row['top1']:.2f}%" if "top1" in row else "",
                 *(f"top-1 {row[c]:.2f}% ({c.split('@', 1)[1]})" for c in deployed),
                 f"params {row['params_m']:.3f} M" if "params_m" in row else "",
                 f"latency {row[latency]:.2f} ms ({latency.split('@', 1)[1]})" if latency else ""]
        lines.append("    " + ", ".join(p for p in parts if p) + f"  [{row.get('arch_id', '')}]")
    return lines


def _objectives(run: RunDir) -> list[str]:
    from pipeline.results import objectives_of

    try:
        return [o.name for o in objectives_of(run.root)]
    except Exception:  # noqa: BLE001 - no archive metadata: any latency column will do
        return []


def summary_lines(run_dir: str | Path) -> list[str]:
    """The closing summary of the run in ``run_dir``, from whatever it holds so far."""
    run = RunDir(Path(run_dir))
    lines = [f"summary: run directory {run.root}"]
    if run.front.is_file():
        try:
            front = pd.read_parquet(run.front)
        except Exception:  # noqa: BLE001 - a summary never fails the job it closes
            front = None
        if front is not None:
            lines.append(f"  front: {len(front)} architecture(s); best by top-1:")
            lines += best_rows(front, objectives=_objectives(run))
    written = [name for name in RESULT_FILES if (run.root / name).is_file()]
    models = sorted(run.models_dir.glob("*.onnx")) if run.models_dir.is_dir() else []
    if models:
        written.append(f"models/ ({len(models)} ONNX file(s))")
    logs = sorted(p.name for p in run.logs_dir.glob("*.log")) if run.logs_dir.is_dir() else []
    written += [f"logs/{name}" for name in logs]
    if written:
        lines.append("  files: " + ", ".join(written))
    return lines
