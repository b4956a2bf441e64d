"""What rank 0 publishes after every epoch, for evaluators and people watching the run.

- ``RUN_DIR/supernet/supernet.pt``: the supernet (``pipeline.supernet.checkpoint.save_supernet``)
  with its position and top-1 in ``extra``; written to a temporary file and moved into place, so an
  evaluator never reads half a file.
- ``RUN_DIR/train_metrics.parquet``: one row per epoch (phase, part, epoch, loss, lr, images/s,
  the share of the step time spent waiting for data, top-1 of the max/min/sampled subnets), rewritten atomically from the checkpointed history, so a
  resumed run's file equals an uninterrupted run's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
import torch.nn as nn

from pipeline.atomic import write_parquet_atomic
from pipeline.supernet.checkpoint import save_supernet
from pipeline.train.files import TrainFiles


def write_metrics(path: Path, history: list[dict[str, Any]]) -> None:
    write_parquet_atomic(pd.DataFrame(history), path)


def publish_epoch(run_dir: Path, net: nn.Module, history: list[dict[str, Any]], extra: dict[str, Any]) -> None:
    save_supernet(TrainFiles(run_dir).supernet, net, extra=extra)  # atomic (tmp file + os.replace)
    write_metrics(TrainFiles(run_dir).metrics, history)


def data_wait_share(row: dict[str, Any]) -> float:
    """The epoch's share of step time spent waiting for data; NaN for rows written before it was measured."""
    value = row.get("data_wait_share")
    return float(value) if value is not None else math.nan


def format_progress(row: dict[str, Any]) -> str:
    """One progress line per epoch."""
    share = data_wait_share(row)
    waiting = f" (data wait {share:.0%})" if math.isfinite(share) else ""
    return (
        f"[train] epoch {row['epoch']}/{row['total_epochs']} {row['phase']}/{row['part']} "
        f"({row['part_epoch']}/{row['part_epochs']}) loss {row['loss']:.3f} lr {row['lr']:.2e} "
        f"{row['images_per_s']:.0f} img/s{waiting} | top1 max {row['top1_max']:.1f} min {row['top1_min']:.1f} "
        f"best {row['top1_best']:.1f}"
    )
