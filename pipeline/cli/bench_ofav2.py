"""Small reproduction of the OFAv2 ablation, plus supernet-training throughput on Ray Train.

    python jobs/bench_ofav2.py --out DIR [--quick] [--config FILE] [--set key.path=value ...]
                               [--skip-throughput | --skip-ablation]

The measurement is ``pipeline.bench.ofav2`` (see its docstring): four variants (baseline with a
fixed teacher, baseline + dynamic teacher, EE_D + dynamic teacher, EE_DP + dynamic teacher)
trained with the same scaled OFAv2 schedule, the best evaluated subnet's validation top-1 after
every phase, and the 2-worker / 1-worker training throughput. Writes DIR/bench_ofav2.parquet.
"""

from __future__ import annotations

from pipeline.runtime import job_argument_parser


def main() -> int:
    parser = job_argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings (for the test)")
    parser.add_argument("--skip-throughput", action="store_true", help="only the ablation")
    parser.add_argument("--skip-ablation", action="store_true", help="only the throughput")
    args = parser.parse_args()
    from pipeline.bench.ofav2 import run_ofav2_bench

    run_ofav2_bench(args.config, args.overrides, args.out or "runs/bench_ofav2", quick=args.quick,
                    ablation_on=not args.skip_ablation, throughput_on=not args.skip_throughput)
    return 0
