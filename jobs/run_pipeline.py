"""The whole pipeline in one job: train, search, generate, fine-tune, report.

The job is ``pipeline.cli.run_pipeline``; ``python -m pipeline run_pipeline --help`` describes its arguments.
"""

from pipeline.cli.run_pipeline import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
