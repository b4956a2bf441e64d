"""Fine-tune chosen subnets of a trained run with Ray Tune and export them to ONNX.

    python jobs/finetune.py --out RUN_DIR [--config FILE] [--set finetune.source=generated ...]
                            [--arch JSON ...]

The architectures come from the run's final front (default), the generator's picks
(``finetune.source=generated``), or are given with ``--arch`` (repeatable). Writes
RUN_DIR/finetuned.parquet and each subnet's deploy bundle RUN_DIR/models/<arch_id>/ (fp32.onnx,
one <profile>.int8.onnx per int8 hardware profile, card.json).
"""

from __future__ import annotations

from pathlib import Path

from pipeline.run_dir import RunDir
from pipeline.runtime import job_argument_parser, ray_session


def main() -> int:
    from pipeline.config import load_config
    from pipeline.console import attach_run_log
    from pipeline.errors import ConfigError
    from pipeline.preflight import check_pipeline_inputs
    from pipeline.stages import run_finetune_stage

    parser = job_argument_parser(__doc__)
    parser.add_argument("--arch", action="append", default=[], help="architecture JSON to fine-tune; repeatable")
    args = parser.parse_args()
    if not args.out:
        raise ConfigError("--out RUN_DIR is required: the run whose supernet is fine-tuned")
    run_dir = Path(args.out).resolve()
    config = load_config(args.config or RunDir(run_dir).stored_config(), args.overrides)
    if args.arch:
        config.finetune.source = "explicit"
        config.finetune.archs = list(args.arch)
    check_pipeline_inputs(config, ["finetune"], run_dir)  # the checkpoint and the data, before Ray starts
    attach_run_log(run_dir)
    with ray_session(config.ray):
        run_finetune_stage(config, run_dir)
    return 0
