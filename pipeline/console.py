"""What a job prints, and the copy of all of it in ``RUN_DIR/logs/<job>.log``.

``capture_console(job, level)`` replaces ``sys.stdout``/``sys.stderr`` for the job's lifetime with
``ConsoleStream`` objects that write every line to the job's log (buffered until the run directory
is known: ``attach_run_log``) and decide, line by line, what the terminal shows:

- lines Ray forwards from its workers and actors (``(RayTrainWorker pid=...) ...``) and Ray's own
  INFO log lines are shown only with ``--verbose`` (Ray Train's checkpoint and report chatter,
  the controller's start-up lines, core_worker messages, Tune's status); they stay in the log;
- the job's own progress (stdout) is shown except with ``--quiet``;
- warnings and errors (stderr) and the lines given to ``announce`` (stage headers, the summary)
  are always shown.

``progress_reporter`` gives the long loops one line per step, or a tqdm bar with the lines above
it when a terminal is attached. Nothing here is module state: the active capture is ``sys.stdout``.
"""

from __future__ import annotations

import io
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TextIO

Level = Literal["quiet", "normal", "verbose"]

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FORWARDED = re.compile(r"^\s*\((?:[\w.\-]+ )?pid=")  # a line Ray forwarded from a worker or actor
_RAY_INFO = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(?:INFO|DEBUG)\s")  # Ray's own log format


def plain(text: str) -> str:
    """``text`` without terminal colour codes."""
    return _ANSI.sub("", text)


def is_ray_chatter(line: str) -> bool:
    """A line that Ray, not this project, printed: hidden unless ``--verbose``."""
    text = plain(line)
    return bool(_FORWARDED.match(text) or _RAY_INFO.match(text))


class RunLog:
    """The job's log file; text written before the run directory is known is kept and written first."""

    def __init__(self, job: str) -> None:
        self.job = job
        self.path: Path | None = None
        self._pending: list[str] = []
        self._lock = threading.Lock()  # stdout and stderr share the file

    def attach(self, run_dir: str | Path) -> Path:
        """Start writing to ``run_dir/logs/<job>.log`` (appended: a resumed run keeps its history)."""
        with self._lock:
            return self._attach(Path(run_dir))

    def _attach(self, run_dir: Path) -> Path:
        if self.path is None:
            path = run_dir / "logs" / f"{self.job}.log"
            path.parent.mkdir(parents=True, exist_ok=True)
            stamp = time.strftime("%Y-%m-%d %H:%M:%S")
            with path.open("a", encoding="utf-8") as handle:
                handle.write(f"===== {stamp} {' '.join(sys.argv)}\n" + "".join(self._pending))
            self._pending.clear()
            self.path = path
        return self.path

    def write(self, text: str) -> None:
        text = plain(text)
        with self._lock:
            if self.path is None:
                self._pending.append(text)
                return
            with self.path.open("a", encoding="utf-8") as handle:
                handle.write(text)


class ConsoleStream(io.TextIOBase):
    """A ``sys.stdout``/``sys.stderr`` stand-in: every line to the log, chosen lines to the terminal."""

    def __init__(self, terminal: TextIO, log: RunLog, level: Level, is_err: bool) -> None:
        super().__init__()
        self.terminal = terminal
        self.log = log
        self.level = level
        self.is_err = is_err
        self._partial = ""
        self._lock = threading.Lock()  # Ray's log thread and progress watchers write concurrently

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.terminal.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.terminal, "encoding", "utf-8")

    def shows(self, line: str) -> bool:
        """Whether the terminal shows ``line`` at this level."""
        if self.level == "verbose":
            return True
        if is_ray_chatter(line):
            return False
        return self.is_err or self.level == "normal"

    def write(self, text: str) -> int:
        with self._lock:
            self.log.write(text)
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
            shown = [line for line in lines if self.shows(line)]
            if shown:
                self.terminal.write("\n".join(shown) + "\n")
        return len(text)

    def write_always(self, line: str) -> None:
        """Show ``line`` at every level (stage headers, the summary) and log it."""
        with self._lock:
            self.log.write(line + "\n")
            self.terminal.write(line + "\n")
            self.terminal.flush()

    def flush(self) -> None:
        self.terminal.flush()


def active_stream() -> ConsoleStream | None:
    """The capture installed by ``capture_console``, if any."""
    return sys.stdout if isinstance(sys.stdout, ConsoleStream) else None


def current_level() -> Level:
    """The level of the active capture ("normal" outside one)."""
    stream = active_stream()
    return stream.level if stream else "normal"


def attach_run_log(run_dir: str | Path) -> Path | None:
    """Send the job's log to ``run_dir/logs/`` from now on (no-op outside ``capture_console``)."""
    stream = active_stream()
    return stream.log.attach(run_dir) if stream else None


def run_log_path() -> Path | None:
    """The job's log file, once a run directory is attached."""
    stream = active_stream()
    return stream.log.path if stream else None


def write_log_only(text: str) -> None:
    """Write ``text`` to the job's log without showing it (a full traceback, for instance)."""
    stream = active_stream()
    if stream is not None:
        stream.log.write(text if text.endswith("\n") else text + "\n")


def announce(line: str) -> None:
    """Print ``line`` at every level, ``--quiet`` included (stage headers, summaries)."""
    stream = active_stream()
    if stream is None:
        print(line, flush=True)
    else:
        stream.write_always(line)


@contextmanager
def capture_console(job: str, level: Level = "normal", terminal: TextIO | None = None) -> Iterator[RunLog]:
    """Install the console capture for the block (see the module docstring); yields the job's log.

    ``terminal`` replaces both real streams (tests); by default they are the current ones.
    """
    log = RunLog(job)
    saved = sys.stdout, sys.stderr
    sys.stdout = ConsoleStream(terminal or saved[0], log, level, is_err=False)
    sys.stderr = ConsoleStream(terminal or saved[1], log, level, is_err=True)
    try:
        yield log
    finally:
        for stream in (sys.stdout, sys.stderr):
            if isinstance(stream, ConsoleStream) and stream._partial:
                stream.write("\n")
        sys.stdout, sys.stderr = saved


class ProgressReporter:
    """One line per step of a long loop; on a terminal, a tqdm bar below those lines."""

    def __init__(self, total: int, description: str, start: int = 0) -> None:
        stream = active_stream()
        self.level: Level = current_level()
        self.terminal = stream.terminal if stream else sys.stdout
        self.bar = None
        if self.level == "normal" and self.terminal.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, initial=start, desc=description, file=self.terminal,
                            leave=False, dynamic_ncols=True)

    def line(self, text: str, total: int | None = None) -> None:
        """Report one finished step with its line (``total``: the step count, once it is known)."""
        if self.bar is None:
            print(text, flush=True)
            return
        write_log_only(text)
        if total and self.bar.total != total:
            self.bar.total = total
        self.bar.write(text, file=self.terminal)
        self.bar.update(1)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@contextmanager
def progress_reporter(total: int, description: str, start: int = 0) -> Iterator[Callable[..., None]]:
    """``ProgressReporter`` for the block; yields its ``line`` method."""
    reporter = ProgressReporter(total, description, start)
    try:
        yield reporter.line
    finally:
        reporter.close()
