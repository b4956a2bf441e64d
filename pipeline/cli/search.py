"""NATv2 search: a NATS-Bench-format table (benchmark mode) or a trained supernet run directory.

Benchmark mode (a NATS-Bench-format table, no Ray, no training):

    python jobs/search.py --space natsbench --table PATH --evals N --seed S --out DIR [--resume]

writes DIR/archive.parquet (every architecture truly evaluated), DIR/front.parquet (its
non-dominated rows of max top1 / min params_m), DIR/fronts/iter_NNN.parquet, DIR/search_history.parquet
and the resumable DIR/search_state.json. ``--config FILE [--set key=value ...]`` reads the same
settings from the ``search`` section; flags override it. ``search.space: ofav2`` searches a trained
supernet run directory (needs DIR/supernet/).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.run_dir import RunDir
from pipeline.runtime import job_argument_parser


def parse_args(argv: list[str] | None = None):
    parser = job_argument_parser(__doc__)
    parser.add_argument("--space", choices=("natsbench", "ofav2"), help="search space (overrides search.space)")
    parser.add_argument("--table", help="natsbench: NATS-Bench-format CSV (overrides search.table)")
    parser.add_argument("--evals", type=int, help="evaluation budget (overrides search.max_evaluations)")
    parser.add_argument("--seed", type=int, help="random seed (overrides run.seed)")
    parser.add_argument("--iterations", type=int, help="iteration limit (overrides search.iterations)")
    return parser.parse_args(argv)


def apply_flags(config, args) -> None:
    """Command-line flags override the config (validated like config values)."""
    from pydantic import ValidationError

    from pipeline.config import format_validation_error
    from pipeline.errors import ConfigError

    flags = ((config.search, "space", args.space), (config.search, "table", args.table),
             (config.search, "max_evaluations", args.evals), (config.run, "seed", args.seed),
             (config.search, "iterations", args.iterations))
    for section, key, value in flags:
        if value is not None:
            try:
                setattr(section, key, value)
            except ValidationError as exc:
                raise ConfigError(format_validation_error(exc).replace("config: ", "command line: ", 1)) from None


def build_evaluator(config, run_dir: Path):
    """The table evaluator of the natsbench space (the ofav2 space goes through ``search_supernet``)."""
    from pipeline.errors import ConfigError

    if config.search.space == "natsbench":
        from pipeline.evaluate.table import TableEvaluator, load_table

        if not config.search.table:
            raise ConfigError("the natsbench space needs a table: pass --table PATH or set search.table")
        evaluator = TableEvaluator(load_table(config.search.table))
        available = {"top1", *evaluator.cheap_metric_names}
        unknown = [o.name for o in config.search.objectives if o.name not in available]
        if unknown:
            raise ConfigError(f"search.objectives: {', '.join(unknown)} not available on natsbench "
                              f"(available: {', '.join(sorted(available))})")
        return evaluator
    raise ConfigError(f"unknown search space {config.search.space!r}")


def search_supernet(config, run_dir: Path, resume: bool) -> int:
    """The ofav2 search of a trained run directory, on Ray actors (``pipeline.stages``)."""
    from pipeline.config import dump_config
    from pipeline.console import attach_run_log
    from pipeline.errors import ConfigError
    from pipeline.preflight import check_pipeline_inputs
    from pipeline.runtime import ray_session
    from pipeline.stages import run_search_stage

    checkpoint = Path(config.evaluate.checkpoint) if config.evaluate.checkpoint else RunDir(run_dir).supernet
    if not checkpoint.is_file():
        raise ConfigError(f"the ofav2 search needs a trained supernet checkpoint {checkpoint}; run "
                          "jobs/train_supernet.py with the same --out first, or set evaluate.checkpoint")
    check_pipeline_inputs(config, ["search"], run_dir)  # checkpoint, data, objectives fail before Ray starts
    with ray_session(config.ray):
        dump_config(config, RunDir(run_dir).config_file)
        attach_run_log(run_dir)
        summary = run_search_stage(config, run_dir.resolve(), resume)
    print(f"search finished: {summary['evaluations']} evaluations, hypervolume "
          f"{summary.get('hypervolume') or float('nan'):.4f}; results in {run_dir}")
    return 0


def main(argv: list[str] | None = None) -> int:
    from pipeline.config import dump_config, load_config
    from pipeline.evaluate.interface import Objective
    from pipeline.search.driver import run_search
    from pipeline.search.natv2 import NATv2Settings

    args = parse_args(argv)
    config = load_config(args.config, args.overrides)
    apply_flags(config, args)
    run_dir = (RunDir(Path(args.out)) if args.out else RunDir.default(config)).check_location().root
    if config.search.space == "ofav2":
        return search_supernet(config, run_dir, args.resume)
    evaluator = build_evaluator(config, run_dir)
    objectives = [Objective(o.name, o.direction) for o in config.search.objectives]
    settings = NATv2Settings.from_config(config.search)
    metadata = config.model_dump(mode="json")
    result = run_search(
        evaluator, objectives, settings, run_dir, seed=config.run.seed, run_id=config.run.name,
        resume=args.resume, metadata=metadata, log=print,
        on_start=lambda: dump_config(config, RunDir(run_dir).config_file),
    )
    last = result.history[-1] if result.history else {}
    print(f"search finished: {result.evaluations} evaluations, archive {len(result.archive_ids)}, "
          f"hypervolume {last.get('hypervolume', float('nan')):.4f}; results in {run_dir}")
    return 0
