"""Import one of OFA's published MobileNetV3 supernets into a run directory, ready to search.

The job is ``pipeline.cli.import_supernet``; ``python -m pipeline import_supernet --help`` describes its arguments.
"""

from pipeline.cli.import_supernet import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
