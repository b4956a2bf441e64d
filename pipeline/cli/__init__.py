"""The command line: one sub-command per job, ``python -m pipeline <job> [arguments]``.

Each job is a module ``pipeline.cli.<job>`` whose docstring is its ``--help`` text and whose
``main`` parses the arguments and calls the library. ``jobs/<job>.py`` is the same job as a
script (``python jobs/<job>.py ...``, the form ``ray job submit`` and the Makefile use), and the
``nas-pipeline`` console script is ``python -m pipeline``. Every form runs ``main`` through
``pipeline.runtime.run_job``: one error line and exit status 2 for bad input, the run log.

Adding a job: write ``pipeline/cli/<job>.py`` with a docstring and ``main``, add its name to
``JOBS``, and add the three-line script ``jobs/<job>.py`` (``tests/test_cli.py`` checks all three).
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import sys

#: the sub-commands, in the order ``python -m pipeline --help`` lists them
JOBS = (
    "run_pipeline",
    "train_supernet",
    "import_supernet",
    "export_supernet",
    "search",
    "generate",
    "finetune",
    "report",
    "config_reference",
    "bench_supernet",
    "bench_ofav2",
    "bench_search",
    "bench_generate",
    "bench_eval",
    "bench_ofa_import",
    "bench_data",
    "bench_deploy",
)

PROG = "python -m pipeline"


def summary(job: str) -> str:
    """The first line of a job's docstring, read without importing the job."""
    spec = importlib.util.find_spec(f"{__name__}.{job}")
    if spec is None or spec.origin is None:
        return ""
    with open(spec.origin, encoding="utf-8") as handle:
        doc = ast.get_docstring(ast.parse(handle.read())) or ""
    return doc.strip().splitlines()[0] if doc.strip() else ""


def usage() -> str:
    width = max(len(job) for job in JOBS)
    lines = [f"usage: {PROG} <job> [arguments]   ({PROG} <job> --help describes one job)", "", "jobs:"]
    lines += [f"  {job:<{width}}  {summary(job)}" for job in JOBS]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    """Run the job named by the first argument with the remaining arguments; exits with its status."""
    argv = sys.argv[1:] if argv is None else list(argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(usage(), file=sys.stdout if argv else sys.stderr)
        sys.exit(0 if argv else 2)
    job, arguments = argv[0], argv[1:]
    if job not in JOBS:
        print(f"error: unknown job {job!r}; choose one of {', '.join(JOBS)}", file=sys.stderr)
        sys.exit(2)
    from pipeline.runtime import run_job

    module = importlib.import_module(f"{__name__}.{job}")
    sys.argv = [f"{PROG} {job}", *arguments]  # what argparse shows as the usage line's program
    run_job(module.main, job=job)
