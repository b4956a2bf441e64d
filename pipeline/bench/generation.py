"""Generation-quality benchmark on a NATS-Bench-format table (figures in docs/benchmarks.md).

Budgets on ``params_m`` are never an input to a fit: ``front_budgets`` gives 30 budgets
log-spaced between the smallest and the largest params of the table's accuracy/params front, at
the middles of the log-spaced intervals (so none is an end point or a round grid value). A method's
regret at a budget is the best accuracy in the whole table under that budget minus the TRUE
accuracy of the architecture it returns. A budget the returned architecture does not meet counts
as not met, and its regret is taken against the table's smallest architecture (the network a user
would fall back to), so it is never hidden.

Methods, each with the same true evaluations per seed:

- ``generate``: PNAG as the paper claims it: ``fit_with_evaluator`` once (no budget is an input),
  then the fitted generator answers every budget with ZERO further evaluations (checked);
- ``generate_natv2``: the same generator, fitted once (``fit_from_archive``) on the archive of a
  NATv2 run with those evaluations (what the pipeline does), then answering with zero evaluations;
- ``search``: PNAG's per-budget search mode (``generate_with_evaluator``, told the budgets), with
  the variants of its experimental ``SearchModeOptions`` in ``SEARCH_MODE_VARIANTS``
  (``search_unverified``: no verification evaluations, every evaluation explores);
- ``natv2``: one NATv2 run (``pipeline.bench.search.run_natv2``), then the most accurate member of
  its archive under each budget;
- ``random``: distinct uniform samples, then the most accurate evaluated one under each budget.

``generate`` saves each seed's generator under ``generators/seed_<S>/``; ``answer_speed`` times
answering 1 and 100 budgets from a saved one (CPU, one thread).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

from pipeline.config import GenerateConfig
from pipeline.evaluate.table import TableEvaluator
from pipeline.generate.fitted import FittedGenerator
from pipeline.generate.search_mode import SearchModeOptions, generate_with_evaluator
from pipeline.generate.store import load_generator, save_generator
from pipeline.generate.training import fit_from_archive, fit_with_evaluator

#: PNAG's search mode as it runs by default, and with its experimental options changed
SEARCH_MODE_VARIANTS: dict[str, dict[str, object]] = {
    "search": {},
    "search_unverified": {"verify": False},  # every evaluation on continuous-budget proposals
}
METHODS: tuple[str, ...] = ("generate", "generate_natv2", *SEARCH_MODE_VARIANTS, "natv2", "random")
BUDGET_COUNT = 30


def params_front(table: pd.DataFrame) -> pd.DataFrame:
    """The table's front: architectures no other beats on accuracy at lower or equal params."""
    ordered = table.sort_values(["params_m", "accuracy"], ascending=[True, False])
    best_so_far = ordered["accuracy"].cummax().shift(fill_value=-np.inf)
    return ordered[ordered["accuracy"] > best_so_far]


def front_budgets(table: pd.DataFrame, count: int = BUDGET_COUNT) -> tuple[float, ...]:
    """``count`` budgets log-spaced over the front's params range, at the middles of the intervals."""
    front = params_front(table)
    low, high = np.log(front["params_m"].min()), np.log(front["params_m"].max())
    return tuple(float(v) for v in np.exp(low + (np.arange(count) + 0.5) / count * (high - low)))


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


def _table_accuracy(evaluator: TableEvaluator, arch_texts: Sequence[str]) -> np.ndarray:
    """The benchmark's own look-up of the picks' true accuracy (not counted: it is the scoring)."""
    rows = evaluator.table.set_index("arch")["accuracy"]
    return np.array([rows[text] for text in arch_texts], dtype=float)


def _fit(method: str, evaluator: TableEvaluator, settings: GenerateConfig, seed: int, evals: int) -> FittedGenerator:
    """``generate``: PNAG's own fit; ``generate_natv2``: fitted on a ``evals``-evaluation NATv2 archive."""
    if method == "generate":
        return fit_with_evaluator(evaluator.space, evaluator, settings, seed)
    from pipeline.bench.search import natv2_records

    archive = pd.DataFrame.from_records(
        [{"arch": evaluator.space.to_text(r.arch), **r.metrics} for r in natv2_records(evaluator, evals, seed)])
    return fit_from_archive(evaluator.space, archive, settings, seed, exact_cost_fn=evaluator.cheap_metrics,
                            exact_names=evaluator.cheap_metric_names)


