"""Train an OFAv2 supernet with progressive shrinking on Ray Train.

The job is ``pipeline.cli.train_supernet``; ``python -m pipeline train_supernet --help`` describes its arguments.
"""

from pipeline.cli.train_supernet import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
