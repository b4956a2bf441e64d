"""Export a supernet trained here in another tool's format (OFA's, for OFA, DyNAS-T and NSGANetV2).

The job is ``pipeline.cli.export_supernet``; ``python -m pipeline export_supernet --help`` describes its arguments.
"""

from pipeline.cli.export_supernet import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
