"""Generation-quality benchmark: PNAG generate (own fit, or fitted on a NATv2 archive) vs PNAG search mode vs NATv2 vs random, regret per budget.

The job is ``pipeline.cli.bench_generate``; ``python -m pipeline bench_generate --help`` describes its arguments.
"""

from pipeline.cli.bench_generate import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
