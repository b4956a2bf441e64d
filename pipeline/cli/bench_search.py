"""Search-quality benchmark on a NATS-Bench-format table (figures in docs/benchmarks.md).

    python jobs/bench_search.py --table PATH --out DIR [--seeds 11] [--budgets 100,300] [--quick]

Runs the NATv2 engine (its default settings), random search, plain pymoo NSGA-II (population
30) and Optuna's samplers (multivariate TPE, GP, NSGA-II) with the same budgets of distinct true
evaluations, side by side; prints the median HV ratio and the search's own seconds per method and
budget, writes every per-seed row to DIR/bench_search.parquet and the median curve with its
25-75 % band to DIR/hv_vs_evaluations.png. ``--derive SEED``
benchmarks a derived table instead (same architectures and costs, accuracies re-ranked by a
seeded function) to check that the defaults do not depend on one table. Beside these methods,
``--methods`` takes the NATv2 variants of ``pipeline.bench.search.NATV2_VARIANTS``: NAT's own
choices and the experiments measured no better than the defaults, which no config can set.
"""

from __future__ import annotations

from pathlib import Path

DEFAULT_METHODS = ("natv2", "random", "nsga2", "optuna_tpe", "optuna_gp", "optuna_nsga2")


def parse_args(argv: list[str] | None = None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="NATS-Bench-format CSV (arch, accuracy, params_m, flops_m)")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seeds", type=int, default=11, help="number of seeds (0..N-1)")
    parser.add_argument("--budgets", default="50,100,300", help="comma-separated evaluation budgets")
    parser.add_argument("--methods", default=",".join(DEFAULT_METHODS), help="comma-separated methods")
    parser.add_argument("--workers", type=int, default=1, help="processes across runs")
    parser.add_argument("--derive", type=int, help="benchmark the table derived with this seed")
    parser.add_argument("--quick", action="store_true", help="1 seed at a budget of 20 (for tests)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    from dataclasses import asdict
    from functools import partial

    from pipeline.atomic import write_parquet_atomic
    from pipeline.bench.search import (
        METHODS,
        benchmark,
        derive_table,
        medians,
        plot_hv_vs_evaluations,
        search_seconds,
        true_front,
    )
    from pipeline.errors import ConfigError
    from pipeline.evaluate.table import TableEvaluator, load_table
    from pipeline.search.settings import NATv2Settings

    args = parse_args(argv)
    try:
        budgets = [int(b) for b in args.budgets.split(",")] if not args.quick else [20]
    except ValueError:
        raise ConfigError(f"--budgets {args.budgets!r}: expected comma-separated integers") from None
    methods = [m.strip() for m in args.methods.split(",")]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or args.seeds < 1 or min(budgets) < 1:
        raise ConfigError(f"bad arguments: methods must be among {', '.join(METHODS)}, seeds and budgets positive")
    seeds = list(range(1 if args.quick else args.seeds))
    table = load_table(args.table)
    if args.derive is not None:
        table = derive_table(table, args.derive)
    settings = NATv2Settings()
    needed = min(NATv2Settings(max_evaluations=b).evaluations_for_initial() for b in budgets)
    if needed > min(budgets):
        raise ConfigError(f"budget {min(budgets)} is below the {needed} evaluations the engine's initial archive needs")
    frame = benchmark(partial(TableEvaluator, table), true_front(table), budgets, seeds, methods, settings,
                      workers=args.workers)
    frame = frame.assign(table=str(args.table), derived=-1 if args.derive is None else args.derive)
    out = Path(args.out)
    write_parquet_atomic(frame, out / "bench_search.parquet",
                         {"settings": asdict(settings), "budgets": budgets, "seeds": seeds, "table": str(args.table)})
    summary = medians(frame)
    print(f"median HV ratio over {len(seeds)} seeds (table {args.table}"
          + (f", derived with seed {args.derive}" if args.derive is not None else "") + ")")
    print(summary.to_string(float_format=lambda v: f"{v:.4f}"))
    print("median seconds per run outside the true evaluations (the search's own cost)")
    print(search_seconds(frame).to_string(float_format=lambda v: f"{v:.2f}"))
    print(f"plot: {plot_hv_vs_evaluations(frame, out / 'hv_vs_evaluations.png')}")
    return 0
