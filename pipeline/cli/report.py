"""Regenerate a run's report page, or compare several runs on one page.

    python jobs/report.py --out RUN_DIR                       # RUN_DIR/report.html (plots redrawn)
    python jobs/report.py --compare RUN_A RUN_B --html FILE   # results.compare_runs as HTML
"""

from __future__ import annotations

from pathlib import Path


def main() -> int:
    import argparse

    from pipeline.errors import ConfigError
    from pipeline.report import write_comparison, write_report
    from pipeline.run_dir import RunDir

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", help="the run directory whose report.html is written")
    parser.add_argument("--compare", nargs="+", help="run directories to compare")
    parser.add_argument("--html", help="with --compare: the HTML file to write")
    args = parser.parse_args()
    if bool(args.out) == bool(args.compare):
        raise ConfigError("give either --out RUN_DIR or --compare RUN_DIR ... --html FILE")
    if args.compare:
        if not args.html:
            raise ConfigError("--compare needs --html FILE, the page to write")
        for run_dir in args.compare:
            if not RunDir(Path(run_dir)).archive.is_file():
                raise ConfigError(f"{run_dir} is not a run directory with a search archive")
        print(f"comparison: {write_comparison(args.compare, args.html)}")
        return 0
    if not Path(args.out).is_dir():
        raise ConfigError(f"{args.out} is not a run directory")
    print(f"report: {write_report(args.out)}")
    return 0
