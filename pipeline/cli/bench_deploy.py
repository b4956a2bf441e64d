"""Benchmark deployment: INT8 against fp32 on this CPU, fp16 against fp32 on a GPU (``--parts gpu``).

    python jobs/bench_deploy.py [--out DIR] [--parts latency,accuracy,fronts] [--subnets 20]
                                [--resolutions 128,224] [--repeats 15] [--max-repeats 60]
                                [--target-rse 0.02] [--accuracy-subnets 8] [--demo-run runs/demo]
                                [--front-evaluations 40] [--gpu-batch 1]

The measurement is ``pipeline.bench.deploy`` (see its docstring): OFA MobileNetV3 w1.0 subnets
timed on one CPU thread as fp32 and as ONNX Runtime static INT8, and subnets of a trained run's
supernet (``--demo-run``, default the ``make demo`` run) quantised and scored on its test split,
and that supernet searched with NATv2 on fp32 latency and on INT8 latency side by side (fronts);
on a node with onnxruntime-gpu, the same OFA subnets as fp32 and fp16 on CUDA and TensorRT (gpu).
Writes DIR/deploy_<part>.csv and DIR/bench_deploy.json (default DIR: runs/bench_deploy).
"""

from __future__ import annotations

from pipeline.runtime import add_output_arguments


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split(",") if p.strip())


def main() -> int:
    import argparse

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="runs/bench_deploy", help="folder for the CSV and JSON results")
    parser.add_argument("--parts", default="latency,accuracy,fronts",
                        help="comma-separated parts to run, in order (gpu: fp16 against fp32 on CUDA/TensorRT)")
    parser.add_argument("--subnets", type=int, default=20, help="OFA subnets per resolution (latency)")
    parser.add_argument("--resolutions", type=_ints, default=(128, 224), help="comma-separated resolutions")
    parser.add_argument("--repeats", type=int, default=15, help="timed runs at least, per model")
    parser.add_argument("--max-repeats", type=int, default=60, help="timed runs at most, per model")
    parser.add_argument("--target-rse", type=float, default=0.02, help="stop timing when the median's RSE is below")
    parser.add_argument("--accuracy-subnets", type=int, default=8, help="subnets of the trained supernet (accuracy)")
    parser.add_argument("--demo-run", default="runs/demo", help="the trained run whose supernet the accuracy uses")
    parser.add_argument("--front-evaluations", type=int, default=40, help="evaluations per search (fronts)")
    parser.add_argument("--gpu-batch", type=int, default=1, help="images per timed run (gpu)")
    parser.add_argument("--seed", type=int, default=0)
    add_output_arguments(parser)
    args = parser.parse_args()
    from pipeline.bench.deploy import DeployBenchSettings, check_parts, run_deploy_bench

    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    check_parts(parts)
    settings = DeployBenchSettings(
        subnets=args.subnets, resolutions=args.resolutions, repeats=args.repeats, max_repeats=args.max_repeats,
        target_rse=args.target_rse, accuracy_subnets=args.accuracy_subnets, demo_run=args.demo_run, seed=args.seed,
        front_evaluations=args.front_evaluations, gpu_batch=args.gpu_batch)
    run_deploy_bench(args.out, settings, parts)
    return 0
