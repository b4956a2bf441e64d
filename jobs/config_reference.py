"""Print the configuration reference (every key, its type and default) as Markdown.

The job is ``pipeline.cli.config_reference``; ``python -m pipeline config_reference --help`` describes its arguments.
"""

from pipeline.cli.config_reference import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
