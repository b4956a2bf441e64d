"""PNAG generation job: fit a budget-conditioned generator once, then answer any budget with no evaluation.

*fit* on a NATS-Bench-format table (at most N true evaluations; writes DIR/generator/):

    python jobs/generate.py --space natsbench --table T --evals N --seed S --budget-metric params_m --out DIR

*generate* from a saved generator (zero true evaluations; writes DIR2/generated.parquet):

    python jobs/generate.py --space natsbench --table T --generator DIR/generator --budgets 0.12,0.3,0.7 --out DIR2

From a finished ofav2 run (fits on RUN_DIR/archive.parquet, no new evaluation, saves RUN_DIR/generator/;
exact params/MACs from RUN_DIR/supernet/supernet.pt check the picks); then answer later, without Ray:

    python jobs/generate.py --from-run RUN_DIR [--budgets 1.0,2.0]
    python jobs/generate.py --generator RUN_DIR/generator --budgets 1.0,2.0

Fitting with ``--budgets`` also answers them. ``--mode search`` keeps the per-budget search (told the
budgets, it spends its evaluations on them and returns the best verified architecture within each;
with --from-run, the hybrid over the archive); its rows say ``mode=search``. generated.parquet: one row
per budget with budget, budget_metric, arch, arch_id, predicted_top1, top1 (measured, where known),
the costs, meets_budget, evaluations (true evaluations spent answering), mode and note. Several metrics:
``--budget-metric params_m,latency_ms@local_one_thread --budgets 0.5:0.2,1.0:0.4``.
``--config FILE [--set generate.key=value]`` reads the ``generate`` section; flags override it.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.run_dir import RunDir
from pipeline.runtime import job_argument_parser


def parse_args(argv: list[str] | None = None):
    parser = job_argument_parser(__doc__)
    parser.add_argument("--space", choices=("natsbench",), help="benchmark space (with --table)")
    parser.add_argument("--table", help="NATS-Bench-format CSV")
    parser.add_argument("--from-run", dest="from_run", help="finished ofav2 search run directory")
    parser.add_argument("--generator", help="a saved generator directory to answer --budgets with")
    parser.add_argument("--evals", type=int, help="true evaluations to fit on (overrides generate.evals)")
    parser.add_argument("--budgets", help="comma-separated budgets (':'-joined vectors for several metrics)")
    parser.add_argument("--budget-metric", dest="budget_metric", help="metric name(s), comma-separated")
    parser.add_argument("--seed", type=int, help="random seed (overrides run.seed)")
    parser.add_argument("--mode", choices=("generate", "search"), help="generate (default) or the per-budget search")
    parser.add_argument("--no-verify", dest="verify", action="store_false", default=None,
                        help="--mode search (experimental): do not truly evaluate the winners")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.out:
        RunDir(Path(args.out)).check_location()  # a file named as --out: one line, before any work
    import torch

    from pipeline.evaluate.ofav2_evaluator import open_run_for_generation
    from pipeline.generate.job_verbs import JobWiring, run_generate_job

    torch.set_num_threads(1)  # small networks: one thread is fastest and leaves the cores to Ray
    wiring = JobWiring(open_run=open_run_for_generation, run_files=RunDir,
                       default_out=lambda config: RunDir.default(config).root)
    return run_generate_job(args, wiring)
