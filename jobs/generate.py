"""PNAG generation job: fit a budget-conditioned generator once, then answer any budget with no evaluation.

The job is ``pipeline.cli.generate``; ``python -m pipeline generate --help`` describes its arguments.
"""

from pipeline.cli.generate import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
