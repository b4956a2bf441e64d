"""Process-level plumbing shared by every job: Ray environment, Ray start/attach, error exits.

- ``prepare_ray_environment`` must run before ``import ray``. Locally it pins Ray to 127.0.0.1
  (``RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0``); when attaching to a cluster (``RAY_ADDRESS`` set) it
  leaves that alone. Token authentication stays on (``RAY_AUTH_MODE=token``).
- ``connect_ray`` attaches to ``RAY_ADDRESS`` without sizing arguments, or starts a local Ray
  sized by config. ``ray_session`` wraps it as a context manager that shuts Ray down on exit
  only when it connected or started Ray itself (a Ray already initialised is left running).
- ``open_run`` opens (or reopens) a run directory and sends the job's output to its log too.
- ``run_job`` runs a job's main inside the console capture (``pipeline.console``: ``--verbose``,
  ``--quiet``, the copy in ``RUN_DIR/logs/``). A ``PipelineError``, also one raised inside a Ray
  worker, actor or Tune trial (``pipeline.failures.user_error``), becomes one line on stderr and
  exit status 2; any other error one line naming the stage, with the traceback in the log
  (exit status 1). A job that opened a run directory ends with its summary.
"""

from __future__ import annotations

import argparse
import logging
import os
import socket
import sys
import tempfile
import traceback
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.config import PipelineConfig, RayConfig
from pipeline.console import Level, announce, attach_run_log, capture_console, run_log_path, write_log_only
from pipeline.errors import ClusterError
from pipeline.failures import describe_failure, first_line, user_error
from pipeline.run_dir import RunDir

_log = logging.getLogger(__name__)


def prepare_ray_environment() -> None:
    """Set the Ray environment variables this project relies on (call before importing ray)."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    # Tune's new output engine prints its experiment box even at verbose=0; the legacy one is silent
    os.environ.setdefault("RAY_AIR_NEW_OUTPUT", "0")
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
    False nothing is started (a job that may run without Ray: only the environment is prepared)
    and False is yielded.
    """
    prepare_ray_environment()  # also for in-process Ray Train, which starts no Ray here
    owns = connect_ray(num_cpus or settings.num_cpus, settings.namespace) if enabled else False
    try:
        yield owns
    finally:
        if owns:
            import ray

            ray.shutdown()


def open_run(run_dir: RunDir, config: PipelineConfig | None, resume: bool) -> tuple[PipelineConfig, RunDir]:
    """``run_dir.open(config, resume)``; from here on the job's output also goes to ``logs/<job>.log``."""
    config, opened = run_dir.open(config, resume)
    attach_run_log(opened.root)
    return config, opened


def job_argument_parser(description: str) -> argparse.ArgumentParser:
    """The common job arguments: ``--config``, ``--set``, ``--out``, ``--resume``, ``--verbose``, ``--quiet``.

    ``description`` is the job module's docstring; ``--help`` prints it as written.
    """
    parser = argparse.ArgumentParser(description=description, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--config", help="YAML config file (defaults are used when omitted)")
    parser.add_argument(
        "--set", dest="overrides", action="append", default=[], metavar="KEY.PATH=VALUE",
        help="override one config value; repeatable",
    )
    parser.add_argument("--out", help="run directory (default: runs/<run.name>)")
    parser.add_argument("--resume", action="store_true", help="continue from the last completed step")
    add_output_arguments(parser)
    return parser


def add_output_arguments(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``--verbose`` (Ray's own logs too) and ``--quiet`` (stage headers, warnings, summary only)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--verbose", action="store_true", help="also show Ray's own log lines")
    group.add_argument("--quiet", action="store_true", help="show only stage headers, warnings and the summary")
    return parser


def output_level(argv: list[str]) -> Level:
    """The console level that ``argv``'s ``--verbose`` / ``--quiet`` ask for."""
    known, _ = add_output_arguments(argparse.ArgumentParser(add_help=False)).parse_known_args(argv)
    return "verbose" if known.verbose else "quiet" if known.quiet else "normal"


def _unexpected(exc: BaseException, job: str) -> str:
    """Log the traceback (in the run's log, else a temporary file); one line pointing to it."""
    text = "".join(traceback.format_exception(exc))
    log_file = run_log_path()
    if log_file is not None:
        write_log_only(text)
    else:
        with tempfile.NamedTemporaryFile("w", prefix=f"{job}-error-", suffix=".log", delete=False) as handle:
            handle.write(text)
            log_file = Path(handle.name)
    return describe_failure(exc, job, str(log_file))


def _run_main(main: Callable[[], int | None], job: str) -> int:
    try:
        status = main() or 0
    except KeyboardInterrupt:
        _log.error("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - every failure ends as one line
        found = user_error(exc)
        if found is not None:
            _log.error(f"error: {first_line(found)}")
            return 2
        _log.error(f"error: {_unexpected(exc, job)}")
        return 1
    log_file = run_log_path()
    if status == 0 and log_file is not None:
        from pipeline.summary import summary_lines

        for line in summary_lines(log_file.parent.parent):
            announce(line)
    return status


def run_job(main: Callable[[], int | None], job: str | None = None) -> None:
    """Run a job's main in the console capture; failures become one line (see the module docstring)."""
    job = job or Path(sys.argv[0]).stem
    with capture_console(job, output_level(sys.argv[1:])):
        status = _run_main(main, job)
    sys.exit(status)
