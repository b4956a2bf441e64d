"""Generation-quality benchmark on a NATS-Bench-format table (DESIGN.md, "Benchmarks").

For budgets on ``params_m``, a method's regret at a budget is the best accuracy in the whole table
under that budget minus the TRUE accuracy of the architecture the method returns for it. A budget
the returned architecture does not meet counts as not met, and its regret is taken against the
table's smallest architecture (the network a user would fall back to), so it is never hidden.

Methods, each with the same number of true evaluations per seed:

- ``pnag``: ``generate_with_evaluator`` with the given settings (training data + verification);
- ``random``: distinct uniform samples, then the most accurate evaluated one under each budget;
- ``natv2``: one NATv2 run (``pipeline.bench.search.run_natv2``, its defaults), then the most
  accurate architecture of its archive under each budget.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace

import numpy as np
import pandas as pd

from pipeline.evaluate.table import TableEvaluator
from pipeline.generate.engine import PNAGSettings
from pipeline.generate.runs import generate_with_evaluator

BUDGETS: tuple[float, ...] = (0.1, 0.15, 0.2, 0.3, 0.4, 0.5, 0.6, 0.8, 1.0, 1.2)
METHODS: tuple[str, ...] = ("pnag", "random", "natv2")


def best_under(table: pd.DataFrame, budgets: Sequence[float]) -> np.ndarray:
    """Best accuracy in the whole table under each budget (NaN where nothing fits)."""
    return np.array([table.loc[table["params_m"] <= b, "accuracy"].max() for b in budgets], dtype=float)


def pick_from_evaluated(metrics: Sequence[dict[str, float]], budgets: Sequence[float]) -> tuple[np.ndarray, np.ndarray]:
    """Per budget: (true accuracy, params_m) of the most accurate evaluated architecture meeting it."""
    top1 = np.array([m["top1"] for m in metrics], dtype=float)
    params = np.array([m["params_m"] for m in metrics], dtype=float)
    acc, cost = np.full(len(budgets), np.nan), np.full(len(budgets), np.nan)
    for i, budget in enumerate(budgets):
        fits = np.flatnonzero(params <= budget)
        if fits.size:
            j = fits[np.argmax(top1[fits])]
            acc[i], cost[i] = top1[j], params[j]
    return acc, cost


def _run_one(job: tuple[str, pd.DataFrame, int, int, tuple[float, ...], PNAGSettings]) -> list[dict]:
    method, table, seed, evals, budgets, settings = job
    import torch

    torch.set_num_threads(1)
    evaluator = TableEvaluator(table)
    start = time.perf_counter()
    if method == "pnag":
        frame, _ = generate_with_evaluator(evaluator.space, evaluator, np.array(budgets)[:, None],
                                           replace(settings, evals=evals), seed, run_id=f"bench-{seed}")
        acc = frame["top1"].to_numpy(dtype=float)
        cost = frame["params_m"].to_numpy(dtype=float)
        if frame["top1"].isna().any():  # unverified picks: the benchmark looks their accuracy up
            looked_up = [evaluator._row(evaluator.space.from_text(t))[0] for t in frame["arch"]]  # noqa: SLF001
            acc = np.where(np.isnan(acc), looked_up, acc)
    elif method == "random":
        from pipeline.bench.search import run_random

        acc, cost = pick_from_evaluated(run_random(evaluator, evaluator.space, evals, seed), budgets)
    elif method == "natv2":
        from pipeline.bench.search import run_natv2

        acc, cost = pick_from_evaluated(run_natv2(evaluator, evals, seed), budgets)
    else:
        raise ValueError(f"unknown method {method!r}")
    seconds = time.perf_counter() - start
    return [
        {"method": method, "seed": seed, "budget": b, "top1": a, "params_m": c,
         "meets_budget": bool(np.isfinite(c) and c <= b), "evaluations": int(evaluator.evaluations),
         "seconds": seconds}
        for b, a, c in zip(budgets, acc, cost)
    ]


def benchmark_generation(
    table: pd.DataFrame, seeds: Sequence[int], evals: int, methods: Sequence[str] = METHODS,
    budgets: Sequence[float] = BUDGETS, settings: PNAGSettings | None = None, workers: int | None = None,
    log: Callable[[str], None] | None = None,
) -> pd.DataFrame:
    """One row per (method, seed, budget) with the true accuracy, cost, regret and whether it met."""
    settings = settings or PNAGSettings()
    jobs = [(m, table, int(s), int(evals), tuple(budgets), settings) for m in methods for s in seeds]
    workers = workers or min(len(jobs), max(1, (os.cpu_count() or 1)))
    best = dict(zip(budgets, best_under(table, budgets)))
    rows: list[dict] = []

    def collect(part: list[dict]) -> None:
        rows.extend(part)
        if log is not None:
            regret = np.mean([best[r["budget"]] - r["top1"] for r in part])
            log(f"{part[0]['method']} seed {part[0]['seed']}: raw mean regret {regret:.3f}, "
                f"met {np.mean([r['meets_budget'] for r in part]):.0%}, {part[0]['seconds']:.0f} s")

    if workers > 1:
        with ProcessPoolExecutor(workers) as pool:
            for part in pool.map(_run_one, jobs):
                collect(part)
    else:
        for job in jobs:
            collect(_run_one(job))
    frame = pd.DataFrame.from_records(rows)
    smallest = float(table.loc[table["params_m"].idxmin(), "accuracy"])
    frame["best_top1"] = frame["budget"].map(best)
    achieved = np.where(frame["meets_budget"], frame["top1"], smallest)
    frame["regret"] = frame["best_top1"] - achieved
    return frame


def summarise(frame: pd.DataFrame) -> pd.DataFrame:
    """Per method: mean regret (mean over seeds of the mean over budgets), its median, share met."""
    per_seed = frame.groupby(["method", "seed"]).agg(regret=("regret", "mean"), met=("meets_budget", "mean"),
                                                     evaluations=("evaluations", "max"), seconds=("seconds", "max"))
    summary = per_seed.groupby("method").agg(
        mean_regret=("regret", "mean"), median_regret=("regret", "median"), worst_seed_regret=("regret", "max"),
        share_met=("met", "mean"), max_evaluations=("evaluations", "max"), seeds=("regret", "size"),
        seconds_per_seed=("seconds", "median"),
    )
    return summary.reset_index()
