"""Fine-tune chosen subnets of a trained run with Ray Tune and export them to ONNX.

The job is ``pipeline.cli.finetune``; ``python -m pipeline finetune --help`` describes its arguments.
"""

from pipeline.cli.finetune import main
from pipeline.runtime import run_job

if __name__ == "__main__":
    run_job(main)
