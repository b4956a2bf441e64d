"""What a job shows on the terminal, and the copy of all of it in ``RUN_DIR/logs/<job>.log``.

The library reports through ``logging`` (``logging.getLogger(__name__)``: info for progress,
warning for what the user should act on). ``capture_console(job, level)`` is the job's console
for the block: two handlers on the ``pipeline`` logger,

- ``RunLogHandler``: every record into the job's log (buffered until the run directory is known:
  ``attach_run_log``);
- ``TerminalHandler``: what the terminal shows at the level. Info (progress) is shown except with
  ``--quiet``; warnings and errors always (on stderr); the lines given to ``announce`` (stage
  headers, the summary) always; its ``RayLinesFilter`` hides the lines Ray printed (forwarded from
  workers and actors: ``(RayTrainWorker pid=...) ...``; Ray's own INFO log lines), which only
  ``--verbose`` shows; they stay in the log.

Ray and Tune print to ``sys.stdout``/``sys.stderr`` themselves, so for the block those are
``LineStream`` objects that turn every complete line into a record (stdout lines as info, stderr
lines as warnings) of the ``pipeline.console`` logger: one path for everything.

``progress_reporter`` gives the long loops one line per step, or a tqdm bar with the lines above
it when a terminal is attached. Nothing here is module state: the active console is found
through ``sys.stdout``.
"""

from __future__ import annotations

import io
import logging
import re
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Literal, TextIO

Level = Literal["quiet", "normal", "verbose"]

#: the logger every library module's logger descends from
LIBRARY_LOGGER = "pipeline"
#: a record with this attribute set is shown at every level (``announce``)
ALWAYS_SHOWN = "console_always_shown"

_ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")
_FORWARDED = re.compile(r"^\s*\((?:[\w.\-]+ )?pid=")  # a line Ray forwarded from a worker or actor
_RAY_INFO = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+\s+(?:INFO|DEBUG)\s")  # Ray's own log format

_log = logging.getLogger(__name__)


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
        self._lock = threading.Lock()  # every handler and stream shares the file

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


class RunLogHandler(logging.Handler):
    """Every record, as its message, into the job's log."""

    def __init__(self, log: RunLog) -> None:
        super().__init__()
        self.log = log

    def emit(self, record: logging.LogRecord) -> None:
        self.log.write(record.getMessage() + "\n")


class RayLinesFilter(logging.Filter):
    """Drops the lines Ray printed (see ``is_ray_chatter``) from the terminal, announced lines excepted."""

    def filter(self, record: logging.LogRecord) -> bool:
        return getattr(record, ALWAYS_SHOWN, False) or not is_ray_chatter(record.getMessage())


class TerminalHandler(logging.Handler):
    """What the terminal shows at ``level`` (see the module docstring); warnings go to ``stderr``."""

    def __init__(self, stdout: TextIO, stderr: TextIO, level: Level) -> None:
        super().__init__()
        self.stdout, self.stderr, self.console_level = stdout, stderr, level
        if level != "verbose":
            self.addFilter(RayLinesFilter())

    def shows(self, record: logging.LogRecord) -> bool:
        if getattr(record, ALWAYS_SHOWN, False) or record.levelno >= logging.WARNING:
            return True
        return self.console_level != "quiet"

    def emit(self, record: logging.LogRecord) -> None:
        if not self.shows(record):
            return
        always = getattr(record, ALWAYS_SHOWN, False)
        terminal = self.stderr if record.levelno >= logging.WARNING and not always else self.stdout
        terminal.write(record.getMessage() + "\n")
        terminal.flush()


