"""The bad-input catalogue: every case gets one clear line, a non-zero exit, no traceback,
and leaves no output file that looks complete.

Each case runs a real job as a subprocess, the way a user would, with the default worker counts
of ``jobs/configs/pipeline_tiny.yaml``. Cases are chosen to fail before any long work: most are
caught by the driver's checks before Ray starts (``pipeline.preflight``), so the whole catalogue
takes seconds per case; the few marked ``through Ray`` fail inside a Ray Train worker, the way a
file that only reading reveals as bad does, and check that the error still reaches the user as
its one line.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
TINY = "jobs/configs/pipeline_tiny.yaml"
NATS = REPO.parent / "shared" / "bench" / "natsbench_tss_cifar10.csv"
RESULT_FILES = ("archive.parquet", "front.parquet", "generated.parquet", "finetuned.parquet", "train_metrics.parquet")


@dataclass
class Case:
    name: str
    argv: Callable[[Path], list[str]]
    expect: str  # a fragment of the one error line
    setup: Callable[[Path], None] = lambda tmp: None
    env: dict[str, str] = field(default_factory=dict)


def _write(path: Path, text: str | bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    (path.write_bytes if isinstance(text, bytes) else path.write_text)(text)


def _foreign_checkpoint(tmp: Path) -> None:
    (tmp / "run" / "supernet").mkdir(parents=True)
    torch.save({"weights": torch.zeros(3)}, tmp / "run" / "supernet" / "supernet.pt")
    _write(tmp / "run" / "config.yaml", (REPO / TINY).read_text())


def _garbage_checkpoint(tmp: Path) -> None:
    _write(tmp / "run" / "supernet" / "supernet.pt", b"definitely not a torch file")
    _write(tmp / "run" / "config.yaml", (REPO / TINY).read_text())


def _corrupt_archive(tmp: Path) -> None:
    _write(tmp / "run" / "archive.parquet", b"PAR1garbagePAR1")
    _write(tmp / "run" / "search_state.json", "{}")


def _existing_run(tmp: Path) -> None:
    _write(tmp / "run" / "config.yaml", (REPO / TINY).read_text())


def _tiny_supernet_run(tmp: Path) -> None:
    from pipeline.space.ofav2 import OFAv2Space
    from pipeline.supernet import OFAv2Supernet
    from pipeline.supernet.checkpoint import save_supernet

    _existing_run(tmp)
    space = OFAv2Space(stage_widths=(8, 8, 16, 16, 24), resolutions=(16, 20))
    save_supernet(tmp / "run" / "supernet" / "supernet.pt", OFAv2Supernet(space, num_classes=4))


def _wrong_layout(tmp: Path) -> None:
    _write(tmp / "data" / "README.txt", "not tiny imagenet")


def _loose_images(tmp: Path) -> None:
    _write(tmp / "images" / "a.png", b"")  # images, but no class folders


def _truncated_cifar(tmp: Path) -> None:
    """The CIFAR-10 layout complete to the listing, each file garbage: only reading finds out."""
    for name in [f"data_batch_{i}" for i in range(1, 6)] + ["test_batch", "batches.meta"]:
        _write(tmp / "cifar" / "cifar-10-batches-py" / name, b"truncated download")


def _binary_config(tmp: Path) -> None:
    _write(tmp / "model.yaml", bytes(range(128, 256)) * 4)


def _regular_file(tmp: Path) -> None:
    _write(tmp / "results.txt", "a file, not a directory")


def _negative_epochs_config(tmp: Path) -> None:
    _write(tmp / "neg.yaml", "train:\n  phases:\n    - name: full\n      parts:\n        - {epochs: -1, lr: 0.1}\n")


def _malformed_table(tmp: Path) -> None:
    _write(tmp / "table.csv", "arch,accuracy,params_m,flops_m\n|none~0|+|none~0|none~1|+|none~0|none~1|none~2|,oops,1,2\n")


SMALL_ARCH = (  # a complete EE_D architecture whose resolution is not among the supernet's (16, 20)
    '{"resolution": 999, "depths": [2,2,2,2,2], "kernels": [3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3], '
    '"expands": [3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3,3], "exit": 5}'
)

CASES = [
    Case("unknown config key", lambda t: ["jobs/run_pipeline.py", "--config", TINY, "--set", "train.epocs=3",
                                          "--out", str(t / "run")], "unknown key 'train.epocs'"),
    Case("wrong type", lambda t: ["jobs/run_pipeline.py", "--config", TINY, "--set", "data.batch_size=many",
                                  "--out", str(t / "run")], "data.batch_size"),
    Case("negative epoch count", lambda t: ["jobs/train_supernet.py", "--config", str(t / "neg.yaml"),
                                            "--out", str(t / "run")], "epochs", setup=_negative_epochs_config),
    Case("missing config file", lambda t: ["jobs/run_pipeline.py", "--config", str(t / "nope.yaml"),
                                           "--out", str(t / "run")], "does not exist"),
    Case("missing data path", lambda t: ["jobs/train_supernet.py", "--config", TINY, "--set", "data.dataset=cifar10",
                                         "--set", f"data.path={t / 'no_such_dir'}", "--out", str(t / "run")],
         "no_such_dir"),
    Case("missing data path for the pipeline", lambda t: [
        "jobs/run_pipeline.py", "--config", TINY, "--set", "data.dataset=cifar10",
        "--set", f"data.path={t / 'no_such_dir'}", "--out", str(t / "run")], "no_such_dir"),
    Case("data directory of the wrong layout", lambda t: [
        "jobs/train_supernet.py", "--config", TINY, "--set", "data.dataset=tinyimagenet",
        "--set", f"data.path={t / 'data'}", "--out", str(t / "run")], "tiny-imagenet-200", setup=_wrong_layout),
    Case("folder data path with no class folders", lambda t: [
        "jobs/run_pipeline.py", "--config", TINY, "--set", "data.dataset=folder",
        "--set", f"data.path={t / 'images'}", "--out", str(t / "run")], "class folders", setup=_loose_images),
    Case("data files that only reading finds bad (through Ray)", lambda t: [
        "jobs/train_supernet.py", "--config", TINY, "--set", "data.dataset=cifar10",
        # no retries: with the default 2, Ray Train restarts the worker group twice on the same bad file
        "--set", "train.max_failures=0",
        "--set", f"data.path={t / 'cifar'}", "--out", str(t / "run")], "cannot read", setup=_truncated_cifar),
    Case("config file that is not UTF-8 text", lambda t: ["jobs/run_pipeline.py", "--config", str(t / "model.yaml"),
                                                          "--out", str(t / "run")], "not UTF-8", setup=_binary_config),
    Case("--out naming an existing regular file", lambda t: ["jobs/run_pipeline.py", "--config", TINY,
                                                             "--out", str(t / "results.txt")], "is a file",
         setup=_regular_file),
    Case("--out under an existing regular file", lambda t: ["jobs/train_supernet.py", "--config", TINY,
                                                            "--out", str(t / "results.txt" / "run")], "is a file",
         setup=_regular_file),
    Case("unreadable checkpoint", lambda t: ["jobs/finetune.py", "--out", str(t / "run")], "supernet.pt",
         setup=_garbage_checkpoint),
    Case("foreign checkpoint", lambda t: ["jobs/finetune.py", "--out", str(t / "run")], "supernet.pt",
         setup=_foreign_checkpoint),
    Case("corrupt Parquet on resume", lambda t: ["jobs/search.py", "--space", "natsbench", "--table", str(NATS),
                                                 "--evals", "50", "--out", str(t / "run"), "--resume"],
         "archive.parquet", setup=_corrupt_archive),
    Case("architecture outside the space", lambda t: ["jobs/finetune.py", "--out", str(t / "run"), "--arch", SMALL_ARCH],
         "resolution", setup=_tiny_supernet_run),
    Case("unknown hardware profile", lambda t: [
        "jobs/run_pipeline.py", "--config", TINY, "--set", 'search.objectives=["top1:max","latency_ms@tpu_v9:min"]',
        "--stages", "search", "--out", str(t / "run")], "tpu_v9"),
    Case("pipeline budget metric of no profile", lambda t: [
        "jobs/run_pipeline.py", "--config", TINY, "--set", "generate.budget_metrics=[latency_ms@tpu_v9]",
        "--out", str(t / "run")], "latency_ms@tpu_v9"),
    Case("pipeline budget vector of the wrong length", lambda t: [
        "jobs/run_pipeline.py", "--config", TINY, "--set", "generate.budget_metrics=[params_m,macs_m]",
        "--set", "generate.budgets=[0.5]", "--out", str(t / "run")], "2 metric(s)"),
    Case("ofav2 search with a missing checkpoint", lambda t: [
        "jobs/search.py", "--config", TINY, "--set", f"evaluate.checkpoint={t / 'missing.pt'}",
        "--out", str(t / "run")], "missing.pt"),
    Case("empty budget list", lambda t: ["jobs/generate.py", "--space", "natsbench", "--table", str(NATS), "--evals", "30",
                                         "--budgets", "", "--out", str(t / "run")], "budget"),
    Case("negative budget", lambda t: ["jobs/generate.py", "--space", "natsbench", "--table", str(NATS), "--evals", "30",
                                       "--budgets", "0.5,-1", "--out", str(t / "run")], "budget"),
    Case("budget below the smallest architecture", lambda t: [
        "jobs/generate.py", "--space", "natsbench", "--table", str(NATS), "--evals", "30", "--budgets", "0.001",
        "--out", str(t / "run")], "budget"),
    Case("unknown budget metric", lambda t: ["jobs/generate.py", "--space", "natsbench", "--table", str(NATS),
                                             "--evals", "30", "--budgets", "0.5", "--budget-metric", "watts",
                                             "--out", str(t / "run")], "watts"),
    Case("missing table", lambda t: ["jobs/search.py", "--space", "natsbench", "--table", str(t / "none.csv"),
                                     "--evals", "50", "--out", str(t / "run")], "none.csv"),
    Case("malformed table rows", lambda t: ["jobs/search.py", "--space", "natsbench", "--table", str(t / "table.csv"),
                                            "--evals", "50", "--out", str(t / "run")], "line 2", setup=_malformed_table),
    Case("budget below the initial archive", lambda t: ["jobs/search.py", "--space", "natsbench", "--table", str(NATS),
                                                        "--evals", "3", "--out", str(t / "run")], "initial archive"),
    Case("resume of a directory with no run", lambda t: ["jobs/run_pipeline.py", "--config", TINY, "--resume",
                                                         "--out", str(t / "empty")], "holds no run"),
    Case("new run over an existing run", lambda t: ["jobs/run_pipeline.py", "--config", TINY, "--out", str(t / "run")],
         "already holds a run", setup=_existing_run),
    Case("unknown stage", lambda t: ["jobs/run_pipeline.py", "--config", TINY, "--stages", "train,deploy",
                                     "--out", str(t / "run")], "deploy"),
    Case("cluster address that does not answer", lambda t: ["jobs/run_pipeline.py", "--config", TINY,
                                                            "--out", str(t / "run")], "127.0.0.1:9",
         env={"RAY_ADDRESS": "127.0.0.1:9"}),
]


def run_job(argv: list[str], env_extra: dict[str, str]) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
    env.update(env_extra)
    return subprocess.run([sys.executable, *argv], cwd=REPO, env=env, capture_output=True, text=True, timeout=240)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gets_one_clear_line(case: Case, tmp_path: Path):
    case.setup(tmp_path)
    before = {p for p in tmp_path.rglob("*") if p.is_file()}
    completed = run_job(case.argv(tmp_path), case.env)
    output = completed.stdout + completed.stderr
    assert completed.returncode != 0, output[-2000:]
    assert "Traceback" not in output, output[-3000:]
    error_lines = [line for line in completed.stderr.splitlines() if line.startswith("error: ")]
    assert len(error_lines) == 1, completed.stderr[-2000:]
    assert case.expect.lower() in error_lines[0].lower(), error_lines[0]
    created = {p for p in tmp_path.rglob("*") if p.is_file()} - before
    looks_complete = [p for p in created if p.name in RESULT_FILES]
    assert not looks_complete, looks_complete


def test_catalogue_is_large_enough():
    assert len(CASES) >= 15


def test_an_unreachable_cluster_writes_nothing_so_the_same_command_can_be_rerun(tmp_path: Path):
    argv = ["jobs/run_pipeline.py", "--config", TINY, "--out", str(tmp_path / "run")]
    for _ in range(2):
        completed = run_job(argv, {"RAY_ADDRESS": "127.0.0.1:9"})
        assert completed.returncode != 0 and "127.0.0.1:9" in completed.stderr, completed.stderr[-2000:]
        assert "already holds a run" not in completed.stderr
    assert not (tmp_path / "run" / "config.yaml").exists()
