"""End to end: a real multi-node Ray cluster on this machine, a tiny pipeline submitted with the
``ray job submit`` CLI, and checks of what the job wrote.

The cluster is ``ray.cluster_utils.Cluster``: a head with the dashboard on 127.0.0.1 and two
worker nodes carrying different hardware labels, each the home of one latency profile. All
traffic stays on loopback and token authentication stays on (``RAY_AUTH_MODE=token`` for the
servers and the CLI alike). Only the cluster this test started is shut down.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pandas as pd
import pytest

REPO = Path(__file__).resolve().parents[1]
VENV_BIN = Path(sys.executable).parent
PROFILES = {"edge_a": {"hw": "edge_a"}, "edge_b": {"hw": "edge_b"}}


def _ray_cli(*args: str, timeout: float = 600) -> subprocess.CompletedProcess:
    return subprocess.run([str(VENV_BIN / "ray"), *args], capture_output=True, text=True, timeout=timeout,
                          env={k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"})


@pytest.fixture
def labelled_cluster(monkeypatch):
    """Head (dashboard on 127.0.0.1) + two labelled worker nodes; yields (cluster, {profile: node_id})."""
    # the job's entry point runs `python` from the head's PATH: make it this virtualenv's
    monkeypatch.setenv("PATH", f"{VENV_BIN}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("RAY_AUTH_MODE", "token")
    if not (Path.home() / ".ray" / "auth_token").exists():
        assert _ray_cli("get-auth-token", "--generate", timeout=60).returncode == 0
    from ray.cluster_utils import Cluster

    cluster = Cluster(
        initialize_head=True,
        head_node_args={"num_cpus": 2, "include_dashboard": True, "dashboard_host": "127.0.0.1",
                        "node_ip_address": "127.0.0.1"},
    )
    # Each simulated node gets its own temp dir: nodes of one machine otherwise share the session
    # folder, and one node's runtime-env agent can delete the job's unpacked working dir that the
    # driver on another node is still importing from. Real nodes never share it.
    node_dirs = [tempfile.mkdtemp(prefix="rn", dir="/tmp") for _ in PROFILES]
    try:
        nodes = {name: cluster.add_node(num_cpus=1, labels=labels, node_ip_address="127.0.0.1", temp_dir=node_dir)
                 for (name, labels), node_dir in zip(PROFILES.items(), node_dirs)}
        cluster.wait_for_nodes()
        yield cluster, {name: node.node_id for name, node in nodes.items()}
    finally:
        cluster.shutdown()
        for node_dir in node_dirs:
            shutil.rmtree(node_dir, ignore_errors=True)


def test_ray_job_submit_runs_the_pipeline_on_labelled_nodes(labelled_cluster, tmp_path):
    cluster, node_of = labelled_cluster
    dashboard = cluster.head_node.address_info["webui_url"]
    run_dir = tmp_path / "run"
    submission = f"e2e-{uuid.uuid4().hex[:8]}"
    profiles = "[" + ",".join(
        f"{{name: {name}, placement: {{labels: {{hw: {labels['hw']}}}}}, threads: 1, num_cpus: 0.5, warmup: 2, repeats: 5}}"
        for name, labels in PROFILES.items()
    ) + "]"
    submitted = _ray_cli(
        "job", "submit", "--address", f"http://{dashboard}", "--submission-id", submission,
        "--working-dir", str(REPO), "--",
        "python", "jobs/run_pipeline.py", "--config", "jobs/configs/pipeline_tiny.yaml",
        "--set", f"evaluate.profiles={profiles}",
        "--set", 'search.objectives=["top1:max","params_m:min","latency_ms@edge_b:min"]',
        "--out", str(run_dir),
    )
    assert submitted.returncode == 0, (submitted.stdout + submitted.stderr)[-4000:]
    status = _ray_cli("job", "status", "--address", f"http://{dashboard}", submission, timeout=60)
    assert "succeeded" in (status.stdout + status.stderr).lower(), status.stdout + status.stderr

    archive = pd.read_parquet(run_dir / "archive.parquet")
    assert len(archive) > 0 and (archive["status"] == "ok").all()
    for name, node_id in node_of.items():
        assert archive[f"latency_ms@{name}"].notna().all()
        assert set(archive[f"latency_node@{name}"]) == {node_id}, f"{name} measured off its node"
    for name in ("front.parquet", "generated.parquet", "finetuned.parquet", "train_metrics.parquet"):
        assert len(pd.read_parquet(run_dir / name)) > 0, name
    assert list((run_dir / "fronts").glob("iter_*.parquet"))
    assert list((run_dir / "models").glob("*/fp32.onnx")) and list((run_dir / "models").glob("*/card.json"))
    assert (run_dir / "plots" / "front.png").is_file()
    _check_what_the_user_saw(submitted.stdout, run_dir)
    _check_report(run_dir)


def _check_what_the_user_saw(output: str, run_dir: Path) -> None:
    """One line per epoch, each once; no Ray Train/Tune chatter; the log in RUN_DIR/logs has it all."""
    epochs = int(pd.read_parquet(run_dir / "train_metrics.parquet")["total_epochs"].iloc[0])
    log = (run_dir / "logs" / "run_pipeline.log").read_text()
    for text in (output, log):
        for epoch in range(1, epochs + 1):
            lines = [line for line in text.splitlines() if f"[train] epoch {epoch}/{epochs} " in line]
            assert len(lines) == 1, (epoch, lines)
    for chatter in ("TrainingReport(", "Checkpoint successfully created", "PreemptionWatcher", "Trial status"):
        assert chatter not in output, chatter
    assert "TrainingReport(" in log  # Ray's own lines are kept in the log, only hidden from the console
    assert "summary: run directory" in output and "[finetune] 1/" in output


def _check_report(run_dir: Path) -> None:
    """report.html: self-contained (plots inline, no network), the front as a sortable table."""
    page = (run_dir / "report.html").read_text()
    assert page.count('<img src="data:image/png;base64,') >= 3
    assert "http://" not in page and "https://" not in page
    table = page[page.index('<table class="sortable" id="front">'):]
    table = table[:table.index("</table>")]
    assert table.count("<tr>") == 1 + len(pd.read_parquet(run_dir / "front.parquet"))
    _screenshot(run_dir / "report.html")


def _screenshot(page: Path) -> None:
    """Render the page in headless Chromium when the machine has one (a test artifact in RUN_DIR)."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        print("no chromium on this machine: report.html not rendered in a browser")
        return
    shot = page.with_suffix(".png")
    rendered = subprocess.run([browser, "--headless", "--no-sandbox", "--disable-gpu", f"--screenshot={shot}",
                               "--enable-logging=stderr", "--v=0", "--window-size=1200,2400", page.as_uri()],
                              capture_output=True, text=True, timeout=120)
    assert rendered.returncode == 0 and shot.stat().st_size > 10_000, rendered.stderr[-2000:]
    console_errors = [line for line in rendered.stderr.splitlines() if "CONSOLE" in line and "Uncaught" in line]
    assert not console_errors, console_errors  # the page's script ran without an error
