"""Fast checks of what a user sees: the one-line failures under Ray's wrappers, the console
capture's levels and log copy, the driver's preflight checks and the report page (no Ray start)."""

from __future__ import annotations

import io
import sys

import pandas as pd
import pytest

from pipeline import console
from pipeline.errors import CheckpointError, DataError
from pipeline.failures import StageFailed, describe_failure, user_error


def test_a_pipeline_error_inside_a_ray_task_is_found_with_its_own_message():
    from ray.exceptions import RayTaskError

    wrapped = RayTaskError("load", "Traceback (most recent call last):\n  many frames", DataError("no such dir")
                           ).as_instanceof_cause()
    found = user_error(wrapped)
    assert type(found) is DataError and str(found) == "no such dir"


def test_a_pipeline_error_in_a_train_v2_worker_group_failure_is_found():
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
    from ray.train.v2.api.exceptions import ControllerError, WorkerGroupError

    worker = UserExceptionWithTraceback(CheckpointError("bad supernet.pt"), "Traceback ...\nframes")
    failure = WorkerGroupError("rank 0 failed", {0: worker})
    assert str(user_error(failure)) == "bad supernet.pt"
    assert str(user_error(StageFailed("train", ControllerError(failure)))) == "bad supernet.pt"


def test_a_pipeline_error_under_tune_error_chaining_is_found():
    from ray.tune.error import TuneError

    try:
        try:
            raise DataError("truncated batch")
        except DataError as exc:
            raise TuneError("trial failed") from exc
    except TuneError as outer:
        assert str(user_error(outer)) == "truncated batch"


def test_an_unexpected_worker_error_is_one_line_naming_the_stage_and_the_log():
    from ray.train.v2._internal.exceptions import UserExceptionWithTraceback
    from ray.train.v2.api.exceptions import WorkerGroupError

    worker = UserExceptionWithTraceback(ZeroDivisionError("division by zero"), "Traceback\n  frame\n  frame")
    failure = StageFailed("train", WorkerGroupError("rank 0:\nTraceback\n  frame", {0: worker}))
    assert user_error(failure) is None
    line = describe_failure(failure, "run_pipeline", "/runs/x/logs/run_pipeline.log")
    assert line == ("the train stage failed: ZeroDivisionError: division by zero; "
                    "the full traceback is in /runs/x/logs/run_pipeline.log")
    assert "\n" not in line


@pytest.fixture
def captured():
    """The terminal the console capture writes to in these tests."""
    return io.StringIO()


FORWARDED = "\x1b[36m(RayTrainWorker pid=4086)\x1b[0m Reporting training result 1: TrainingReport(...)"
RAY_INFO = "2026-12-03 12:16:28,750\tINFO worker.py:2029 -- Started a local Ray instance."


@pytest.mark.parametrize("level, shown", [
    ("normal", ["progress", "warning: careful", "[1/5] train ..."]),
    ("quiet", ["warning: careful", "[1/5] train ..."]),
    ("verbose", [RAY_INFO, FORWARDED, "progress", "warning: careful", "[1/5] train ..."]),
])
def test_the_console_shows_by_level_and_logs_everything(captured, tmp_path, level, shown):
    with console.capture_console("job", level, terminal=captured):
        print(RAY_INFO, file=sys.stderr)
        print(FORWARDED)
        console.attach_run_log(tmp_path)
        print("progress")
        print("warning: careful", file=sys.stderr)
        console.announce("[1/5] train ...")
    assert [console.plain(line) for line in captured.getvalue().splitlines()] == [console.plain(s) for s in shown]
    log = (tmp_path / "logs" / "job.log").read_text()
    for line in (RAY_INFO, FORWARDED, "progress", "warning: careful", "[1/5] train ..."):
        assert log.count(console.plain(line)) == 1, log
    assert "\x1b[" not in log


def test_progress_lines_are_plain_lines_without_a_terminal(captured):
    with console.capture_console("job", terminal=captured), console.progress_reporter(2, "train") as report:
        report("epoch 1/2", total=2)
        report("epoch 2/2", total=2)
    assert captured.getvalue().splitlines() == ["epoch 1/2", "epoch 2/2"]


def test_preflight_finds_a_folder_data_set_without_class_folders(tmp_path):
    from pipeline.config import DataConfig
    from pipeline.data import check_data

    (tmp_path / "loose.png").write_bytes(b"")
    with pytest.raises(DataError, match="2 class folders"):
        check_data(DataConfig(dataset="folder", path=str(tmp_path)))
    with pytest.raises(DataError, match="expected layout"):
        check_data(DataConfig(dataset="cifar10", path=str(tmp_path)))


def test_preflight_refuses_a_checkpoint_of_another_space(tmp_path, tiny_config):
    from pipeline.preflight import check_supernet_checkpoint
    from pipeline.space.ofav2 import OFAv2Space
    from pipeline.supernet import OFAv2Supernet
    from pipeline.supernet.checkpoint import save_supernet

    path = save_supernet(tmp_path / "supernet.pt", OFAv2Supernet(OFAv2Space(stage_widths=(8, 8, 16, 16, 24),
                                                                            resolutions=(16, 24)), num_classes=4))
    with pytest.raises(CheckpointError, match="supernet.resolutions"):
        check_supernet_checkpoint(path, tiny_config)


def test_the_report_of_a_partial_run_says_what_is_missing(tmp_path, tiny_config):
    from pipeline.config import dump_config
    from pipeline.report import render_report

    dump_config(tiny_config, tmp_path / "config.yaml")
    page = render_report(tmp_path)
    assert "run.name" in page and "no final front yet" in page and "not been trained yet" in page


def test_the_report_front_table_has_one_row_per_front_row(tmp_path):
    from pipeline.report import front_section
    from pipeline.run_dir import RunDir

    front = pd.DataFrame({"arch_id": ["a", "b"], "top1": [50.0, 60.0], "params_m": [0.1, 0.2],
                          "latency_ms@cpu": [1.0, 2.0]})
    front.to_parquet(tmp_path / "front.parquet")
    table = front_section(RunDir(tmp_path))
    assert 'class="sortable"' in table and table.count("<tr>") == 1 + len(front)
    assert table.index(">b<") < table.index(">a<")  # best top-1 first


def test_accuracy_after_quantisation_is_shown_beside_top1_but_not_the_exits(tmp_path):
    from pipeline.report import front_section
    from pipeline.run_dir import RunDir
    from pipeline.summary import best_rows

    front = pd.DataFrame({"arch_id": ["a"], "top1": [61.5], "top1@exit2": [40.0], "top1@cpu_int8": [59.25],
                          "params_m": [0.1], "latency_ms@cpu_int8": [1.5]})
    front.to_parquet(tmp_path / "front.parquet")
    table = front_section(RunDir(tmp_path))
    assert "top1@cpu_int8" in table and "59.25" in table and "top1@exit2" not in table
    line = best_rows(front, objectives=["top1@cpu_int8", "latency_ms@cpu_int8"])[0]
    assert "top-1 61.50%" in line and "top-1 59.25% (cpu_int8)" in line and "latency 1.50 ms (cpu_int8)" in line
