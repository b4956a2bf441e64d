"""RunDir: docs/design.md's layout, and the open/resume checks every job relies on."""

from __future__ import annotations

import pytest

from pipeline.config import load_config
from pipeline.errors import ConfigError
from pipeline.run_dir import RunDir


def test_layout_matches_design(tmp_path):
    run = RunDir(tmp_path)
    expected = {
        run.config_file: "config.yaml", run.supernet: "supernet/supernet.pt", run.archive: "archive.parquet",
        run.front_at(7): "fronts/iter_007.parquet", run.front: "front.parquet",
        run.generated: "generated.parquet", run.finetuned: "finetuned.parquet",
        run.plot("front.png"): "plots/front.png", run.model("abc"): "models/abc/fp32.onnx",
    }
    for path, relative in expected.items():
        assert path == tmp_path / relative


def test_new_run_refuses_an_existing_run_and_resume_needs_one(tmp_path):
    config = load_config(None)
    with pytest.raises(ConfigError, match="holds no run"):
        RunDir(tmp_path / "fresh").check(resume=True)
    _, opened = RunDir(tmp_path / "fresh").open(config, resume=False)
    assert opened.config_file.is_file() and opened.root.is_absolute()
    with pytest.raises(ConfigError, match="already holds a run"):
        RunDir(tmp_path / "fresh").open(config, resume=False)
    reopened_config, _ = RunDir(tmp_path / "fresh").open(None, resume=True)
    assert reopened_config.run.name == config.run.name


def test_out_naming_a_file_is_one_clear_error(tmp_path):
    target = tmp_path / "results.txt"
    target.write_text("not a run")
    with pytest.raises(ConfigError, match="is a file"):
        RunDir(target).check(resume=False)
    assert target.read_text() == "not a run"


def test_completed_stages_round_trip(tmp_path):
    run = RunDir(tmp_path)
    assert run.completed_stages() == []
    run.mark_completed("train", epochs=3)
    run.mark_completed("search")
    run.mark_completed("train", epochs=4)  # a rerun replaces its entry and moves it last
    assert run.completed_stages() == ["search", "train"]
