"""Data throughput is visible: each epoch's row and line carry the share of the step time spent
waiting for data, and a data-bound job says so once (``train.loop``, ``train.progress``)."""

from __future__ import annotations

import logging
import time

import pandas as pd
import pytest

from pipeline.config import load_config
from pipeline.train.progress import DATA_BOUND_SHARE, _Watcher
from pipeline.train.publish import format_progress, write_metrics

pytestmark = pytest.mark.usefixtures("one_torch_thread")

TINY = [
    "data.dataset=synthetic", "data.synthetic_images=64", "data.synthetic_classes=4", "data.batch_size=16",
    "supernet.stage_widths=[8,8,16,16,24]", "supernet.resolutions=[16]",
    "train.steps_per_epoch=2", "train.eval_subnets=0", "train.calibration_images=16", "train.eval_images=16",
    "train.num_workers=0", "train.threads_per_worker=1", "train.distillation=none",
    "train.phases=[{name: full, parts: [{epochs: 3, lr: 0.05}]}]",
]


def row(epoch: int, share: float | None) -> dict:
    values = {"epoch": epoch, "total_epochs": 3, "phase": "full", "part": 1, "part_epoch": epoch, "part_epochs": 3,
              "loss": 1.0, "lr": 0.05, "images_per_s": 100.0, "top1_max": 50.0, "top1_min": 40.0, "top1_best": 50.0}
    return values if share is None else {**values, "data_wait_share": share}


def test_epoch_line_shows_the_data_wait_share():
    assert "100 img/s (data wait 25%) | top1" in format_progress(row(1, 0.25))
    assert "data wait" not in format_progress(row(1, None))  # a row from before the share was measured


def test_a_data_bound_run_warns_once(tmp_path, caplog):
    path = tmp_path / "train_metrics.parquet"
    lines: list[str] = []
    watcher = _Watcher(path, lambda line, total=None: lines.append(line))
    with caplog.at_level(logging.WARNING, logger="pipeline.train.progress"):
        write_metrics(path, [row(1, 0.2)])
        watcher.poll()
        assert not caplog.records
        for epochs in ([row(1, 0.2), row(2, 0.7)], [row(1, 0.2), row(2, 0.7), row(3, 0.9)]):
            time.sleep(0.01)  # a new modification time
            write_metrics(path, epochs)
            watcher.poll()
    assert len(lines) == 3
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "data-bound" in warnings[0] and "epoch 2" in warnings[0] and "70%" in warnings[0]


def _train(tmp_path, overrides: list[str]) -> pd.DataFrame:
    from pipeline.train import train_supernet

    train_supernet(load_config(overrides=TINY + overrides), tmp_path)
    return pd.read_parquet(tmp_path / "train_metrics.parquet")


def test_training_rows_record_the_data_wait(tmp_path, caplog):
    with caplog.at_level(logging.INFO, logger="pipeline"):
        frame = _train(tmp_path, ["train.precision=bf16"])
    assert len(frame) == 3
    assert ((frame["data_wait_s"] >= 0) & (frame["data_wait_s"] <= frame["train_s"])).all()
    assert ((frame["data_wait_share"] >= 0) & (frame["data_wait_share"] < DATA_BOUND_SHARE)).all()
    assert frame["loss"].notna().all()
    lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("[train] epoch")]
    assert len(lines) == 3 and all("data wait" in line for line in lines)
    assert not [r for r in caplog.records if "data-bound" in r.getMessage()]


def test_a_slow_data_stream_is_reported_once(tmp_path, caplog, monkeypatch):
    import pipeline.train.loop as loop

    original = loop.SupernetTrainer._epoch_batches

    def slow_batches(self, global_epoch):
        for batch in original(self, global_epoch):
            time.sleep(0.5)  # a loader that cannot keep up
            yield batch

    monkeypatch.setattr(loop.SupernetTrainer, "_epoch_batches", slow_batches)
    with caplog.at_level(logging.INFO, logger="pipeline"):
        frame = _train(tmp_path, [])
    assert (frame["data_wait_share"] > DATA_BOUND_SHARE).all()
    assert (frame["data_wait_s"] >= 2 * 0.5).all()
    warnings = [r.getMessage() for r in caplog.records if "data-bound" in r.getMessage()]
    assert len(warnings) == 1 and "epoch 1" in warnings[0]
