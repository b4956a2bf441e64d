"""The OFA import as users run it: ``jobs/import_supernet.py``, then the pipeline resumed on the run.

Bad input runs the real job as a subprocess and must give one ``error:`` line, exit status 2 and
nothing written to RUN_DIR. OFA's other published supernets are built with OFA's own classes
(``OFAProxylessNASNets``, ``OFAResNets``), so their key layouts are the real ones. The end-to-end
case imports an OFA-format file with three classes and searches it on a small JPEG folder at
reduced resolutions; growing OFAv2 runs the training job with ``train.init_from``.
"""

from __future__ import annotations

import os
import pickle
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from PIL import Image

from pipeline.bench.ofa_reference import ofa_mobilenet_v3, ofa_network
from pipeline.supernet.builder import build_supernet
from pipeline.supernet.checkpoint import save_supernet

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
TINY = REPO / "jobs" / "configs" / "pipeline_tiny.yaml"


def run(argv: list[str], timeout: int = 600) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


def assert_one_error_line(result: subprocess.CompletedProcess, fragment: str) -> None:
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    assert result.returncode == 2, result.stderr[-2000:]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-2000:]
    assert fragment in lines[0], lines[0]


class RunsCode:
    """Unpickling this calls ``os.system``: what a malicious checkpoint does."""

    def __reduce__(self):
        return (os.system, ("echo pwned > /dev/null",))


