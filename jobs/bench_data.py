"""Benchmark: streamed image data - memory against data-set size, loader throughput, Ray Data across nodes.

The job is ``pipeline.cli.bench_data``; ``python -m pipeline bench_data --help`` describes its arguments.
"""

from pipeline.cli.bench_data import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
