"""``jobs/generate.py``'s two verbs, *fit* and *generate*, behind one call (``run_generate_job``).

- *generate* (``--generator DIR``): load a saved generator and answer ``--budgets`` with zero true
  evaluations; writes ``OUT/generated.parquet`` (default OUT: the generator's parent directory).
- *fit* on a table (``--space natsbench --table T``): at most ``--evals`` true evaluations, saves
  ``OUT/generator/``; given ``--budgets`` it then answers them too (``evaluations`` 0 per answer,
  ``fit_evaluations`` beside it). ``--mode search`` is the per-budget search instead (budgets needed,
  rows labelled ``mode=search``, no generator saved).
- *fit* on a run (``--from-run RUN_DIR``): the run's archive (no true evaluation), saves
  ``RUN_DIR/generator/``; ``--budgets`` are answered as above; ``--mode search`` is the hybrid.

The ofav2 space and its exact costs come from the run's supernet through ``open_run``, and the
run directory's file names through ``run_files``, both supplied by the job (``JobWiring``), so
this package imports neither ``supernet`` nor the run-directory layout.
"""

from __future__ import annotations

from argparse import Namespace
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from pydantic import ValidationError

from pipeline.atomic import write_parquet_atomic
from pipeline.config import GenerateConfig, PipelineConfig, format_validation_error, load_config
from pipeline.errors import BudgetError, ConfigError
from pipeline.generate.budget import parse_budgets, parse_metrics
from pipeline.generate.predictors import ExactCostFn
from pipeline.generate.run_stage import RunFiles, fit_for_run, read_run_archive, run_budgets, search_for_run
from pipeline.generate.search_mode import SearchModeOptions
from pipeline.generate.store import load_generator, read_manifest, save_generator
from pipeline.space.base import SearchSpace

GENERATED_FILE = "generated.parquet"
OpenRun = Callable[[Path], tuple[SearchSpace, ExactCostFn]]
SHOWN = ("budget", "arch_id", "predicted_top1", "top1", "params_m", "flops_m", "macs_m", "meets_budget", "mode")


@dataclass(frozen=True)
class JobWiring:
    """What the job layer supplies: the run's space and exact costs (``open_run``), the names of a
    run directory's files (``run_files``) and the default output directory for a config."""

    open_run: OpenRun
    run_files: Callable[[Path], RunFiles]
    default_out: Callable[[PipelineConfig], Path]


def _config(request: Namespace, wiring: JobWiring) -> PipelineConfig:
    stored = wiring.run_files(Path(request.from_run)).config_file if request.from_run else None
    if request.config is None and stored is not None and stored.is_file():
        return load_config(stored, request.overrides)  # the run's own settings and seed
    return load_config(request.config, request.overrides)


def _settings(config: PipelineConfig, request: Namespace) -> GenerateConfig:
    """The ``generate`` section with the flags that override it, validated again."""
    flags: dict[str, Any] = {"evals": request.evals, "mode": request.mode}
    if request.budget_metric is not None:
        flags["budget_metrics"] = list(parse_metrics(request.budget_metric))
    try:
        return GenerateConfig.model_validate(
            config.generate.model_dump() | {name: value for name, value in flags.items() if value is not None})
    except ValidationError as exc:
        raise ConfigError(format_validation_error(exc).replace("config: ", "generate.", 1)) from None


def _budgets(request: Namespace, settings: GenerateConfig) -> np.ndarray | None:
    """The requested budgets (flag first, then the config), or None when none are asked for."""
    given = request.budgets if request.budgets is not None else (settings.budgets or None)
    return None if given is None else parse_budgets(given, len(settings.budget_metrics))


def _write(frame: pd.DataFrame, out: Path, metadata: dict[str, Any]) -> None:
    path = write_parquet_atomic(frame, out / GENERATED_FILE, metadata)
    print(frame[[c for c in SHOWN if c in frame]].to_string(index=False))
    print(f"wrote {path} ({len(frame)} budgets, {int(frame['evaluations'].max())} true evaluations per answer, "
          f"mode {frame['mode'].iloc[0]})")


def run_generate_job(request: Namespace, wiring: JobWiring) -> int:
    """Dispatch to the verb ``request`` (``jobs/generate.py``'s parsed flags; its parser is their one
    declaration, ``None`` where a flag is not given) names; see the module docstring."""
    if request.from_run and request.evals is not None:
        raise ConfigError("--evals applies to --space natsbench; --from-run learns from the run's archive "
                          "and spends no true evaluations")
    config = _config(request, wiring)
    settings = _settings(config, request)
    seed = config.run.seed if request.seed is None else request.seed
    if request.generator:
        return _answer(request, wiring, seed)
    if request.from_run:
        return _fit_run(request, config, settings, seed, wiring)
    if request.space != "natsbench" or not request.table:
        raise ConfigError("give --space natsbench --table PATH, --from-run RUN_DIR, or --generator DIR")
    return _fit_table(request, config, settings, seed, wiring)


