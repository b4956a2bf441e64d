"""Generation-quality benchmark: PNAG generate (own fit, or fitted on a NATv2 archive) vs PNAG search mode vs NATv2 vs random, regret per budget.

    python jobs/bench_generate.py --table PATH --out DIR [--seeds 11] [--evals 300] [--derive 1] [--quick]

Per seed every method gets the same true evaluations (``--evals``). PNAG *generate* fits ONCE on them,
with budgets drawn continuously over the cost range, then answers 30 budgets it never saw (log-spaced
over the table's front, between interval ends) with zero further evaluations; PNAG *search* is the
per-budget search mode (told the budgets); NATv2 and random return their archive's best under each
budget. Regret is the table's best accuracy under the budget minus the true accuracy of the answer.
Writes DIR/bench_generate.parquet (one row per method, seed and budget),
DIR/bench_generate_summary.parquet, DIR/generators/seed_<S>/ (the fitted generators) and prints the
summary and the time to answer 1 and 100 budgets from seed 0's saved generator (one thread).
``--derive SEED`` benchmarks a derived table (same architectures and costs, accuracies re-ranked by a
seeded function; see ``jobs/bench_search.py``). ``--quick`` runs tiny settings (used by the test).
"""

from __future__ import annotations

from pathlib import Path


def parse_args(argv: list[str] | None = None):
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--table", required=True, help="NATS-Bench-format CSV")
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--seeds", type=int, default=11, help="number of seeds (0..seeds-1)")
    parser.add_argument("--evals", type=int, default=300, help="true evaluations per seed and method")
    parser.add_argument("--methods", default="generate,generate_natv2,search,natv2,random",
                        help="comma-separated subset of generate,generate_natv2,search,search_unverified,natv2,random")
    parser.add_argument("--workers", type=int, help="processes (default: CPU count)")
    parser.add_argument("--derive", type=int, help="benchmark the table derived with this seed (as bench_search)")
    parser.add_argument("--quick", action="store_true", help="tiny settings for a smoke test")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pipeline.atomic import write_parquet_atomic
    from pipeline.bench.generation import METHODS, answer_speed, benchmark_generation, front_budgets, summarise
    from pipeline.bench.search import derive_table
    from pipeline.config import GenerateConfig
    from pipeline.errors import ConfigError
    from pipeline.evaluate.table import load_table

    table = load_table(args.table)
    if args.derive is not None:
        table = derive_table(table, args.derive)
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]
    unknown = [m for m in methods if m not in METHODS]
    if unknown or not methods:
        raise ConfigError(f"--methods: unknown method(s) {', '.join(unknown) or '(none)'}; choose from {', '.join(METHODS)}")
    if args.seeds < 1 or args.evals < 6:
        raise ConfigError("--seeds must be >= 1 and --evals >= 6")
    settings = GenerateConfig()
    seeds, evals = range(args.seeds), args.evals
    if args.quick:
        settings = settings.model_copy(update=dict(
            training_steps=40, round_steps=5, evaluator_steps=100, evaluator_round_steps=20, samples_per_budget=32,
            pool_size=200, refit_every=3, batch_size=64))
        seeds, evals = range(min(args.seeds, 2)), min(evals, 40)
    out = Path(args.out)
    frame = benchmark_generation(table, seeds, evals, methods, settings=settings, workers=args.workers,
                                 log=lambda line: print(line, flush=True), out=out)
    summary = summarise(frame)
    speed = answer_speed(out / "generators" / f"seed_{seeds[0]}", table) if "generate" in methods else {}
    metadata = {"table": str(args.table), "derived": args.derive, "evals": evals, "seeds": list(seeds),
                "budgets": list(front_budgets(table)), "settings": settings.model_dump(mode="json"),
                "quick": args.quick, "answer_speed": speed}
    write_parquet_atomic(frame, out / "bench_generate.parquet", metadata)
    write_parquet_atomic(summary, out / "bench_generate_summary.parquet", metadata)
    per_budget = frame.pivot_table(index="budget", columns="method", values="regret", aggfunc="mean")
    derived = f", derived with seed {args.derive}" if args.derive is not None else ""
    print(f"table {args.table}{derived}; {len(seeds)} seeds; {evals} true evaluations per seed; "
          f"{frame['budget'].nunique()} budgets never given to a fit")
    print(summary.to_string(index=False, float_format=lambda v: f"{v:.3f}"))
    print("mean regret per budget:")
    print(per_budget.to_string(float_format=lambda v: f"{v:.3f}"))
    if speed:
        print("answering from a saved generator (one thread): " + ", ".join(f"{k} {v:.3f}" for k, v in speed.items()))
    return 0