def _run_pnag(method: str, evaluator: TableEvaluator, seed: int, evals: int, budgets: tuple[float, ...],
              settings: GenerateConfig, out: Path | None) -> tuple[np.ndarray, np.ndarray, float]:
    """PNAG generate or search: (true accuracy, params_m) per budget and the answering seconds."""
    settings = settings.model_copy(update={"evals": evals, "budget_metrics": ["params_m"]})
    column = np.array(budgets)[:, None]
    if method in SEARCH_MODE_VARIANTS:
        options = replace(SearchModeOptions(), **SEARCH_MODE_VARIANTS[method])  # type: ignore[arg-type]
        start = time.perf_counter()
        frame, _ = generate_with_evaluator(evaluator.space, evaluator, column, settings, seed, run_id=f"bench-{seed}",
                                           options=options)
        seconds = time.perf_counter() - start
    else:
        generator = _fit(method, evaluator, settings, seed, evals)
        if out is not None:
            save_generator(generator, out / "generators" / (f"seed_{seed}" + ("_natv2" if method != "generate" else "")))
        spent = evaluator.evaluations
        start = time.perf_counter()
        frame = generator.generate(column, seed, run_id=f"bench-{seed}")
        seconds = time.perf_counter() - start
        if evaluator.evaluations != spent:
            raise RuntimeError("the fitted generator made a true evaluation while answering budgets")
    return _table_accuracy(evaluator, frame["arch"]), frame["params_m"].to_numpy(dtype=float), seconds


def _run_one(job: tuple[str, pd.DataFrame, int, int, tuple[float, ...], GenerateConfig, Path | None]) -> list[dict]:
    method, table, seed, evals, budgets, settings, out = job
    import torch

    torch.set_num_threads(1)
    evaluator = TableEvaluator(table)
    start = time.perf_counter()
    answer_seconds = float("nan")
    if method in ("generate", "generate_natv2", *SEARCH_MODE_VARIANTS):
        acc, cost, answer_seconds = _run_pnag(method, evaluator, seed, evals, budgets, settings, out)
    elif method == "random":
        from pipeline.bench.search import run_random

        acc, cost = pick_from_evaluated(run_random(evaluator, evaluator.space, evals, seed), budgets)
    elif method == "natv2":
        from pipeline.bench.search import run_natv2

        acc, cost = pick_from_evaluated(run_natv2(evaluator, evals, seed), budgets)
    else:
        raise ValueError(f"unknown method {method!r}")
    seconds = time.perf_counter() - start
    per_budget = 0 if method.startswith("generate") else int(evaluator.evaluations)
    return [
        {"method": method, "seed": seed, "budget": b, "top1": a, "params_m": c,
         "meets_budget": bool(np.isfinite(c) and c <= b), "evaluations": int(evaluator.evaluations),
         "evaluations_for_budgets": per_budget, "seconds": seconds, "answer_seconds": answer_seconds}
        for b, a, c in zip(budgets, acc, cost)
    ]


def benchmark_generation(
    table: pd.DataFrame, seeds: Sequence[int], evals: int, methods: Sequence[str] = METHODS,
    budgets: Sequence[float] | None = None, settings: GenerateConfig | None = None, workers: int | None = None,
    log: Callable[[str], None] | None = None, out: Path | None = None,
) -> pd.DataFrame:
    """One row per (method, seed, budget) with the true accuracy, cost, regret and whether it met."""
    settings = settings or GenerateConfig()
    budgets = tuple(budgets) if budgets is not None else front_budgets(table)
    jobs = [(m, table, int(s), int(evals), budgets, settings, out) for s in seeds for m in methods]
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
    per_seed = frame.groupby(["method", "seed"]).agg(
        regret=("regret", "mean"), met=("meets_budget", "mean"), evaluations=("evaluations", "max"),
        for_budgets=("evaluations_for_budgets", "max"), seconds=("seconds", "max"))
    summary = per_seed.groupby("method").agg(
        mean_regret=("regret", "mean"), median_regret=("regret", "median"), worst_seed_regret=("regret", "max"),
        share_met=("met", "mean"), max_evaluations=("evaluations", "max"),
        evaluations_per_budget_list=("for_budgets", "max"), seeds=("regret", "size"),
        seconds_per_seed=("seconds", "median"),
    )
    order = {m: i for i, m in enumerate(METHODS)}
    return summary.reset_index().sort_values("method", key=lambda s: s.map(order)).reset_index(drop=True)


def answer_speed(generator_dir: Path, table: pd.DataFrame, repeats: int = 3) -> dict[str, float]:
    """Seconds (median of ``repeats``) to load a saved generator and to answer 1 and 100 budgets."""
    import torch

    torch.set_num_threads(1)
    evaluator = TableEvaluator(table)
    start = time.perf_counter()
    generator = load_generator(generator_dir, exact_cost_fn=evaluator.cheap_metrics)
    load_seconds = time.perf_counter() - start
    low, high = generator.scale.low[0], generator.scale.high[0]
    many = np.geomspace(low * 1.01, high * 0.99, 100)[:, None]
    timings: dict[str, list[float]] = {"one_budget_s": [], "hundred_budgets_s": []}
    for repeat in range(repeats):
        for key, budgets in (("one_budget_s", many[37:38]), ("hundred_budgets_s", many)):
            fresh = generator.with_costs(evaluator.cheap_metrics)  # no cache carried between timings
            start = time.perf_counter()
            fresh.generate(budgets, seed=repeat)
            timings[key].append(time.perf_counter() - start)
    return {"load_s": load_seconds} | {k: float(np.median(v)) for k, v in timings.items()}
