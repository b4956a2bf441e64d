"""Benchmark: supernet with an active architecture versus its extracted static subnet.

The job is ``pipeline.cli.bench_supernet``; ``python -m pipeline bench_supernet --help`` describes its arguments.
"""

from pipeline.cli.bench_supernet import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
