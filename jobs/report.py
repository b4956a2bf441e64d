"""Regenerate a run's report page, or compare several runs on one page.

The job is ``pipeline.cli.report``; ``python -m pipeline report --help`` describes its arguments.
"""

from pipeline.cli.report import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
