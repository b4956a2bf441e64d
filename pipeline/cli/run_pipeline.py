"""The whole pipeline in one job: train, search, generate, fine-tune, report.

    python jobs/run_pipeline.py --config FILE [--set key.path=value ...] [--out RUN_DIR] [--resume]
                                [--stages train,search,...]

Locally it starts a Ray on 127.0.0.1 sized by ``ray.num_cpus``; under
``ray job submit --working-dir . -- python jobs/run_pipeline.py ...`` it attaches to the cluster.
``--resume`` continues from the last completed stage (and inside it, from its last step).
"""

from __future__ import annotations

import time
from pathlib import Path

from pipeline.runtime import job_argument_parser, open_run, ray_session


def main() -> int:
    from pipeline.config import load_config
    from pipeline.preflight import check_pipeline_inputs
    from pipeline.run_dir import RunDir
    from pipeline.stages import STAGES, check_stages, run_pipeline

    parser = job_argument_parser(__doc__)
    parser.add_argument("--stages", default=",".join(STAGES), help="comma-separated stages to run, in order")
    args = parser.parse_args()
    stored = Path(args.out) / "config.yaml" if args.out else None
    if args.resume and args.config is None and stored is not None:
        config = load_config(stored, args.overrides)
    else:
        config = load_config(args.config, args.overrides)
    stages = [s.strip() for s in args.stages.split(",") if s.strip()]
    check_stages(stages)
    run_dir = (RunDir(Path(args.out)) if args.out else RunDir.default(config)).check(args.resume)
    check_pipeline_inputs(config, stages, run_dir.root, args.resume)  # data, checkpoints, objectives: before Ray
    started = time.perf_counter()
    # a cluster that does not answer fails here, before the run directory is written, so the
    # same command can simply be rerun
    with ray_session(config.ray):
        config, run_dir = open_run(run_dir, config, args.resume)
        run_pipeline(config, run_dir.root, resume=args.resume, stages=stages)
    print(f"pipeline finished in {time.perf_counter() - started:.0f} s; results in {run_dir}")
    return 0
