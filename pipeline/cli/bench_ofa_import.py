"""Benchmark the OFA import: exactness against OFA's code, import cost, and OFAv2 grown on a trained base.

    python jobs/bench_ofa_import.py --out DIR [--quick] [--parts exactness,import,warm_start]
                                    [--config FILE] [--set key.path=value ...]

The measurement is ``pipeline.bench.ofa_import`` (see its docstring). It needs OFA's ``ofa``
package (``make setup`` installs it with ``--no-deps``). Writes DIR/bench_ofa_import.parquet.
"""

from __future__ import annotations

from pipeline.runtime import job_argument_parser

PARTS = ("exactness", "import", "warm_start")


def main() -> int:
    from pipeline.errors import ConfigError

    parser = job_argument_parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="tiny settings (for the test)")
    parser.add_argument("--parts", default=",".join(PARTS), help="comma-separated parts to run")
    args = parser.parse_args()
    parts = tuple(p.strip() for p in args.parts.split(",") if p.strip())
    unknown = [p for p in parts if p not in PARTS]
    if unknown or not parts:
        raise ConfigError(f"--parts: unknown part(s) {unknown}; choose from {', '.join(PARTS)}")
    from pipeline.bench.ofa_import import run_ofa_import_bench

    run_ofa_import_bench(args.config, args.overrides, args.out or "runs/bench_ofa_import", quick=args.quick,
                         parts=parts)
    return 0