def _search_options(request: Namespace) -> SearchModeOptions:
    return SearchModeOptions() if request.verify is None else SearchModeOptions(verify=request.verify)


def _answer(request: Namespace, wiring: JobWiring, seed: int | None) -> int:
    directory = Path(request.generator)
    manifest = read_manifest(directory)
    if request.mode == "search":
        raise ConfigError("--generator answers in generate mode; --mode search needs --table/--evals or --from-run")
    metrics = tuple(manifest["budget_metrics"])
    if request.budget_metric is not None and parse_metrics(request.budget_metric) != metrics:
        raise BudgetError(f"this generator was fitted for --budget-metric {','.join(metrics)}, not {request.budget_metric}")
    if not request.budgets:
        raise BudgetError("give --budgets to answer, e.g. --budgets 0.2,0.5")
    budgets = parse_budgets(request.budgets, len(metrics))
    exact, check = None, None
    if request.table:
        from pipeline.evaluate.table import TableEvaluator

        exact = TableEvaluator(request.table).cheap_metrics
    elif manifest["space"]["name"] == "ofav2" and wiring.run_files(directory.parent).supernet.is_file():
        _, check = wiring.open_run(directory.parent)
    generator = load_generator(directory, exact_cost_fn=exact, check_cost_fn=check)
    seed = int(manifest.get("fit", {}).get("seed", 0)) if request.seed is None else request.seed
    frame = generator.generate(budgets, seed, run_id=f"generate-{seed}")
    out = Path(request.out) if request.out else directory.parent
    _write(frame, out, {"generator": str(directory), "seed": seed, "evaluations": 0, "mode": "generate",
                        "fit": manifest.get("fit", {})})
    return 0


def _fit_table(request: Namespace, config: PipelineConfig, settings: GenerateConfig, seed: int,
               wiring: JobWiring) -> int:
    from pipeline.evaluate.table import TableEvaluator
    from pipeline.generate.search_mode import generate_with_evaluator
    from pipeline.generate.training import fit_with_evaluator

    evaluator = TableEvaluator(request.table)
    budgets = _budgets(request, settings)
    out = Path(request.out) if request.out else wiring.default_out(config)
    metadata = {"config": config.model_dump(mode="json"), "seed": seed, "table": str(request.table)}
    if settings.mode == "search":
        if budgets is None:
            raise BudgetError("--mode search searches per budget: give --budgets")
        frame, _ = generate_with_evaluator(evaluator.space, evaluator, budgets, settings, seed, run_id=f"generate-{seed}",
                                           options=_search_options(request))
        _write(frame, out, metadata | {"evaluations": int(evaluator.evaluations), "mode": "search"})
        return 0
    generator = fit_with_evaluator(evaluator.space, evaluator, settings, seed, check_budgets=budgets)
    generator.fit_info.update(table=str(request.table))
    saved = save_generator(generator, out / "generator")
    print(f"fitted on {evaluator.evaluations} true evaluations; saved {saved}")
    if budgets is not None:
        frame = generator.generate(budgets, seed, run_id=f"generate-{seed}")
        frame["fit_evaluations"] = evaluator.evaluations
        _write(frame, out, metadata | {"evaluations": 0, "fit_evaluations": int(evaluator.evaluations),
                                       "mode": "generate", "generator": str(saved)})
    return 0


def _fit_run(request: Namespace, config: PipelineConfig, settings: GenerateConfig, seed: int,
             wiring: JobWiring) -> int:
    run_dir = Path(request.from_run)
    files = wiring.run_files(run_dir)
    space, check = wiring.open_run(run_dir)
    budgets = _budgets(request, settings)
    out = Path(request.out) if request.out else run_dir
    metadata = {"from_run": str(run_dir), "seed": seed, "config": config.model_dump(mode="json"), "evaluations": 0}
    if settings.mode == "search":
        archive, _ = read_run_archive(files, space)
        frame = search_for_run(files, run_budgets(budgets, settings.budget_metrics, archive), settings, seed,
                               space, check)
        _write(frame, out, metadata | {"mode": "search"})
        return 0
    generator = fit_for_run(files, settings, seed, space, check, check_budgets=budgets)
    print(f"fitted on {generator.fit_info['known']} archived architectures; saved {files.generator_dir}")
    if budgets is not None:
        frame = generator.generate(budgets, seed, run_id=str(generator.fit_info.get("run_id") or "generate"))
        _write(frame, out, metadata | {"mode": "generate", "generator": str(files.generator_dir)})
    return 0