class LineStream(io.TextIOBase):
    """A ``sys.stdout``/``sys.stderr`` stand-in: every complete line becomes a record at ``levelno``."""

    def __init__(self, console: Console, terminal: TextIO, levelno: int) -> None:
        super().__init__()
        self.console = console
        self.terminal = terminal
        self.levelno = levelno
        self._partial = ""
        self._lock = threading.Lock()  # Ray's log thread and progress watchers write concurrently
        self._emitting = threading.local()  # a handler that writes here while emitting goes to the terminal

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self.terminal.isatty()

    @property
    def encoding(self) -> str:  # type: ignore[override]
        return getattr(self.terminal, "encoding", "utf-8")

    def write(self, text: str) -> int:
        if getattr(self._emitting, "active", False):  # e.g. logging reporting a failed handler
            self.terminal.write(text)
            return len(text)
        with self._lock:
            lines = (self._partial + text).split("\n")
            self._partial = lines.pop()
        self._emitting.active = True
        try:
            for line in lines:
                self.console.logger.log(self.levelno, line)
        finally:
            self._emitting.active = False
        return len(text)

    def end(self) -> None:
        """Emit a last line that has no newline yet."""
        if self._partial:
            self.write("\n")

    def flush(self) -> None:
        self.terminal.flush()


class Console:
    """The job's console: its log, its level, the real terminal streams and the stream logger."""

    def __init__(self, log: RunLog, level: Level, stdout: TextIO, stderr: TextIO) -> None:
        self.log, self.level, self.stdout, self.stderr = log, level, stdout, stderr
        self.logger = logging.getLogger(f"{LIBRARY_LOGGER}.console")


def active_console() -> Console | None:
    """The console installed by ``capture_console``, if any."""
    return sys.stdout.console if isinstance(sys.stdout, LineStream) else None


def current_level() -> Level:
    """The level of the active console ("normal" outside one)."""
    console = active_console()
    return console.level if console else "normal"


def attach_run_log(run_dir: str | Path) -> Path | None:
    """Send the job's log to ``run_dir/logs/`` from now on (no-op outside ``capture_console``)."""
    console = active_console()
    return console.log.attach(run_dir) if console else None


def run_log_path() -> Path | None:
    """The job's log file, once a run directory is attached."""
    console = active_console()
    return console.log.path if console else None


def write_log_only(text: str) -> None:
    """Write ``text`` to the job's log without showing it (a full traceback, for instance)."""
    console = active_console()
    if console is not None:
        console.log.write(text if text.endswith("\n") else text + "\n")


def announce(line: str) -> None:
    """Show ``line`` at every level, ``--quiet`` included (stage headers, summaries)."""
    console = active_console()
    if console is None:
        print(line, flush=True)
    else:
        console.logger.info(line, extra={ALWAYS_SHOWN: True})


@contextmanager
def capture_console(job: str, level: Level = "normal", terminal: TextIO | None = None) -> Iterator[RunLog]:
    """Install the job's console for the block (see the module docstring); yields the job's log.

    ``terminal`` replaces both real streams (tests); by default they are the current ones.
    """
    saved = sys.stdout, sys.stderr
    console = Console(RunLog(job), level, terminal or saved[0], terminal or saved[1])
    library = logging.getLogger(LIBRARY_LOGGER)
    saved_logger = library.level, library.propagate
    handlers = [RunLogHandler(console.log), TerminalHandler(console.stdout, console.stderr, level)]
    for handler in handlers:
        library.addHandler(handler)
    library.setLevel(logging.INFO)
    library.propagate = False  # the console shows each record once
    streams = LineStream(console, console.stdout, logging.INFO), LineStream(console, console.stderr, logging.WARNING)
    sys.stdout, sys.stderr = streams
    try:
        yield console.log
    finally:
        for stream in streams:
            stream.end()
        sys.stdout, sys.stderr = saved
        for handler in handlers:
            library.removeHandler(handler)
        library.level, library.propagate = saved_logger


class ProgressReporter:
    """One line per step of a long loop; on a terminal, a tqdm bar below those lines."""

    def __init__(self, total: int, description: str, start: int = 0) -> None:
        console = active_console()
        self.level: Level = current_level()
        self.terminal = console.stdout if console else sys.stdout
        self.bar = None
        if self.level == "normal" and self.terminal.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total or None, initial=start, desc=description, file=self.terminal,
                            leave=False, dynamic_ncols=True)

    def line(self, text: str, total: int | None = None) -> None:
        """Report one finished step with its line (``total``: the step count, once it is known)."""
        if self.bar is None:
            _log.info(text)
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
