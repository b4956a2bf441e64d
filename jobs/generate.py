"""PNAG generation job: a budget-conditioned generator, one architecture per budget.

Benchmark mode (a NATS-Bench-format table; at most N true evaluations in total):

    python jobs/generate.py --space natsbench --table PATH --evals N --budgets 0.1,0.2 \
        --budget-metric params_m --seed S --out DIR

From a finished search run (``ofav2``; learns from RUN_DIR/archive.parquet, exact costs from
RUN_DIR/supernet/supernet.pt, no new evaluations):

    python jobs/generate.py --from-run RUN_DIR --budgets 1.0,2.0 [--budget-metric params_m]

Both write DIR/generated.parquet (``--out``, default RUN_DIR or runs/<run.name>): one row per
budget with budget, budget_metric, arch, arch_id, predicted_top1, top1 (true accuracy where
verified), the costs, meets_budget, verified and note. Several metrics: ``--budget-metric
params_m,flops_m --budgets 0.5:60,1.0:120``. ``--config FILE [--set generate.key=value]`` reads the
``generate`` section; flags override it.
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.runtime import job_argument_parser, run_job  # noqa: E402

GENERATED_FILE = "generated.parquet"


def parse_args(argv: list[str] | None = None):
    parser = job_argument_parser(__doc__.splitlines()[0])
    parser.add_argument("--space", choices=("natsbench",), help="benchmark space (with --table)")
    parser.add_argument("--table", help="NATS-Bench-format CSV")
    parser.add_argument("--from-run", dest="from_run", help="finished ofav2 search run directory")
    parser.add_argument("--evals", type=int, help="true evaluations in total (overrides generate.evals)")
    parser.add_argument("--budgets", help="comma-separated budgets (':'-joined vectors for several metrics)")
    parser.add_argument("--budget-metric", dest="budget_metric", help="metric name(s), comma-separated")
    parser.add_argument("--seed", type=int, help="random seed (overrides run.seed)")
    parser.add_argument("--no-verify", dest="verify", action="store_false", default=None,
                        help="do not truly evaluate the winners")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pipeline.config import load_config
    from pipeline.errors import ConfigError
    from pipeline.generate.budget import parse_budgets, parse_metrics
    from pipeline.generate.runs import settings_from_config
    from pipeline.schema import write_parquet_atomic

    stored = Path(args.from_run) / "config.yaml" if args.from_run else None
    if args.config is None and stored is not None and stored.is_file():
        config = load_config(stored, args.overrides)  # the run's own settings and seed
    else:
        config = load_config(args.config, args.overrides)
    if args.from_run and args.evals is not None:
        raise ConfigError("--evals applies to --space natsbench; --from-run learns from the run's archive "
                          "and spends no true evaluations")
    gen = config.generate
    metrics = parse_metrics(args.budget_metric if args.budget_metric is not None else gen.budget_metrics)
    given = args.budgets if args.budgets is not None else gen.budgets
    # a finished run without budgets gets evenly spaced ones over its archive's cost range
    budgets = None if args.from_run and not given else parse_budgets(given, len(metrics))
    overrides = {"budget_metrics": list(metrics)}
    if args.evals is not None:
        overrides["evals"] = args.evals
    if args.verify is not None:
        overrides["verify"] = args.verify
    settings = settings_from_config(gen.model_dump() | overrides)
    seed = config.run.seed if args.seed is None else args.seed
    import torch

    torch.set_num_threads(1)  # small networks: one thread is fastest and leaves the cores to Ray
    if args.from_run:
        from pipeline.stages import generate_for_run

        frame, metadata = generate_for_run(Path(args.from_run), budgets, settings, seed)
        out = Path(args.out or args.from_run)
    else:
        if args.space != "natsbench" or not args.table:
            raise ConfigError("give --space natsbench --table PATH, or --from-run RUN_DIR")
        from pipeline.evaluate.table import TableEvaluator
        from pipeline.generate.runs import generate_with_evaluator

        evaluator = TableEvaluator(args.table)
        frame, _ = generate_with_evaluator(evaluator.space, evaluator, budgets, settings, seed,
                                           run_id=f"generate-{seed}")
        metadata = {"config": config.model_dump(mode="json"), "seed": seed, "table": str(args.table),
                    "evaluations": int(evaluator.evaluations)}
        out = Path(args.out or Path("runs") / config.run.name)
    path = write_parquet_atomic(frame, out / GENERATED_FILE, metadata)
    shown = [c for c in ("budget", "arch_id", "predicted_top1", "top1", "params_m", "meets_budget") if c in frame]
    print(frame[shown].to_string(index=False))
    print(f"wrote {path} ({len(frame)} budgets, {int(frame['evaluations'].iloc[0])} true evaluations)")
    return 0


if __name__ == "__main__":
    run_job(main)
