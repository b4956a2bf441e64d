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


#: modules whose tests start jobs as subprocesses (or a whole cluster): marked ``slow``, so
#: ``pytest -m "not slow"`` is a fast inner loop; ``make test`` still runs everything
SLOW_MODULES = frozenset({
    "test_bad_input", "test_bench_eval", "test_bench_generate", "test_bench_ofav2", "test_bench_search",
    "test_bench_supernet", "test_cluster_defs", "test_e2e_cluster", "test_generate_job", "test_train_cli",
    "test_report",
})

#: the small OFAv2 space the unit tests build supernets in (stage widths 8-24, 16-24 px)
TINY_SPACE_OPTIONS = {"stage_widths": (8, 8, 16, 16, 24), "resolutions": (16, 20, 24)}


def pytest_collection_modifyitems(config, items):
    for item in items:
        if item.module is not None and item.module.__name__.rsplit(".", 1)[-1] in SLOW_MODULES:
            item.add_marker(pytest.mark.slow)


@pytest.fixture
def tiny_space_options() -> dict:
    """Options of the tiny OFAv2 space (a fresh dict: tests may extend it)."""
    return dict(TINY_SPACE_OPTIONS)


@pytest.fixture
def tiny_space(tiny_space_options):
    """The tiny OFAv2 space (plain variant)."""
    from pipeline.space.ofav2 import OFAv2Space

    return OFAv2Space(**tiny_space_options)


@pytest.fixture
def tiny_config():
    """The shipped tiny pipeline config (jobs/configs/pipeline_tiny.yaml), validated."""
    from pipeline.config import load_config

    return load_config(REPO_ROOT / "jobs" / "configs" / "pipeline_tiny.yaml")
