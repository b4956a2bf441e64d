"""PNAG on a pipeline run: fit on its archive, save its ``generator/``, answer, measure.

The caller (``pipeline.stages``, ``jobs/generate.py``) names the run's files (``RunFiles``), loads
the supernet and passes in the space and an exact-cost function (``check_cost_fn``, e.g. counting
a subnet's params and MACs); the generate stage also passes the evaluator (evaluator and latency
actors), which truly evaluates the generated architectures afterwards, and where to log. This
module never imports ``supernet``, ``train`` or the run-directory layout.

- ``check_generate_settings``: budget metrics and budgets checked before any long work;
- ``RunFiles``: the run's files that generation reads and writes;
- ``fit_for_run``: fit on the archive's ``ok`` rows and save the generator;
- ``measure_generated``: the generator's rows with measured ``top1``, costs and latencies beside
  the predictions; ``meets_budget`` is decided on the measured costs (the generator's own view
  stays in ``predicted_meets_budget``);
- ``generate_stage``: the pipeline's generate stage (both, then ``generated.parquet``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd

from pipeline.atomic import write_parquet_atomic
from pipeline.config import GenerateConfig, PipelineConfig
from pipeline.errors import BudgetError, CheckpointError
from pipeline.evaluate.interface import Evaluator
from pipeline.evaluate.objectives import latency_metrics
from pipeline.generate.budget import parse_budgets, parse_metrics
from pipeline.generate.fitted import FittedGenerator
from pipeline.generate.predictors import ExactCostFn
from pipeline.generate.search_mode import generate_from_archive
from pipeline.generate.store import save_generator
from pipeline.generate.training import check_metrics, fit_from_archive
from pipeline.schema import read_metadata, read_parquet
from pipeline.search.pareto import current_round_mask
from pipeline.space.base import SearchSpace


class RunFiles(Protocol):
    """The files of one run directory that generation reads and writes; the stage layer passes them
    in (``pipeline.run_dir.RunDir`` has them)."""

    root: Path
    archive: Path
    generator_dir: Path
    generated: Path
    config_file: Path
    supernet: Path


def check_generate_settings(config: PipelineConfig) -> None:
    """Budget metrics and budgets of the generate stage, checked before any long work starts:
    a metric must be one the ofav2 run measures; budgets must be positive, one value per metric."""
    metrics = parse_metrics(config.generate.budget_metrics)
    check_metrics(metrics, ["params_m", "macs_m", *latency_metrics(config)])
    if config.generate.budgets:
        parse_budgets(config.generate.budgets, len(metrics))


def default_budgets(archive: pd.DataFrame, metric: str, count: int = 5) -> list[float]:
    """Evenly spaced budgets between the cheapest and the costliest evaluated architecture."""
    values = archive.loc[archive.get("status", "ok") == "ok", metric].dropna()
    if values.empty:
        raise BudgetError(f"no evaluated architecture has {metric!r}; cannot derive budgets")
    low, high = float(values.min()), float(values.max())
    return [float(v) for v in np.linspace(low + 0.1 * (high - low), high, count)]


def read_run_archive(files: RunFiles, space: SearchSpace) -> tuple[pd.DataFrame, dict[str, Any]]:
    """The run's archive rows measured under the current supernet weights (stale accuracies from
    before a search-time adaptation never train the generator), and its metadata, checked against
    the supernet's space."""
    archive, metadata = read_parquet(files.archive), read_metadata(files.archive)
    supernet_config = (metadata.get("config") or {}).get("supernet")
    if supernet_config and hasattr(space, "options"):
        options = {k: supernet_config[k] for k in space.options() if k in supernet_config}
        if type(space)(**(space.options() | options)) != space:
            raise CheckpointError(f"{files.root}: the supernet checkpoint's space differs from the archive's config")
    return archive[current_round_mask(archive)], metadata


def run_budgets(given: Any, metrics: Sequence[str], archive: pd.DataFrame) -> np.ndarray:
    """``given`` budgets parsed, or evenly spaced ones over the archive when none are given."""
    if given is None or len(given) == 0:
        if len(metrics) != 1:
            raise BudgetError("give budgets explicitly when generating for several budget metrics")
        given = default_budgets(archive, metrics[0])
    return parse_budgets(given if isinstance(given, str | np.ndarray) else list(given), len(metrics))


