"""Benchmark: streamed image data - memory against data-set size, loader throughput, Ray Data across nodes.

    python jobs/bench_data.py --out DIR [--parts memory throughput scaling gpu] [--work DIR] [--quick]

memory: peak RSS of a training worker and of an evaluator actor (fresh processes) on generated
ILSVRC folders of 5,000 and 40,000 JPEGs at 256 px, streamed and held in memory (decoded at
--memory-image-size). throughput: decoded-and-augmented images per second against OFA's w1.0
supernet's training images per second at 224 px, batch 64, on 1 and --workers cores (target
ratio >= 1.5). scaling: Ray Data decoding on a simulated cluster with 1 and 2 CPU-only nodes
beside the trainer's node. gpu (asked for by name, on a CUDA node): the same supernet trained on
one GPU in fp32 and in bf16 with channels_last, side by side, against the data path's rate.
Writes DIR/bench_data.csv and DIR/bench_data.json; the generated folders stay in --work (default
DIR/work), so a second run can reuse them.
"""

from __future__ import annotations

import argparse
from pathlib import Path

PARTS = ("memory", "throughput", "scaling", "gpu")
DEFAULT_PARTS = ("memory", "throughput", "scaling")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", required=True, help="output directory")
    parser.add_argument("--work", default=None, help="folder for the generated image folders (default OUT/work)")
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(DEFAULT_PARTS),
                        help="gpu (not a default): fp32 against bf16 + channels_last training on one CUDA GPU")
    parser.add_argument("--sizes", type=int, nargs=2, default=[5000, 40000], help="the two folder sizes (memory)")
    parser.add_argument("--memory-image-size", type=int, default=128, help="decode size of the memory probes")
    parser.add_argument("--workers", type=int, default=2, help="DataLoader decode processes (the loader parallelism)")
    parser.add_argument("--quick", action="store_true", help="few batches and steps (a smoke run, not a measurement)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from pipeline.bench.data import run_data_bench

    run_data_bench(Path(args.out), list(args.parts), work=Path(args.work) if args.work else None,
                   sizes=(args.sizes[0], args.sizes[1]), memory_image_size=args.memory_image_size,
                   workers=args.workers, quick=args.quick)
    return 0