@pytest.fixture(scope="module")
def ofa_file(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ofa") / "ofa_mbv3_d234_e346_k357_w1.0"
    torch.save({"state_dict": ofa_mobilenet_v3(3, 1.0).state_dict()}, path)
    return path


def _proxyless(path: Path) -> None:
    net = ofa_network("OFAProxylessNASNets", n_classes=10, width_mult=1.3, ks_list=[3, 5, 7],
                      expand_ratio_list=[3, 4, 6], depth_list=[2, 3, 4])
    torch.save({"state_dict": net.state_dict()}, path)


def _resnet(path: Path) -> None:
    net = ofa_network("OFAResNets", n_classes=10, depth_list=[0], expand_ratio_list=[0.25], width_mult_list=[0.65])
    torch.save({"state_dict": net.state_dict()}, path)


def _truncated(path: Path, ofa_file: Path) -> None:
    path.write_bytes(ofa_file.read_bytes()[: ofa_file.stat().st_size // 2])


def _code(path: Path) -> None:
    path.write_bytes(pickle.dumps({"state_dict": RunsCode()}))


CASES = {
    "proxyless": (_proxyless, "ofa_proxyless_d234_e346_k357_w1.3", [],
                  "not an OFA MobileNetV3 supernet; it looks like OFA's ProxylessNAS supernet"),
    "resnet50": (_resnet, "ofa_resnet50", [], "not an OFA MobileNetV3 supernet; it looks like OFA's ResNet-50"),
    "other width": (None, None, ["--set", "supernet.width_mult=1.2"],
                    "supernet.width_mult is 1.2 in the config but the file's tensors say 1.0"),
    "truncated": (_truncated, "truncated.pth", [], "is not a readable torch file"),
    "random bytes": (lambda p: p.write_bytes(np.random.default_rng(0).bytes(4096)), "random.pth", [],
                     "is not a readable torch file"),
    "runs code": (_code, "malicious.pth", [], "could run code when loaded; refused"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_bad_ofa_files_are_one_line_and_write_nothing(case, ofa_file, tmp_path):
    make, name, extra, fragment = CASES[case]
    path = ofa_file
    if make is not None:
        path = tmp_path / name
        make(path, ofa_file) if make is _truncated else make(path)
    out = tmp_path / "run"
    result = run(["jobs/import_supernet.py", "--ofa", str(path), "--out", str(out), *extra], timeout=240)
    assert_one_error_line(result, fragment)
    assert not out.exists()


def test_an_existing_run_dir_needs_resume(ofa_file, tmp_path):
    out = tmp_path / "run"
    first = run(["jobs/import_supernet.py", "--ofa", str(ofa_file), "--out", str(out)], timeout=240)
    assert first.returncode == 0, first.stderr[-2000:]
    before = {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()}
    again = run(["jobs/import_supernet.py", "--ofa", str(ofa_file), "--out", str(out)], timeout=240)
    assert_one_error_line(again, "already holds a run; pass --resume")
    assert {p: p.stat().st_mtime_ns for p in out.rglob("*") if p.is_file()} == before


def test_init_from_a_checkpoint_matching_nothing_is_refused_before_ray(tmp_path):
    wide = tmp_path / "wide.pt"
    save_supernet(wide, build_supernet({"width_mult": 2.0, "early_exits": False}, 4, seed=0))
    out = tmp_path / "run"
    result = run(["jobs/train_supernet.py", "--config", str(TINY), "--out", str(out),
                  "--set", f"train.init_from={wide}"], timeout=240)
    assert_one_error_line(result, "no tensor's name and shape match the configured supernet")
    assert not (out / "config.yaml").exists()


def _image_folder(root: Path, classes: int = 3, per_class: int = 24) -> Path:
    rng = np.random.default_rng(0)
    for label in range(classes):
        for split, count in (("train", per_class), ("test", 6)):
            folder = root / split / f"n0000{label}"
            folder.mkdir(parents=True, exist_ok=True)
            for index in range(count):
                base = np.zeros((40, 40, 3), np.uint8)
                base[..., label] = 160  # each class has its own dominant colour
                noise = rng.integers(0, 90, (40, 40, 3), dtype=np.uint8)
                Image.fromarray(base + noise).save(folder / f"img{index}.JPEG", format="JPEG")
    return root


def test_import_then_search_writes_a_front(ofa_file, tmp_path):
    """OFA's file with three classes, imported at reduced resolutions, searched on a JPEG folder."""
    data = _image_folder(tmp_path / "images")
    tiny = yaml.safe_load(TINY.read_text())
    config = {key: tiny[key] for key in ("run", "ray", "evaluate", "search")}
    config["data"] = {"dataset": "folder", "path": str(data), "image_size": 40, "batch_size": 16}
    config["search"].update({"max_evaluations": 8, "initial_size": 4, "candidates_per_iteration": 4})
    config_file = tmp_path / "search.yaml"
    config_file.write_text(yaml.safe_dump(config))
    out = tmp_path / "run"
    imported = run(["jobs/import_supernet.py", "--ofa", str(ofa_file), "--out", str(out), "--config",
                    str(config_file), "--set", "supernet.resolutions=[32,40]"], timeout=240)
    assert imported.returncode == 0, imported.stderr[-3000:]
    assert "train stage marked as done" in imported.stdout
    searched = run(["jobs/run_pipeline.py", "--out", str(out), "--resume", "--stages", "search"])
    assert searched.returncode == 0, (searched.stdout + searched.stderr)[-3000:]
    assert "train: already completed" in searched.stdout or "train" not in searched.stdout
    front = pd.read_parquet(out / "front.parquet")
    archive = pd.read_parquet(out / "archive.parquet")
    assert len(archive) >= 8 and not front.empty
    assert set(archive["resolution"] if "resolution" in archive else [32]) <= {32, 40}


def test_growing_ofav2_on_an_imported_supernet_trains_only_the_listed_phases(ofa_file, tmp_path):
    """``train.init_from`` on the training job: the phases start at height, the new heads are named."""
    base = tmp_path / "base"
    first = run(["jobs/import_supernet.py", "--ofa", str(ofa_file), "--out", str(base),
                 "--set", "supernet.resolutions=[32,40]"], timeout=240)
    assert first.returncode == 0, first.stderr[-2000:]
    data = _image_folder(tmp_path / "images")
    phases = "[{name: height, parts: [{epochs: 1, lr: 0.001, subnets_per_step: 2}]}]"
    out = tmp_path / "grown"
    grown = run(["jobs/train_supernet.py", "--config", str(TINY), "--out", str(out),
                 "--set", "data.dataset=folder", "--set", f"data.path={data}", "--set", "data.image_size=40",
                 "--set", "supernet.stage_widths=[24,40,80,112,160]", "--set", "supernet.resolutions=[32,40]",
                 "--set", "supernet.dense_skips=false",
                 "--set", f"train.init_from={base / 'supernet' / 'supernet.pt'}", "--set", f"train.phases={phases}",
                 "--set", "train.epochs_scale=1", "--set", "train.steps_per_epoch=1"])
    assert grown.returncode == 0, (grown.stdout + grown.stderr)[-3000:]
    assert "initialised 475 tensors" in grown.stdout
    for exit_number in range(1, 5):
        assert f"exit {exit_number} head start new" in grown.stdout
    history = pd.read_parquet(out / "train_metrics.parquet")
    assert set(history["phase"]) == {"height"}
    assert (history["teacher"] == "init_from").all()
