"""Search-quality benchmark on a NATS-Bench-format table (figures in docs/benchmarks.md).

Objectives: minimise ``100 - accuracy`` and ``params_m``. A run's result is the set of
architectures it truly evaluated; its score is HV(result) / HV(true front), both normalised by the
true front's ideal and nadir, reference (1.1, 1.1) (``pareto.hypervolume_ratio``). Three methods
get the same budget of distinct true evaluations: the NATv2 engine (its default settings), random
search (uniform, without repeats), plain pymoo NSGA-II (population 30, integer genes, SBX and
polynomial mutation with rounding repair, duplicates eliminated) on the true evaluator, and
Optuna's samplers (``optuna_peers.py``). Each row also records the seconds the method spent
outside the true evaluations (``search_seconds``: the search's own cost). Methods that do not
know their budget (``ANYTIME_METHODS``) run once per seed to the largest budget and are scored on
their first b evaluations at each budget b, which is what a run at budget b evaluates (Optuna's
samplers: unless the smaller run hit its trial cap first); the NATv2 variants plan with the
budget and run once per budget.
``derive_table`` builds a second table of the same format for robustness checks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
from pymoo.algorithms.moo.nsga2 import NSGA2
from pymoo.core.problem import Problem
from pymoo.operators.crossover.sbx import SBX
from pymoo.operators.mutation.pm import PM
from pymoo.operators.repair.rounding import RoundingRepair
from pymoo.operators.sampling.rnd import IntegerRandomSampling

from pipeline.bench.optuna_peers import OPTUNA_METHODS, run_optuna
from pipeline.config import SURROGATE_PRESETS
from pipeline.evaluate.interface import EvaluationResult, Evaluator, Objective
from pipeline.search.natv2 import NATv2Engine
from pipeline.search.pareto import hypervolume_ratio, pareto_mask
from pipeline.search.settings import NATv2Experiments, NATv2Settings
from pipeline.space.base import SearchSpace

BENCH_OBJECTIVES = (Objective("top1", "max"), Objective("params_m", "min"))
#: the small-archive phase: a GP with ``hvi`` while fewer than 50 architectures are measured
_EARLY = NATv2Experiments(early_rows=50)
#: LightGBM's LambdaRank (``lgbm_rank``, experimental) in place of the LightGBM regressor
_RANKING_SURROGATES = ("lgbm_rank", "gp", "ridge")
#: NATv2 as configured by default, with NAT's own choices (config options), and the experiments
#: measured no better than the defaults (``NATv2Experiments`` and ``lgbm_rank``, which no config
#: can set). Each variant is the ``dataclasses.replace`` changes to the settings it runs with.
NATV2_VARIANTS: dict[str, dict[str, object]] = {
    "natv2": {},
    "natv2_nat_surrogates": {"surrogates": SURROGATE_PRESETS["nat"], "cv_folds": 10},
    "natv2_nat_selection": {"subset_selection": "nat"},
    "natv2_hvi": {"subset_selection": "hvi"},
    "natv2_early": {"experiments": _EARLY},
    "natv2_rank": {"surrogates": _RANKING_SURROGATES},
    "natv2_early_rank": {"experiments": _EARLY, "surrogates": _RANKING_SURROGATES},  # both of the above
    "natv2_ensemble": {"experiments": NATv2Experiments(ensemble_size=3)},  # the mean of the 3 best surrogates too
}
METHODS = (*NATV2_VARIANTS, "random", "nsga2", *OPTUNA_METHODS)
#: methods that do not know their budget: the first b evaluations of a run to the largest budget
#: are a run at budget b (same seed), so one run serves every budget
ANYTIME_METHODS = ("random", "nsga2", *OPTUNA_METHODS)


class TimedEvaluator(Evaluator):
    """Delegates to ``inner`` and adds up the seconds spent in true evaluations."""

    def __init__(self, inner: Evaluator):
        self.inner, self.space, self.seconds = inner, inner.space, 0.0
        self.cheap_metric_names = inner.cheap_metric_names
        self.started = time.perf_counter()
        #: after each call: (evaluations so far, seconds since start, seconds in evaluations so far)
        self.marks: list[tuple[int, float, float]] = []

    @property
    def evaluations(self) -> int:  # type: ignore[override]
        return self.inner.evaluations

    def evaluate(self, archs: Sequence[dict]) -> list[EvaluationResult]:
        started = time.perf_counter()
        try:
            return self.inner.evaluate(archs)
        finally:
            now = time.perf_counter()
            self.seconds += now - started
            self.marks.append((self.inner.evaluations, now - self.started, self.seconds))

    def seconds_at(self, evaluations: int) -> tuple[float, float]:
        """(seconds since start, seconds in evaluations) when ``evaluations`` evaluations were done."""
        for count, elapsed, evaluating in self.marks:
            if count >= evaluations:
                return elapsed, evaluating
        return time.perf_counter() - self.started, self.seconds

    def cheap_metrics(self, arch: dict) -> dict[str, float]:
        return self.inner.cheap_metrics(arch)


def table_points(accuracy: np.ndarray, params_m: np.ndarray) -> np.ndarray:
    """Minimisation-form points (100 - accuracy, params_m)."""
    return np.column_stack([100.0 - np.asarray(accuracy, dtype=float), np.asarray(params_m, dtype=float)])


def true_front(table: pd.DataFrame) -> np.ndarray:
    points = table_points(table["accuracy"], table["params_m"])
    return points[pareto_mask(points)]


def score(metrics: Sequence[dict[str, float]], front: np.ndarray) -> float:
    """HV ratio of the evaluated set against the true front."""
    points = table_points([m["top1"] for m in metrics], [m["params_m"] for m in metrics])
    return hypervolume_ratio(points, front)


def run_random(evaluator: Evaluator, space: SearchSpace, budget: int, seed: int) -> list[dict[str, float]]:
    rng = np.random.default_rng(seed)
    seen: dict[str, dict] = {}
    while len(seen) < budget:
        arch = space.sample(rng)
        key = space.arch_id(arch)
        if key not in seen:  # one at a time, so the seconds at every smaller budget are known
            seen[key] = evaluator.evaluate([arch])[0].metrics
    return list(seen.values())


def run_nsga2(
    evaluator: Evaluator, space: SearchSpace, budget: int, seed: int, population: int = 30
) -> list[dict[str, float]]:
    """Plain NSGA-II (ask/tell) on the true evaluator until ``budget`` distinct evaluations."""
    upper = space.gene_upper_bounds().astype(float)
    problem = Problem(n_var=len(upper), n_obj=2, xl=np.zeros(len(upper)), xu=upper, vtype=int)
    algorithm = NSGA2(
        pop_size=population, sampling=IntegerRandomSampling(),
        crossover=SBX(prob=0.9, eta=15, vtype=float, repair=RoundingRepair()),
        mutation=PM(eta=20, vtype=float, repair=RoundingRepair()), eliminate_duplicates=True,
    )
    algorithm.setup(problem, seed=seed, verbose=False)
    cache: dict[str, dict[str, float]] = {}
    while len(cache) < budget:
        offspring = algorithm.ask()
        values = []
        for genes in offspring.get("X"):
            arch = space.decode(genes)
            key = space.arch_id(arch)
            if key not in cache:
                if len(cache) >= budget:
                    values.append([np.inf, np.inf])
                    continue
                cache[key] = evaluator.evaluate([arch])[0].metrics
            values.append([100.0 - cache[key]["top1"], cache[key]["params_m"]])
        offspring.set("F", np.array(values))
        algorithm.tell(infills=offspring)
    return list(cache.values())


def run_natv2(
    evaluator: Evaluator, budget: int, seed: int, settings: NATv2Settings | None = None
) -> list[dict[str, float]]:
    """NATv2 driven by ask/tell in memory (no archive files): the metrics of every true evaluation."""
    return [r.metrics for r in natv2_records(evaluator, budget, seed, settings)]


def natv2_records(
    evaluator: Evaluator, budget: int, seed: int, settings: NATv2Settings | None = None
) -> list[EvaluationResult]:
    """NATv2 driven by ask/tell in memory: every successful true evaluation (architecture and metrics)."""
    settings = replace(settings or NATv2Settings(), max_evaluations=budget)
    engine = NATv2Engine(evaluator.space, BENCH_OBJECTIVES, settings, seed, cheap_metrics=evaluator.cheap_metrics,
                         cheap_metric_names=evaluator.cheap_metric_names)
    while not engine.done:
        candidates = engine.ask()
        engine.tell(evaluator.evaluate([c.arch for c in candidates]) if candidates else [])
    return [r for r in engine.result().records if r.status == "ok"]


def derive_table(table: pd.DataFrame, seed: int) -> pd.DataFrame:
    """A second table of the same format whose accuracies rank architectures differently.

    Each (edge, operation) pair gets a seeded random effect and each pair of edges a seeded
    interaction; the new accuracy mixes the original accuracy's rank with these effects, so the
    best architecture per size changes while accuracy keeps a learnable structure.
    """
    from pipeline.space.natsbench import NATSBenchSpace

    rng = np.random.default_rng(seed)
    space = NATSBenchSpace()
    genes = np.array([space.encode(space.from_text(text)) for text in table["arch"]])
    main = rng.normal(0.0, 1.0, size=(genes.shape[1], int(genes.max()) + 1))
    pair = rng.normal(0.0, 0.5, size=(genes.shape[1], genes.shape[1]))
    effect = main[np.arange(genes.shape[1]), genes].sum(axis=1)
    same = (genes[:, :, None] == genes[:, None, :]).astype(float)
    effect += np.einsum("nij,ij->n", same, np.triu(pair, 1))
    base = table["accuracy"].rank(pct=True).to_numpy()
    mixed = 0.6 * base + 0.4 * pd.Series(effect).rank(pct=True).to_numpy()
    accuracy = 40.0 + 55.0 * mixed ** 2 + rng.normal(0.0, 0.3, len(table))
    return table.assign(accuracy=np.round(accuracy, 4))


def run_method(
    make_evaluator: Callable[[], Evaluator], front: np.ndarray, method: str, budgets: int | Sequence[int], seed: int,
    settings: NATv2Settings | None = None,
) -> list[dict[str, object]]:
    """Benchmark rows of one run: a method's HV ratio, evaluations and seconds at each budget.

    Several budgets are one run only for ``ANYTIME_METHODS`` (scored on the first b evaluations of
    a run to the largest budget); the NATv2 variants plan with their budget, one run per budget."""
    budgets = sorted({budgets} if isinstance(budgets, int) else set(budgets))
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; known: {', '.join(METHODS)}")
    if len(budgets) > 1 and method not in ANYTIME_METHODS:
        raise ValueError(f"{method} plans with its budget: run it once per budget")
    evaluator = TimedEvaluator(make_evaluator())
    budget = budgets[-1]
    if method in NATV2_VARIANTS:
        metrics = run_natv2(evaluator, budget, seed, replace(settings or NATv2Settings(), **NATV2_VARIANTS[method]))
    elif method == "random":
        metrics = run_random(evaluator, evaluator.space, budget, seed)
    elif method == "nsga2":
        metrics = run_nsga2(evaluator, evaluator.space, budget, seed)
    else:
        metrics = run_optuna(evaluator, evaluator.space, budget, seed, method)
    finished = (time.perf_counter() - evaluator.started, evaluator.seconds)
    rows = []
    for each in budgets:
        count = min(each, len(metrics))
        seconds, evaluating = evaluator.seconds_at(count) if each < budget else finished
        rows.append({"method": method, "budget": each, "seed": seed, "hv_ratio": score(metrics[:count], front),
                     "evaluations": count if each < budget else evaluator.evaluations, "seconds": seconds,
                     "search_seconds": seconds - evaluating})
    return rows


def benchmark(
    make_evaluator: Callable[[], Evaluator],
    front: np.ndarray,
    budgets: Sequence[int],
    seeds: Sequence[int],
    methods: Sequence[str] = METHODS,
    settings: NATv2Settings | None = None,
    workers: int = 1,
) -> pd.DataFrame:
    """One row per (method, budget, seed), all methods side by side in one run.

    ``make_evaluator`` returns a fresh evaluator (e.g. ``functools.partial(TableEvaluator, table)``,
    which must pickle when ``workers`` > 1) for each run.
    """
    from pipeline.console import progress_reporter

    budgets = sorted(set(budgets))
    tasks = [(method, tuple(budgets), seed) for seed in seeds for method in methods if method in ANYTIME_METHODS]
    tasks += [(method, (budget,), seed) for budget in budgets for seed in seeds for method in methods
              if method not in ANYTIME_METHODS]
    rows: list[dict[str, object]] = []
    with progress_reporter(len(tasks), "bench_search") as report:
        def done(run_rows: list[dict[str, object]]) -> None:
            rows.extend(run_rows)
            scores = "/".join(f"{r['hv_ratio']:.4f}" for r in run_rows)
            report(f"[{len(rows)}/{len(methods) * len(budgets) * len(seeds)} rows] {run_rows[-1]['method']} "
                   f"@{'/'.join(str(r['budget']) for r in run_rows)} seed {run_rows[-1]['seed']}: "
                   f"HV ratio {scores} ({run_rows[-1]['seconds']:.1f} s)")

        if workers <= 1:
            for m, b, s in tasks:
                done(run_method(make_evaluator, front, m, b, s, settings))
        else:
            with ProcessPoolExecutor(max_workers=workers) as pool:
                futures = [pool.submit(run_method, make_evaluator, front, m, b, s, settings) for m, b, s in tasks]
                for future in futures:
                    done(future.result())
    return pd.DataFrame(rows)


def medians(frame: pd.DataFrame) -> pd.DataFrame:
    """Median HV ratio per method (rows) and budget (columns)."""
    return frame.pivot_table(index="method", columns="budget", values="hv_ratio", aggfunc="median")


def search_seconds(frame: pd.DataFrame) -> pd.DataFrame:
    """Median seconds per run spent outside the true evaluations, per method and budget."""
    return frame.pivot_table(index="method", columns="budget", values="search_seconds", aggfunc="median")


def plot_hv_vs_evaluations(frame: pd.DataFrame, path: str | Path) -> Path:
    """Median HV ratio against evaluations per method, with the 25-75 % band across seeds."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for method, rows in frame.groupby("method"):
        stats = rows.groupby("budget")["hv_ratio"].quantile([0.25, 0.5, 0.75]).unstack()
        line = ax.plot(stats.index, stats[0.5], marker="o", label=str(method))[0]
        ax.fill_between(stats.index, stats[0.25], stats[0.75], color=line.get_color(), alpha=0.15)
    ax.set_xlabel("distinct true evaluations")
    ax.set_ylabel("HV ratio (evaluated set / true front)")
    ax.set_title(f"search quality, median of {frame['seed'].nunique()} seeds (band: 25-75 %)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
