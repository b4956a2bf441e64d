"""Evaluation-stage benchmark: evaluator scaling, latency repeatability and prediction, archive and dispatch.

The job is ``pipeline.cli.bench_eval``; ``python -m pipeline bench_eval --help`` describes its arguments.
"""

from pipeline.cli.bench_eval import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