def fit_for_run(files: RunFiles, settings: GenerateConfig, seed: int, space: SearchSpace,
                check_cost_fn: ExactCostFn | None, check_budgets: np.ndarray | None = None) -> FittedGenerator:
    """Fit on the run's archive (no true evaluation) and save the run's ``generator/``."""
    archive, metadata = read_run_archive(files, space)
    generator = fit_from_archive(space, archive, settings, seed, check_cost_fn=check_cost_fn,
                                 check_budgets=check_budgets)
    generator.fit_info.update(from_run=str(files.root), run_id=str(metadata.get("run_id", "")))
    save_generator(generator, files.generator_dir)
    return generator


def search_for_run(files: RunFiles, budgets: np.ndarray, settings: GenerateConfig, seed: int,
                   space: SearchSpace, check_cost_fn: ExactCostFn | None) -> pd.DataFrame:
    """``mode: search`` on a run: the hybrid over its archive (``generate_from_archive``)."""
    archive, metadata = read_run_archive(files, space)
    frame, _ = generate_from_archive(space, archive, budgets, settings, seed,
                                     run_id=str(metadata.get("run_id", "generate")), check_cost_fn=check_cost_fn)
    return frame


def _budget_columns(frame: pd.DataFrame, metrics: Sequence[str]) -> list[str]:
    return ["budget"] if len(metrics) == 1 else [f"budget@{m}" for m in metrics]


def measure_generated(frame: pd.DataFrame, evaluator: Evaluator, metrics: Sequence[str]) -> pd.DataFrame:
    """Truly evaluate the generated architectures; measured values replace the predicted ones."""
    frame = frame.copy()
    archs = [evaluator.space.from_text(text) for text in frame["arch"]]
    results = evaluator.evaluate(archs)
    frame["predicted_meets_budget"] = frame["meets_budget"].astype(bool)
    for metric in metrics:  # the generator's view of every budget metric, beside the measurement
        if f"predicted_{metric}" not in frame:
            frame[f"predicted_{metric}"] = frame[metric] if metric in frame else np.nan
    budgets = frame[_budget_columns(frame, metrics)].to_numpy(dtype=float)
    met, status, error = [], [], []
    for index, (result, budget) in enumerate(zip(results, budgets)):
        for name, value in result.metrics.items():
            frame.loc[frame.index[index], name] = float(value)
        measured = [float(result.metrics.get(m, np.nan)) for m in metrics]
        met.append(result.status == "ok" and all(np.isfinite(v) and v <= b for v, b in zip(measured, budget)))
        status.append(result.status)
        error.append(result.error)
    frame["meets_budget"], frame["status"], frame["error"] = met, status, error
    frame["measured"] = True
    return frame


def generate_stage(config: PipelineConfig, files: RunFiles, space: SearchSpace, check_cost_fn: ExactCostFn | None,
                   evaluator: Evaluator, log: Callable[[str], None]) -> dict[str, Any]:
    """Fit on the archive, save the generator, answer the configured budgets, measure, write."""
    settings, seed = config.generate, config.run.seed
    archive, _ = read_run_archive(files, space)
    budgets = run_budgets(settings.budgets, settings.budget_metrics, archive)
    if settings.mode == "search":
        frame = search_for_run(files, budgets, settings, seed, space, check_cost_fn)
    else:
        generator = fit_for_run(files, settings, seed, space, check_cost_fn, check_budgets=budgets)
        log(f"generate: fitted on {generator.fit_info['known']} archived architectures, saved "
            f"{files.generator_dir}")
        frame = generator.generate(budgets, seed, run_id=config.run.name)
    frame = measure_generated(frame, evaluator, settings.budget_metrics)
    metadata = {"config": config.model_dump(mode="json"), "seed": seed, "mode": settings.mode,
                "generator": str(files.generator_dir) if settings.mode == "generate" else None}
    write_parquet_atomic(frame, files.generated, metadata)
    met = int(frame["meets_budget"].sum())
    log(f"generate ({settings.mode}): {len(frame)} budgets, {met} met on measured costs, "
        f"{int(frame['top1'].notna().sum())} measured")
    return {"budgets": len(frame), "met": met, "mode": settings.mode}
