"""What a failure inside Ray looks like to the user: the project's one line, never a wall of frames.

A ``PipelineError`` raised in a Ray Train worker, an actor or a Tune trial reaches the driver
wrapped, often several times: ``ray.exceptions.RayTaskError`` (``.cause``), Ray Train V2's
``TrainingFailedError`` family (``WorkerGroupError.worker_failures``, ``ControllerError
.controller_failure``, each worker failure a ``UserExceptionWithTraceback`` holding ``_base_exc``)
and Tune's ``TuneError`` (chained through ``__cause__``). ``user_error`` walks every such link and
returns the ``PipelineError`` underneath, if any.

Anything else is a bug or an environment problem: ``describe_failure`` gives one line naming the
stage, the innermost error's type and the first line of its message; the job writes the full
traceback (with the remote frames Ray keeps in the error's text) to the run's log file and points
to it.
"""

from __future__ import annotations

from collections.abc import Iterator

from pipeline.errors import PipelineError

#: attributes through which Ray, Ray Train and Ray Tune hold the exception they wrap
_WRAPPED = ("cause", "_base_exc", "controller_failure", "__cause__", "__context__")


class StageFailed(Exception):
    """An unexpected error in one stage of a job; ``error`` is what was raised."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(f"{stage}: {type(error).__name__}: {error}")
        self.stage = stage
        self.error = error


def _wrapped(exc: BaseException) -> list[BaseException]:
    inner = [getattr(exc, name, None) for name in _WRAPPED
             if not (name == "__context__" and exc.__suppress_context__)]
    failures = getattr(exc, "worker_failures", None)
    if isinstance(failures, dict):
        inner += [failures[rank] for rank in sorted(failures)]
    if isinstance(exc, StageFailed):
        inner.append(exc.error)
    inner += [arg for arg in getattr(exc, "args", ()) if isinstance(arg, BaseException)]
    return [e for e in inner if isinstance(e, BaseException) and e is not exc]


def chain(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps, outermost first (each once)."""
    seen: set[int] = set()
    queue = [exc]
    while queue:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        queue += _wrapped(current)


def _is_ray_wrapper(exc: BaseException) -> bool:
    """Ray's dual-class ``RayTaskError(DataError)`` is a DataError whose text is a whole traceback."""
    return type(exc).__module__.startswith("ray.") or "RayTaskError" in type(exc).__name__


def user_error(exc: BaseException) -> PipelineError | None:
    """The ``PipelineError`` a failure wraps (the innermost plain one), or None."""
    found = [e for e in chain(exc) if isinstance(e, PipelineError)]
    plain = [e for e in found if not _is_ray_wrapper(e)]
    return (plain or found or [None])[-1]


def innermost(exc: BaseException) -> BaseException:
    """The deepest exception that is not one of Ray's wrappers (``exc`` itself when none is)."""
    candidates = [e for e in chain(exc) if not _is_ray_wrapper(e) and not isinstance(e, StageFailed)]
    return candidates[-1] if candidates else exc


def first_line(exc: BaseException) -> str:
    """The first non-empty line of ``exc``'s message (its type name when it has none)."""
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    return lines[0] if lines else type(exc).__name__


def describe_failure(exc: BaseException, stage: str, log_file: str | None) -> str:
    """One line for an unexpected failure: stage, innermost error, where the full traceback is."""
    stage = exc.stage if isinstance(exc, StageFailed) else stage
    cause = innermost(exc)
    where = f"; the full traceback is in {log_file}" if log_file else ""
    return f"the {stage} stage failed: {type(cause).__name__}: {first_line(cause)}{where}"
