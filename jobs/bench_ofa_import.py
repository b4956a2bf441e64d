"""Benchmark the OFA import: exactness against OFA's code, import cost, and OFAv2 grown on a trained base.

The job is ``pipeline.cli.bench_ofa_import``; ``python -m pipeline bench_ofa_import --help`` describes its arguments.
"""

from pipeline.cli.bench_ofa_import import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
