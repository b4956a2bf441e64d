"""Results API: every stage's Parquet output as pandas DataFrames, and run comparisons.

All functions take a run directory. Objective directions come from the files' own metadata, so
the hypervolume curve and comparisons need no configuration::

    from pipeline import results
    front = results.front("runs/demo")
    front.plot.scatter(x="params_m", y="top1")
    results.compare_runs(["runs/a", "runs/b"])
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.errors import ResultsError
from pipeline.evaluate.interface import Objective
from pipeline.run_dir import RunDir
from pipeline.schema import read_metadata, read_parquet
from pipeline.search.archive_store import load_archive_frame
from pipeline.search.pareto import normalized_hypervolume, pareto_mask, to_minimization


def archive(run_dir: str | Path) -> pd.DataFrame:
    """Every truly evaluated architecture of the run (``archive.parquet`` plus its not yet compacted log)."""
    return load_archive_frame(run_dir)[0]


def front(run_dir: str | Path) -> pd.DataFrame:
    """The final non-dominated rows (``front.parquet``)."""
    return read_parquet(RunDir(run_dir).front)


def high_tradeoff(run_dir: str | Path) -> pd.DataFrame:
    """The final front's high-tradeoff points (``is_high_tradeoff`` rows of ``front.parquet``)."""
    frame = front(run_dir)
    if "is_high_tradeoff" not in frame:
        raise ResultsError(f"{RunDir(run_dir).front} has no is_high_tradeoff column (written by an older version)")
    return frame[frame["is_high_tradeoff"].astype(bool)]


def fronts(run_dir: str | Path) -> pd.DataFrame:
    """The front after every search iteration, stacked, with a ``front_iteration`` column."""
    paths = sorted(RunDir(run_dir).fronts_dir.glob("iter_*.parquet"))
    if not paths:
        raise ResultsError(f"no per-iteration fronts in {RunDir(run_dir).fronts_dir}")
    frames = []
    for path in paths:
        frame = read_parquet(path)
        if "front_iteration" not in frame:
            frame["front_iteration"] = int(path.stem.split("_")[1])
        frames.append(frame)
    return pd.concat(frames, ignore_index=True)


def generated(run_dir: str | Path) -> pd.DataFrame:
    """One generated architecture per budget (``generated.parquet``)."""
    return read_parquet(RunDir(run_dir).generated)


def finetuned(run_dir: str | Path) -> pd.DataFrame:
    """Fine-tuned subnets with their test accuracy and ONNX paths (``finetuned.parquet``)."""
    return read_parquet(RunDir(run_dir).finetuned)


def int8_profiles(finetuned_rows: pd.DataFrame) -> list[str]:
    """The int8 hardware profiles whose deploy-bundle figures ``finetuned_rows`` hold."""
    prefix = "int8_agreement@"
    return [c[len(prefix):] for c in finetuned_rows.columns if c.startswith(prefix)]


def precision_comparison(run_dir: str | Path) -> pd.DataFrame:
    """fp32 against INT8 per fine-tuned subnet and int8 profile (empty without int8 profiles).

    One row per (subnet, profile): ``fp32_top1`` / ``int8_top1`` (ONNX Runtime on the test split),
    ``top1_drop`` (fp32 - INT8, points), ``agreement`` (percent of images with the same class),
    ``fp32_ms`` / ``int8_ms`` (both files timed under the profile's settings) and ``int8_ratio``
    (INT8 / fp32 latency, below 1 when INT8 is faster)."""
    frame = finetuned(run_dir)
    if "status" in frame:
        frame = frame[frame["status"] == "ok"]
    rows = []
    for profile in int8_profiles(frame):
        for _, row in frame.iterrows():
            fp32_ms, int8_ms = row.get(f"latency_fp32_ms@{profile}"), row.get(f"latency_ms@{profile}")
            rows.append({
                "arch_id": row["arch_id"], "profile": profile, "fp32_top1": row.get("test_top1_fp32"),
                "int8_top1": row.get(f"int8_top1@{profile}"),
                "top1_drop": row.get("test_top1_fp32") - row.get(f"int8_top1@{profile}"),
                "agreement": row.get(f"int8_agreement@{profile}"), "fp32_ms": fp32_ms, "int8_ms": int8_ms,
                "int8_ratio": int8_ms / fp32_ms if fp32_ms and fp32_ms > 0 else float("nan"),
                "params_m": row.get("params_m"),
            })
    return pd.DataFrame(rows, columns=["arch_id", "profile", "fp32_top1", "int8_top1", "top1_drop", "agreement",
                                       "fp32_ms", "int8_ms", "int8_ratio", "params_m"])


