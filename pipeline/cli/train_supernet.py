"""Train an OFAv2 supernet with progressive shrinking on Ray Train.

    python jobs/train_supernet.py --config FILE [--set key.path=value ...] [--out RUN_DIR] [--resume]

Runs the same way locally (starts a Ray sized by ``ray.num_cpus``) and under
``ray job submit --working-dir . -- python jobs/train_supernet.py ...`` (attaches to the cluster).
Writes RUN_DIR/config.yaml, RUN_DIR/supernet/supernet.pt, RUN_DIR/train_metrics.parquet and Ray
Train's checkpoints under RUN_DIR/train/.
"""

from __future__ import annotations

from pathlib import Path

from pipeline.config import load_config
from pipeline.preflight import check_pipeline_inputs
from pipeline.run_dir import RunDir
from pipeline.runtime import job_argument_parser, open_run, ray_session


def main() -> int:
    args = job_argument_parser(__doc__).parse_args()
    config = load_config(args.config, args.overrides)
    run_dir = (RunDir(Path(args.out)) if args.out else RunDir.default(config)).check(args.resume)
    check_pipeline_inputs(config, ["train"])  # the data path's layout, before Ray starts
    with ray_session(config.ray, enabled=config.train.num_workers > 0):
        from pipeline.stages import run_train_stage

        config, run_dir = open_run(run_dir, config, args.resume)  # refuses a finished run without --resume
        metrics = run_train_stage(config, run_dir.root, resume=args.resume)
    print(f"supernet: {metrics['supernet_path']}")
    print(f"metrics: {metrics['metrics_path']} (last epoch top-1 max {metrics.get('top1_max', float('nan')):.2f}, "
          f"best {metrics.get('top1_best', float('nan')):.2f})")
    return 0
