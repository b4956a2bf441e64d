"""The driver's view of supernet training: one line per epoch, printed once.

Rank 0 publishes ``RUN_DIR/train_metrics.parquet`` atomically after every epoch (``publish``).
``epoch_lines`` watches that file from the driver while ``trainer.fit()`` runs and reports each new
row once, through the ``Progress`` the caller passes (the stage layer passes the console's: a tqdm
bar on a terminal, plain lines otherwise; by default, plain lines). Workers print nothing themselves: Ray would forward their lines with a prefix (Ray
Train V2 even twice, through its print patch), and a ``--quiet`` run would show them.

The first epoch whose data wait exceeds ``DATA_BOUND_SHARE`` of its step time also logs one
warning that the job is data-bound; later epochs only show their share in their line.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from ray.tune import Callback

from pipeline.train.publish import data_wait_share, format_progress

_log = logging.getLogger(__name__)

#: an epoch that waits for data longer than this share of its step time is data-bound
DATA_BOUND_SHARE = 0.5

#: ``reporter(total, description)``: a context manager that yields ``line(text, total=None)``,
#: called once per finished step (``total``: the step count, once it is known)
ProgressReporter = Callable[[int, str], AbstractContextManager[Callable[..., None]]]


@contextmanager
def plain_lines(total: int, description: str) -> Iterator[Callable[..., None]]:
    """The default reporter: one printed line per step."""
    yield _log_line


@dataclass(frozen=True)
class Progress:
    """How a long loop shows its steps: the reporter, and whether Ray Tune shows its own trial table."""

    reporter: ProgressReporter = plain_lines
    verbose: bool = False


#: plain lines, Tune's table hidden: what a caller that passes no ``Progress`` gets
PLAIN_PROGRESS = Progress()


class _Watcher:
    """Polls the metrics file; reports rows past ``seen`` (a retried epoch is reported again)."""

    def __init__(self, path: Path, report) -> None:
        self.path = path
        self.report = report
        self.stamp: float | None = None
        self.seen = len(self.read()) if path.is_file() else 0
        self.stamp = self.mtime()
        self.warned_data_bound = False

    def mtime(self) -> float | None:
        try:
            return self.path.stat().st_mtime_ns
        except OSError:
            return None

    def read(self) -> pd.DataFrame:
        try:
            return pd.read_parquet(self.path)
        except Exception:  # noqa: BLE001 - missing or being replaced: read it next time
            return pd.DataFrame()

    def poll(self) -> None:
        stamp = self.mtime()
        if stamp is None or stamp == self.stamp:
            return
        self.stamp = stamp
        frame = self.read()
        if len(frame) < self.seen:  # a worker failure rolled the history back to a checkpoint
            self.seen = len(frame)
        for row in frame.iloc[self.seen:].to_dict("records"):
            self.report(format_progress(row), total=int(row.get("total_epochs") or 0) or None)
            self.warn_if_data_bound(row)
        self.seen = max(self.seen, len(frame))

    def warn_if_data_bound(self, row: dict) -> None:
        """One warning per job, at the first epoch that waited for data most of its step time."""
        share = data_wait_share(row)
        if self.warned_data_bound or not share > DATA_BOUND_SHARE:
            return
        self.warned_data_bound = True
        _log.warning(f"[train] data-bound: epoch {row.get('epoch')} waited for data {share:.0%} of its step time "
                     f"(more than {DATA_BOUND_SHARE:.0%}); the data path, not the model, limits the speed")


@contextmanager
def epoch_lines(metrics_path: str | Path, progress: Progress = PLAIN_PROGRESS, poll_s: float = 0.5) -> Iterator[None]:
    """Report every epoch that lands in ``metrics_path`` while the block runs (see the docstring)."""
    stop = threading.Event()
    with progress.reporter(0, "train") as report:
        watcher = _Watcher(Path(metrics_path), report)

        def watch() -> None:
            while not stop.wait(poll_s):
                watcher.poll()

        thread = threading.Thread(target=watch, name="epoch-lines", daemon=True)
        thread.start()
        try:
            yield
        finally:
            stop.set()
            thread.join()
            watcher.poll()



class TrialLines(Callback):
    """A Ray Tune callback: one line per finished fine-tuning trial, through ``report(line, total=)``.

    Tune pickles its callbacks with the experiment state, so the reporter (which holds the
    terminal) is dropped from the pickled state; an unpickled copy prints plain lines.
    """

    def __init__(self, total: int, report: Callable[..., None]) -> None:
        self.total = total
        self.finished = 0
        self.report = report

    def __getstate__(self) -> dict:
        return {"total": self.total, "finished": self.finished}

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        self.report = _log_line

    def on_trial_complete(self, iteration, trials, trial, **info) -> None:
        self.finished += 1
        row = trial.last_result or {}
        top1, params = row.get("top1", float("nan")), row.get("params_m", float("nan"))
        self.report(f"[finetune] {self.finished}/{self.total} {row.get('arch_id', trial.trial_id)}: "
                    f"top-1 {top1:.2f}% params {params:.3f} M, {row.get('best_epochs', '?')} epoch(s), "
                    f"{_deployed(row)}", total=self.total)

    def on_trial_error(self, iteration, trials, trial, **info) -> None:
        self.finished += 1
        self.report(f"[finetune] {self.finished}/{self.total} trial {trial.trial_id} failed "
                    f"(details in {trial.local_path or 'the Tune storage'})", total=self.total)


def _log_line(line: str, total: int | None = None) -> None:
    _log.info(line)


def _deployed(row: dict) -> str:
    """Where a finished trial's models went: its folder, and how many INT8 models it holds."""
    folder = Path(str(row.get("onnx_path", "?"))).parent
    int8 = sum(1 for key in row if key.startswith("int8_agreement@"))
    return f"models/{folder.name}/" + (f" (fp32 + {int8} INT8)" if int8 else "")