def train_metrics(run_dir: str | Path) -> pd.DataFrame:
    """Per-epoch supernet training metrics (``train_metrics.parquet``)."""
    return read_parquet(RunDir(run_dir).train_metrics)


def objectives_of(run_dir: str | Path) -> list[Objective]:
    """The search objectives recorded in ``archive.parquet``'s metadata."""
    stored = read_metadata(RunDir(run_dir).archive).get("objectives")
    if not stored:
        raise ResultsError(f"{RunDir(run_dir).archive} records no objectives")
    return [Objective(item["name"], item["direction"]) for item in stored]


def _usable(frame: pd.DataFrame, objectives: Sequence[Objective]) -> pd.DataFrame:
    names = [o.name for o in objectives]
    ok = frame["status"].eq("ok") if "status" in frame else pd.Series(True, index=frame.index)
    return frame[ok].dropna(subset=names)


def hypervolume_curve(
    run_dir: str | Path,
    objectives: Sequence[Objective] | None = None,
    bounds: tuple[np.ndarray, np.ndarray] | None = None,
) -> pd.DataFrame:
    """Normalised hypervolume of the archive after each iteration, against evaluations used.

    Objectives are normalised by ``bounds`` (ideal, nadir in minimisation form), by default the
    ideal and nadir of the run's own non-dominated set; the reference point is 1.1 per axis.
    """
    objectives = list(objectives or objectives_of(run_dir))
    rows = _usable(archive(run_dir), objectives)
    if rows.empty:
        raise ResultsError(f"{run_dir}: archive has no successfully evaluated rows")
    minimized = to_minimization(rows[[o.name for o in objectives]].to_numpy(float), objectives)
    if bounds is None:
        best = minimized[pareto_mask(minimized)]
        bounds = (best.min(axis=0), best.max(axis=0))
    ideal, nadir = bounds
    iterations = rows["iteration"].to_numpy()
    curve = []
    for iteration in np.unique(iterations):
        upto = iterations <= iteration
        points = minimized[upto]
        curve.append(
            {
                "iteration": int(iteration),
                "evaluations": int(upto.sum()),
                "hypervolume": normalized_hypervolume(points[pareto_mask(points)], ideal, nadir),
                "front_size": int(pareto_mask(points).sum()),
            }
        )
    return pd.DataFrame(curve)


def compare_runs(run_dirs: Sequence[str | Path]) -> pd.DataFrame:
    """One row per run: evaluations, front size, best top-1 and final hypervolume.

    Hypervolumes share one normalisation (the ideal and nadir of all runs' pooled front), so they
    are comparable across the runs; the runs must have the same objectives.
    """
    objectives = objectives_of(run_dirs[0])
    names = [o.name for o in objectives]
    frames = {str(d): _usable(archive(d), objectives) for d in run_dirs}
    for run_dir in run_dirs[1:]:
        if [o.name for o in objectives_of(run_dir)] != names:
            raise ResultsError(f"{run_dir} has objectives different from {run_dirs[0]}")
    pooled = to_minimization(pd.concat(frames.values())[names].to_numpy(float), objectives)
    best = pooled[pareto_mask(pooled)]
    bounds = (best.min(axis=0), best.max(axis=0))
    summary = []
    for run_dir, rows in frames.items():
        curve = hypervolume_curve(run_dir, objectives, bounds)
        summary.append(
            {
                "run_dir": run_dir,
                "run_id": rows["run_id"].iloc[0] if len(rows) else None,
                "evaluations": len(rows),
                "front_size": int(curve["front_size"].iloc[-1]),
                "best_top1": float(rows["top1"].max()) if "top1" in rows else np.nan,
                "hypervolume": float(curve["hypervolume"].iloc[-1]),
            }
        )
    return pd.DataFrame(summary)
