"""Small reproduction of the OFAv2 ablation, plus supernet-training throughput on Ray Train.

The job is ``pipeline.cli.bench_ofav2``; ``python -m pipeline bench_ofav2 --help`` describes its arguments.
"""

from pipeline.cli.bench_ofav2 import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
