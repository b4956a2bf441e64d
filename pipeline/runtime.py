"""Process-level plumbing shared by every job: Ray environment, Ray start/attach, error exits.

- ``prepare_ray_environment`` must run before ``import ray``. Locally it pins Ray to 127.0.0.1
  (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``); when attaching to a cluster (``RAY_ADDRESS`` set) it
  leaves that alone. Token authentication stays on (``RAY_AUTH_MODE=token``).
- ``connect_ray`` attaches to ``RAY_ADDRESS`` without sizing arguments, or starts a local Ray
  sized by config. ``ray_session`` wraps it as a context manager that shuts Ray down on exit
  only when it connected or started Ray itself (a Ray already initialised is left running).
- ``run_job`` turns a ``PipelineError`` into one line on stderr and exit status 2.
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from pipeline.config import RayConfig
from pipeline.errors import ClusterError, PipelineError


def prepare_ray_environment() -> None:
    """Set the Ray environment variables this project relies on (call before importing ray)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if not os.environ.get("RAY_ADDRESS"):
        os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")


def check_cluster_reachable(address: str, timeout_s: float = 5.0) -> None:
    """Fail fast, with one line, when ``RAY_ADDRESS`` names a host:port that does not answer.

    ``ray.init`` would otherwise retry for minutes. ``auto`` and ``ray://`` addresses are left to Ray.
    """
    if address in ("auto", "local") or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise ClusterError(f"RAY_ADDRESS={address!r} is not of the form host:port")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s):
            pass
    except OSError as exc:
        raise ClusterError(f"the Ray cluster at {address} (RAY_ADDRESS) does not answer: {exc.strerror or exc}") from None


def connect_ray(num_cpus: int | None = None, namespace: str = "nas") -> bool:
    """Attach to the cluster named by ``RAY_ADDRESS`` or start a local Ray on 127.0.0.1.

    Returns True when this call started Ray (so the caller should shut it down).
    """
    prepare_ray_environment()
    import ray

    if ray.is_initialized():
        return False
    address = os.environ.get("RAY_ADDRESS")
    if address:
        check_cluster_reachable(address)
        try:
            ray.init(namespace=namespace, log_to_driver=True)
        except (ConnectionError, TimeoutError) as exc:
            raise ClusterError(f"cannot attach to the Ray cluster at {address}: {exc}") from None
        return True
    ray.init(
        address="local",  # always a fresh local Ray: never attach to another instance on the machine
        num_cpus=num_cpus,
        namespace=namespace,
        # the dashboard (on loopback) serves the state API that Ray Train's placement-group
        # cleaner polls, and lets a laptop user `ray job submit` to this Ray as well
        include_dashboard=True,
        dashboard_host="127.0.0.1",
        _node_ip_address="127.0.0.1",
        log_to_driver=True,
    )
    return True


@contextmanager
def ray_session(settings: RayConfig, *, num_cpus: int | None = None, enabled: bool = True) -> Iterator[bool]:
    """Ray for the ``with`` block: ``connect_ray(num_cpus or settings.num_cpus, settings.namespace)``.

    Yields whether this block connected Ray itself; only then is ``ray.shutdown()`` called on exit
    (also on an error), so a caller that had Ray initialised already keeps it. With ``enabled``
    False nothing is started (a job that may run without Ray) and False is yielded.
    """
    owns = connect_ray(num_cpus or settings.num_cpus, settings.namespace) if enabled else False
    try:
        yield owns
    finally:
        if owns:
            import ray

            ray.shutdown()


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
