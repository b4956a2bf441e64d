"""Process-level plumbing shared by every job: Ray environment, Ray start/attach, error exits.

- ``prepare_ray_environment`` must run before ``import ray``. Locally it pins Ray to 127.0.0.1
  (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``); when attaching to a cluster (``RAY_ADDRESS`` set) it
  leaves that alone. Token authentication stays on (``RAY_AUTH_MODE=token``).
- ``connect_ray`` attaches to ``RAY_ADDRESS`` without sizing arguments, or starts a local Ray
  sized by config.
- ``run_job`` turns a ``PipelineError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable

from pipeline.errors import PipelineError


def prepare_ray_environment() -> None:
    """Set the Ray environment variables this project relies on (call before importing ray)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not os.environ.get("RAY_ADDRESS"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def connect_ray(num_cpus: int | None = None, namespace: str = "nas") -> bool:
    """Attach to the cluster named by ``RAY_ADDRESS`` or start a local Ray on 127.0.0.1.

    Returns True when this call started Ray (so the caller should shut it down).
    """
    prepare_ray_environment()
    import ray

    if ray.is_initialized():
        return False
    if os.environ.get("RAY_ADDRESS"):
        ray.init(namespace=namespace, log_to_driver=True)
        return True
    ray.init(
        num_cpus=num_cpus,
        namespace=namespace,
        include_dashboard=False,
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )
    return True


def job_argument_parser(description: str) -> argparse.ArgumentParser:
    """The common job arguments: ``--config``, ``--set``, ``--out``, ``--resume``."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--config", help="YAML config file (defaults are used when omitted)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
        help="override one config value; repeatable",
    )
    parser.add_argument("--out", help="run directory (default: runs/<run.name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the last completed step")
    return parser


def run_job(main: Callable[[], int | None]) -> None:
    """Run a job's main; user errors become one line on stderr and exit status 2."""
    try:
        status = main()
    except PipelineError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(status or 0)
