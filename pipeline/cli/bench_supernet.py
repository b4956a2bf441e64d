"""Benchmark: supernet with an active architecture versus its extracted static subnet.

    python jobs/bench_supernet.py --out DIR [--quick]

Variants SE_B and EE_D; architectures min, max and 3 random; batch 32, resolution 64, 2 threads.
Ratios are medians over repeats of side-by-side (paired, alternating) timings in this process;
target: median of both ratios <= 1.05. Writes DIR/bench_supernet.parquet (atomically) with
columns variant, arch_id, train_step_ratio, inference_ratio, max_abs_diff (plus the raw times).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from pipeline.errors import ConfigError

TARGET = 1.05


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--quick", action="store_true", help="few repeats (a smoke run, not a measurement)")
    parser.add_argument("--variants", nargs="+", default=["SE_B", "EE_D"])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=None, help="timed pairs per measurement (default 15, quick 3)")
    parser.add_argument("--random", type=int, default=3, help="random architectures per variant")
    parser.add_argument("--classes", type=int, default=200)
    parser.add_argument("--stage-widths", type=int, nargs=5, default=[24, 40, 80, 112, 160])
    parser.add_argument("--seed", type=int, default=0)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pipeline.atomic import write_parquet_atomic
    from pipeline.bench.supernet import COLUMNS, VARIANTS, run_benchmark

    unknown = [v for v in args.variants if v not in VARIANTS]
    if unknown:
        raise ConfigError(f"unknown variant {unknown[0]!r}; expected one of: {', '.join(VARIANTS)}")
    if min(args.batch, args.resolution, args.threads, args.classes) < 1 or args.random < 0:
        raise ConfigError("--batch, --resolution, --threads and --classes must be positive, --random >= 0")
    repeats = args.repeats or (3 if args.quick else 15)
    frame = run_benchmark(args.variants, args.batch, args.resolution, args.threads, repeats, args.random,
                          args.classes, args.stage_widths, args.seed)
    settings = {"batch": args.batch, "resolution": args.resolution, "threads": args.threads,
                "repeats": repeats, "quick": args.quick}
    path = write_parquet_atomic(frame, Path(args.out) / "bench_supernet.parquet", {"bench_settings": settings})
    print()
    print(frame[COLUMNS].to_string(index=False, float_format=lambda v: f"{v:.3g}"))
    train, infer = frame["train_step_ratio"].median(), frame["inference_ratio"].median()
    print(f"\nmedian train_step_ratio {train:.3f}, median inference_ratio {infer:.3f} "
          f"(target <= {TARGET}); max_abs_diff {frame['max_abs_diff'].max():.1e}; {settings}")
    print(f"CPU-time check: median train_step_ratio_cpu {frame['train_step_ratio_cpu'].median():.3f}, "
          f"median inference_ratio_cpu {frame['inference_ratio_cpu'].median():.3f}")
    print(f"wrote {path}")
    return 0
