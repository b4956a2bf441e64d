"""Search-quality benchmark on a NATS-Bench-format table (figures in docs/benchmarks.md).

The job is ``pipeline.cli.bench_search``; ``python -m pipeline bench_search --help`` describes its arguments.
"""

from pipeline.cli.bench_search import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
