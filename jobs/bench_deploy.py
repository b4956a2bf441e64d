"""Deployment benchmark: INT8 against fp32 latency on one CPU thread, and top-1 after quantisation.

The job is ``pipeline.cli.bench_deploy``; ``python -m pipeline bench_deploy --help`` describes its arguments.
"""

from pipeline.cli.bench_deploy import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
