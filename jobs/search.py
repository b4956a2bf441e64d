"""NATv2 search: a NATS-Bench-format table (benchmark mode) or a trained supernet run directory.

The job is ``pipeline.cli.search``; ``python -m pipeline search --help`` describes its arguments.
"""

from pipeline.cli.search import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
