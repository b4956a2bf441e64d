"""Shared pytest fixtures: Ray stays on 127.0.0.1 with token auth, one module-scoped local Ray."""

from __future__ import annotations

import os

os.environ.pop("RAY_ADDRESS", None)
os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
os.environ["RAY_AUTH_MODE"] = "token"
os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
os.environ.setdefault("OMP_NUM_THREADS", "1")

from pathlib import Path  # noqa: E402

import pytest  # noqa: E402

REPO_ROOT = Path(__file__).resolve().parents[1]
BENCH_TABLE = REPO_ROOT.parent / "shared" / "bench" / "natsbench_tss_cifar10.csv"


@pytest.fixture(scope="module")
def ray_local():
    """A module-scoped local Ray with 2 CPUs on 127.0.0.1; shut down after the module."""
    import ray

    ray.init(address="local", num_cpus=2, include_dashboard=False, _node_ip_address="127.0.0.1", namespace="tests")
    yield ray
    ray.shutdown()


@pytest.fixture(scope="session")
def bench_table_path() -> Path:
    """The shared NATS-Bench CIFAR-10 table (CI clones with ../shared beside the repo)."""
    if not BENCH_TABLE.is_file():
        pytest.fail(f"benchmark table {BENCH_TABLE} is missing; CI expects ../shared beside the repo")
    return BENCH_TABLE


@pytest.fixture
def one_torch_thread():
    """Run the test with one torch thread (restored afterwards)."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)
